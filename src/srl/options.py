"""Options for every stage and command: dataclass defaults, then a preset, then a `--config` YAML file, then
extra layers of values, then command-line flags (later wins). The CLI and the library (`srl.training.presets`,
`srl.experiments`) parse through the same code, so a YAML key, a preset value and a flag are checked alike.

    parser = make_parser("srl train --stage srl", "Train the SRL stage.", RunArguments, SRLConfig)
    run, cfg = parse(parser, ["--learning_rate", "1e-6"], presets=lambda name: {...}, layers=[("x.yaml", {...})])
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from srl.errors import InputError
from srl.io import read_mapping


# TRL's names (its ScriptArguments and ModelConfig) for options that have another name here.
ALIASES = {"model_name_or_path": "model", "dataset_name": "train_data",
           "threads": "torch_threads"}  # srl eval's old name


def make_parser(prog: str, description: str, *dataclass_types: type):
    """TRL's `TrlParser` (an `HfArgumentParser`) over `dataclass_types`, whose errors are one line, which accepts
    `--config`, and whose help lists our options first, grouped, with TRL's passed-through ones after."""
    from trl import TrlParser

    class Parser(TrlParser):
        def error(self, message: str):  # argparse prints usage + message; we print one line
            raise InputError(f"{message} (see `{self.prog} --help`)")

        def format_help(self) -> str:
            return help_text(self, dataclass_types)

    parser = Parser(dataclass_types, prog=prog, description=description)
    parser.add_argument("--config", default=None, help="YAML file of options (or a run's config_<stage>.json, to "
                                                       "run it again); flags given on the command line win.")
    return parser


def _sections(dataclass_types: Sequence[type]) -> list[tuple[str, list[str]]]:
    """(title, field names) of each dataclass of this package among `dataclass_types` and their parents, the most
    derived first; the title is the first sentence of the class's docstring."""
    sections, seen = [], set()
    for cls in dataclass_types:
        for klass in cls.__mro__:
            if not klass.__module__.startswith("srl.") or klass in seen:
                continue
            seen.add(klass)
            names = list(vars(klass).get("__annotations__", {}))
            if names:
                doc = " ".join((klass.__doc__ or klass.__name__).strip().split("\n\n")[0].split())
                sections.append((doc.split(". ")[0].rstrip("."), names))
    return sections


def help_text(parser, dataclass_types: Sequence[type]) -> str:
    """`--help`: usage, description, then one section per dataclass of ours (its docstring's first sentence) with
    every option once, its help and its default; the options inherited from TRL/transformers last, one line
    each."""
    import argparse
    import shutil
    import textwrap

    width = min(max(shutil.get_terminal_size((110, 24)).columns, 80), 140)
    flags = {o for a in parser._actions for o in a.option_strings}
    actions = {a.dest: a for a in parser._actions if f"--{a.dest}" in a.option_strings and a.dest != "help"}

    def describe(action, short: bool = False) -> list[str]:
        flag = f"--{action.dest}"
        if action.choices:
            flag += " {" + ",".join(map(str, action.choices)) + "}"
        elif action.nargs == "?" and action.const is True:
            flag += " [true|false]"
        elif action.nargs != 0:
            flag += " " + action.dest.upper()
        text = " ".join((action.help or "").split())
        if short:
            text = text.split(". ")[0].rstrip(".")
            text = text[:90] + ("…" if len(text) > 90 else "")
        if action.default not in (None, "", argparse.SUPPRESS) and "default" not in text.lower():
            text += f" (default: {action.default})"
        if f"--no_{action.dest}" in flags:
            text += f" (--no_{action.dest}: false)"
        if len(flag) < 28:
            return textwrap.wrap(text, width, initial_indent=f"  {flag:<28} ", subsequent_indent=" " * 31) or [flag]
        return [f"  {flag}"] + textwrap.wrap(text, width, initial_indent=" " * 31, subsequent_indent=" " * 31)

    lines = [f"usage: {parser.prog} [options]", "", parser.description or ""]
    shown = {"config"}
    for title, names, short in [(t, n, False) for t, n in _sections(dataclass_types)] + [
            ("Options of TRL and transformers, passed through (see their documentation)", list(actions), True)]:
        names = [n for n in names if n in actions and n not in shown]
        if names:
            lines += ["", f"{title}:"]
            for name in names:
                shown.add(name)
                lines += describe(actions[name], short)
    lines += ["", "Files:"] + describe(actions["config"]) + [
        "", "Every option is also a key of the --config YAML file; TRL's names model_name_or_path and dataset_name "
            "are accepted for --model and --train_data."]
    return "\n".join(lines) + "\n"


