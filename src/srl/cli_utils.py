"""What every `srl` subcommand shares: a dataclass-driven argument parser that also reads `--config run.yaml`
(flags override the file), one-line errors with exit code 2, and a rich console and progress bar."""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from collections.abc import Callable, Sequence
from typing import Any

from srl.errors import InputError

EXIT_BAD_INPUT = 2


def console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


@contextlib.contextmanager
def progress_bar(description: str, total: int | None):
    """A rich progress bar (on stderr) with count, rate and times; yields `advance(n=1)`. On an error the bar
    is erased, so that the error stays the only line printed."""
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TaskProgressColumn,
                               TextColumn, TimeElapsedColumn, TimeRemainingColumn)

    columns = [SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TaskProgressColumn(show_speed=True), TimeElapsedColumn(), TimeRemainingColumn()]
    progress = Progress(*columns, console=console(stderr=True))
    task = progress.add_task(description, total=total)
    with progress:
        try:
            yield lambda n=1: progress.advance(task, n)
        except BaseException:
            progress.live.transient = True
            raise


def _load_yaml_config(path: str) -> dict[str, Any]:
    import os

    import yaml

    if not os.path.exists(path):
        raise InputError("no such config file", path=path)
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
    except yaml.YAMLError as e:
        line = getattr(getattr(e, "problem_mark", None), "line", None)
        raise InputError(f"invalid YAML: {getattr(e, 'problem', e)}", path=path,
                         line=line + 1 if line is not None else None) from None
    except UnicodeDecodeError:
        raise InputError("not UTF-8", path=path) from None
    if not isinstance(data, dict):
        raise InputError("expected a mapping of option: value", path=path)
    return data


def make_parser(prog: str, description: str, *dataclass_types: type):
    """An `HfArgumentParser` over `dataclass_types` whose errors are one line and which accepts `--config`."""
    from transformers import HfArgumentParser

    class Parser(HfArgumentParser):
        def error(self, message: str):  # argparse prints usage + message; we print one line
            raise InputError(f"{message} (see `{self.prog} --help`)")

    parser = Parser(dataclass_types, prog=prog, description=description)
    parser.add_argument("--config", default=None, help="YAML file of options; flags given on the command line win.")
    return parser


def _flag_value(argv: list[str], name: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg in (f"--{name}", f"--{name.replace('_', '-')}") and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1]
    return None


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
    of (source, values), and the flags. Unknown options or config keys raise `InputError` naming them."""
    argv = list(argv)
    known = {a.dest: a for a in parser._actions}
    config_path = _flag_value(argv, "config")
    config = _load_yaml_config(config_path) if config_path else {}
    preset = _flag_value(argv, "preset") or config.get("preset") or next(
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
            known[key].required = False
            checked[key] = _file_value(known[key], value, source, key)
        parser.set_defaults(**checked)
    try:
        outputs = parser.parse_args_into_dataclasses(args=argv)
    except ValueError as e:  # HfArgumentParser's "Some specified arguments are not used", or a bad value
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "not used by the HfArgumentParser" in message:
            unused = message.split(": ", 1)[1].strip("[]").replace("'", "").split(", ")
            message = f"unknown option(s): {' '.join(unused)}"
        raise InputError(f"{message} (see `{parser.prog} --help`)") from None
    return tuple(c for c in outputs if dataclasses.is_dataclass(c))  # drops the namespace holding --config


def run_guarded(fn, *args) -> int:
    """Call `fn(*args)`; an `InputError` becomes `srl: error: <one line>` and exit code 2."""
    try:
        return fn(*args) or 0
    except InputError as e:
        print(f"srl: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
