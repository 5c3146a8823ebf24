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


class LineProgress:
    """The part of rich's `Progress` the package uses, for a stderr that is not a terminal (a log file, CI, nohup):
    a plain line every `interval` seconds at most, and one at the end (none if an error ends it), e.g.
    `gsm8k: generating 24/40 (60%) 3m05s elapsed, ~2m03s left  reward 0.210`."""

    def __init__(self, interval: float = 30.0, stream=None):
        self.interval, self.stream = interval, stream
        self.tasks: dict[int, dict] = {}
        self.live = type("Live", (), {"transient": False})()  # rich's attribute, set on errors

    def add_task(self, description: str, total: int | None = None, completed: int = 0, **fields) -> int:
        import time

        self.tasks[len(self.tasks)] = {"description": description, "total": total, "completed": completed,
                                       "fields": fields, "start": time.time(), "start_done": completed,
                                       "printed": time.time(), "printed_done": None}
        return len(self.tasks) - 1

    def advance(self, task: int, n: float = 1) -> None:
        self.update(task, completed=self.tasks[task]["completed"] + n)

    def update(self, task: int, completed: float | None = None, **fields) -> None:
        t = self.tasks[task]
        if completed is not None:
            t["completed"] = completed
        if "status" in t["fields"] and "status" not in fields:
            return  # a task with a status line (training) prints when its status comes (the log after the step)
        t["fields"].update(fields)
        self._maybe_print(t)

    def _maybe_print(self, t: dict, force: bool = False) -> None:
        import time

        now = time.time()
        if not force and now - t["printed"] < self.interval:
            return
        t["printed"], t["printed_done"] = now, t["completed"]
        done, total, elapsed = t["completed"], t["total"], now - t["start"]
        line = f"{t['description']} {done:g}" + (f"/{total:g} ({100 * done / total:.0f}%)" if total else "")
        line += f" {_duration(elapsed)} elapsed"
        rate = (done - t["start_done"]) / elapsed if elapsed > 0 else 0
        if total and rate > 0 and done < total:
            line += f", ~{_duration((total - done) / rate)} left"
        status = t["fields"].get("status")
        print(line + (f"  {status}" if status else ""), file=self.stream or sys.stderr, flush=True)

    def start(self) -> None:
        pass

    def stop(self) -> None:
        for t in self.tasks.values():
            if t["completed"] != t["printed_done"]:
                self._maybe_print(t, force=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if exc[0] is None:
            self.stop()
        return False


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def make_progress(*columns):
    """rich's live `Progress` on a terminal, else `LineProgress` (rich shows nothing until the end there)."""
    err = console(stderr=True)
    if not err.is_terminal:
        return LineProgress()
    from rich.progress import Progress

    return Progress(*columns, console=err)


@contextlib.contextmanager
def progress_bar(description: str, total: int | None):
    """A progress bar (on stderr) with count, rate and times; yields `advance(n=1)`. On an error the bar is
    erased, so that the error stays the only line printed. Outside a terminal: a line every 30 s."""
    from rich.progress import (BarColumn, MofNCompleteColumn, SpinnerColumn, TaskProgressColumn, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    columns = [SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TaskProgressColumn(show_speed=True), TimeElapsedColumn(), TimeRemainingColumn()]
    progress = make_progress(*columns)
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