def flag_value(argv: Sequence[str], name: str) -> str | None:
    """The value of the first `--name v`, `--name-with-dashes v` or `--name=v` in `argv`, else None."""
    for i, arg in enumerate(argv):
        if arg in (f"--{name}", f"--{name.replace('_', '-')}") and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1]
    return None


def pop_flag(argv: Sequence[str], name: str, default: str) -> tuple[str, list[str]]:
    """(`--name`'s value or `default`, argv without that flag).

    >>> pop_flag(["--stage", "rlvr", "--seed", "1"], "stage", "srl")
    ('rlvr', ['--seed', '1'])
    """
    argv = list(argv)
    for i, arg in enumerate(argv):
        if arg == f"--{name}" and i + 1 < len(argv):
            return argv[i + 1], argv[:i] + argv[i + 2:]
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1], argv[:i] + argv[i + 1:]
    return default, argv


def section_flags(argv: Sequence[str], sections: Sequence[str]) -> tuple[list[str], dict[str, list[str]]]:
    """The other flags, and each `--<section>.<option> v` / `--<section>.<option>=v` flag rewritten as
    `--<option> v` under its section (`srl pipeline --rlvr.max_steps 10`, `srl compare --srl.learning_rate 1e-6`).
    A bare `--<section>.<option>` (a switch) keeps no value.

    >>> section_flags(["--seed", "1", "--srl.max_steps", "5", "--rlvr.beta=0"], ["srl", "rlvr"])
    (['--seed', '1'], {'srl': ['--max_steps', '5'], 'rlvr': ['--beta', '0']})
    """
    rest, per_section = [], {s: [] for s in sections}
    i = 0
    while i < len(argv):
        arg = argv[i]
        section = next((s for s in sections if arg.startswith(f"--{s}.")), None)
        if section is None:
            rest.append(arg)
        else:
            name, eq, value = arg[len(section) + 3:].partition("=")
            per_section[section] += [f"--{name}", value] if eq else [f"--{name}"]
            if not eq and i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                per_section[section].append(argv[i + 1])
                i += 1
        i += 1
    return rest, per_section


def _file_value(action, value, source: str, key: str):
    """A value from a preset or YAML file, checked like a flag would be: YAML's `off`/`on` booleans become the
    words when the option is a choice, and a value outside the choices is refused."""
    if action.choices:
        if isinstance(value, bool):
            words = {False: ("off", "false", "no"), True: ("on", "true", "yes")}[value]
            value = next((w for w in words if w in action.choices), value)
        if value not in action.choices:
            raise InputError(f"invalid choice {value!r} (choose from {', '.join(map(str, action.choices))})",
                             path=source, field=key)
    return value


