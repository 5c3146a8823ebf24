"""Terminal output shared by the library and the CLI: a rich console, and progress bars that are live on a
terminal and a plain line every 30 s elsewhere (a log file, CI, nohup)."""

from __future__ import annotations

import contextlib
import sys


def console(stderr: bool = False):
    """A rich console on stdout (or stderr). Not on a terminal (a log file, a pipe, CI) lines are never wrapped:
    a path or a message stays whole on its line."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    terminal = hasattr(stream, "isatty") and stream.isatty()
    return Console(stderr=stderr, highlight=False, soft_wrap=not terminal, width=None if terminal else 10_000)


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
