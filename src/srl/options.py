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


def make_parser(prog: str, description: str, *dataclass_types: type):
    """TRL's `TrlParser` (an `HfArgumentParser`) over `dataclass_types`, whose errors are one line and which
    accepts `--config`."""
    from trl import TrlParser

    class Parser(TrlParser):
        def error(self, message: str):  # argparse prints usage + message; we print one line
            raise InputError(f"{message} (see `{self.prog} --help`)")

    parser = Parser(dataclass_types, prog=prog, description=description)
    parser.add_argument("--config", default=None, help="YAML file of options; flags given on the command line win.")
    return parser


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
    argv = list(argv)
    known = {a.dest: a for a in parser._actions}
    config_path = flag_value(argv, "config")
    config = read_mapping(config_path, what="config file") if config_path else {}
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
            if key not in known or key in ("help", "config"):
                raise InputError("unknown option", path=source, field=key)
            checked[key] = _file_value(known[key], value, source, key)
        parser.set_defaults_with_config(**checked)
    try:
        outputs = parser.parse_args_into_dataclasses(args=argv)
    except ValueError as e:  # HfArgumentParser's "Some specified arguments are not used", or a bad value
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "not used by the HfArgumentParser" in message:
            unused = message.split(": ", 1)[1].strip("[]").replace("'", "").split(", ")
            message = f"unknown option(s): {' '.join(unused)}"
        raise InputError(f"{message} (see `{parser.prog} --help`)") from None
    return tuple(c for c in outputs if dataclasses.is_dataclass(c))  # drops the namespace holding --config