def parse(parser, argv: Sequence[str], presets: Callable[[str], dict[str, Any]] | None = None,
          layers: Sequence[tuple[str, dict[str, Any]]] = ()) -> tuple:
    """Parse `argv` into the parser's dataclasses. Values come, lowest priority first, from the dataclass
    defaults, the preset named by `--preset` (via `presets(name)`), the `--config` YAML file, extra `layers`
    of (source, values), and the flags. Unknown options or config keys raise `InputError` naming them.

    Each layer is applied with TRL's own `TrlParser.set_defaults_with_config`. Its `parse_args_and_config` is not
    used: it reads one YAML file with no presets or extra layers, lets a bad file or value raise a traceback, and
    does not check file values against an option's choices (YAML reads `think: off` as False)."""
    known = {a.dest: a for a in parser._actions}
    argv = [_alias_flag(a, known) for a in argv]
    config_path = flag_value(argv, "config")
    config = run_config(read_mapping(config_path, what="config file"), parser, config_path) if config_path else {}
    preset = flag_value(argv, "preset") or config.get("preset") or next(
        (values.get("preset") for _, values in reversed(layers) if values.get("preset")), None)
    all_layers = []
    if presets and preset and preset != "none":
        all_layers.append((f"preset {preset}", presets(preset)))
    if config:
        all_layers.append((config_path, config))
    all_layers += list(layers)
    for source, values in all_layers:
        checked = {}
        for key, value in values.items():
            key = ALIASES.get(key, key) if ALIASES.get(key) in known else key
            if key not in known or key in ("help", "config"):
                raise InputError(f"unknown option{suggestion(key, known)}", path=source, field=key)
            checked[key] = _file_value(known[key], value, source, key)
        parser.set_defaults_with_config(**checked)
    try:
        outputs = parser.parse_args_into_dataclasses(args=argv)
    except ValueError as e:  # HfArgumentParser's "Some specified arguments are not used", or a bad value
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "not used by the HfArgumentParser" in message:
            unused = message.split(": ", 1)[1].strip("[]").replace("'", "").split(", ")
            flags = [u for u in unused if u.startswith("--")]
            hint = suggestion(flags[0][2:].split("=")[0], known) if len(flags) == 1 else ""
            message = f"unknown option(s): {' '.join(unused)}{hint}"
        raise InputError(f"{message} (see `{parser.prog} --help`)") from None
    return tuple(c for c in outputs if dataclasses.is_dataclass(c))  # drops the namespace holding --config


def _alias_flag(arg: str, known) -> str:
    """`--model_name_or_path x` (TRL's name) as `--model x`, where the parser has the option it stands for (as
    for config keys; elsewhere the flag is left as typed, and an unknown one is named as the user wrote it)."""
    name, eq, value = arg[2:].partition("=") if arg.startswith("--") else ("", "", "")
    return f"--{ALIASES[name]}{eq}{value}" if ALIASES.get(name) in known and name not in known else arg


def suggestion(name: str, known) -> str:
    """`; did you mean --output_dir?` for a near miss among the known option names, else ''.

    >>> suggestion("ouput_dir", ["output_dir", "model"])
    '; did you mean --output_dir?'
    """
    import difflib

    close = difflib.get_close_matches(name.replace("-", "_"), [k for k in known if k not in ("help", "config")],
                                      n=1, cutoff=0.75)
    return f"; did you mean --{close[0]}?" if close else ""


def run_config(values: dict[str, Any], parser, path: str) -> dict[str, Any]:
    """A `--config` file's values; a run's own `config_<stage>.json` (`{stage, run, train}`, as `srl train`
    writes it) becomes the options it ran with, so `--config runs/x/config_srl.json` runs it again. Of its
    `train` values only the options the parser has are kept, and only those set away from their default (TRL
    derives some from others, e.g. generation_batch_size from steps_per_generation)."""
    if not {"stage", "run", "train"} <= set(values):
        return values
    stage = values["stage"]
    if f"--stage {stage}" not in parser.prog:
        raise InputError(f"is the configuration of a {stage} run, not of `{parser.prog}`", path=path, field="stage")
    known = {a.dest: a for a in parser._actions}
    derived = {"generation_batch_size"}  # set by TRL from steps_per_generation, and refused beside it
    out = {k: v for k, v in values["run"].items() if k in known}
    for key, value in values["train"].items():
        if key in known and key not in derived and value != known[key].default and key not in out:
            out[key] = value
    return out
