"""One piece of a comparison in its own process: `python -m srl.experiments.worker <task.json>`.

A trainer, a model or a vLLM engine leaves memory behind when it is done; one process running every run of a
table grew to 16.5 GB after three and was killed. So `srl compare` runs each training stage and each evaluation
in a fresh process (`call`), and every task keeps its result in a file that a second call only reads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from typing import Any

from srl.errors import InputError


def resolve(task: str):
    """The function named `module:function` (e.g. `srl.experiments.runs:train_stage`)."""
    import importlib

    module, _, name = task.partition(":")
    return getattr(importlib.import_module(module), name)


def call(isolate: bool, task: str, **kwargs: Any) -> Any:
    """The function `task` (`module:function`) called with `kwargs` in a fresh Python process (then here, where
    it only reads its result file), or directly here when not `isolate`."""
    if isolate:
        fd, path = tempfile.mkstemp(prefix="srl-compare-task-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({"task": task, "kwargs": kwargs}, f)
            code = subprocess.run([sys.executable, "-m", "srl.experiments.worker", path]).returncode
        finally:
            os.unlink(path)
        if code == 130:
            raise KeyboardInterrupt
        if code != 0:
            raise InputError(f"{task} failed in its own process (exit code {code}; its output is above): fix the "
                             "cause and rerun, finished runs are kept", field=task)
    return resolve(task)(**kwargs)


def main(argv: list[str] | None = None) -> int:
    """Run the task file's task; a bad input is one line and exit code 2, Ctrl-C exit code 130 (as `srl`)."""
    path = (sys.argv[1:] if argv is None else argv)[0]
    with open(path, encoding="utf-8") as f:
        job = json.load(f)
    try:
        resolve(job["task"])(**job["kwargs"])
    except InputError as e:
        print(f"srl: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
