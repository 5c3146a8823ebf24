"""The `srl` command: `main` dispatches to the subcommands, each a `main`-like function of argv, callable from
Python too:

    srl data build --input train.jsonl --format gsm8k --output instances.jsonl     (srl.cli.data)
    srl data show instances.jsonl
    srl train --stage srl --preset cpu-small                                        (srl.cli.train)
    srl pipeline / srl demo / srl eval / srl models                                 (train, demo, eval, models)
    srl compare --config compare.yaml                                               (srl.cli.compare)
    srl agent run --model NAME --base_url URL --output_dir runs/x                    (srl.cli.agent)

Library code never imports this package.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from srl.cli.compare import compare_command
from srl.cli.agent import eval_main as agent_eval, run_main as agent_run, swebench_main as agent_swebench
from srl.cli.agent import tasks_main as agent_tasks
from srl.cli.data import data_build, data_show
from srl.cli.export import data_export
from srl.cli.teacher import generate_main as data_generate, rewrite_main as data_rewrite
from srl.cli.demo import demo
from srl.cli.eval import eval_command
from srl.cli.models import models_command
from srl.cli.train import pipeline, train
from srl.cli.utils import run_guarded


COMMANDS = {
    ("data", "generate"): (data_generate, "a teacher's verified solutions (OpenAI-compatible endpoint)"),
    ("data", "rewrite"): (data_rewrite, "rewrite solutions into `1. **Title** action` steps with a teacher"),
    ("data", "build"): (data_build, "cut expert solutions into steps and write step-wise instances"),
    ("data", "show"): (data_show, "print a few instances"),
    ("data", "export"): (data_export, "write data, reward and run script for verl (--to verl)"),
    ("train",): (train, "train one stage: --stage srl|rlvr|sft"),
    ("pipeline",): (pipeline, "SRL then RLVR from the SRL model, one run folder"),
    ("demo",): (demo, "the embedded default run"),
    ("eval",): (eval_command, "evaluate a model on a math benchmark (greedy, avg@k, pass@k)"),
    ("compare",): (compare_command, "compare methods (SFT, RLVR, SRL, SRL → RLVR, ...) at the same budget, paired tests"),
    ("models",): (models_command, "list the models srl knows and where they are cached"),
    ("agent", "run"): (agent_run, "run a model as a software agent (mini-swe-agent, sandboxed) on tasks"),
    ("agent", "eval"): (agent_eval, "resolve rate (Wilson interval) of an agent run folder"),
    ("agent", "tasks"): (agent_tasks, "list / verify the local bug-fix task suite"),
    ("agent", "swebench"): (agent_swebench, "check SWE-bench predictions; score them with the harness (docker)"),
}


def _usage() -> str:
    lines = ["usage: srl <command> [options]   (srl <command> --help for its options)", "", "commands:"]
    lines += [f"  {' '.join(words):<14} {help_}" for words, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def _quiet_known_library_notices() -> None:
    """Hide the notices every run would print before its first line of its own (`--verbose` shows them): TRL's
    warning that the installed vLLM (0.32, the CPU build we install) is newer than its tested range, and vLLM's
    note that Triton has no CPU backend. An error then stays the one line it is meant to be."""
    import logging
    import warnings

    warnings.filterwarnings("ignore", message="TRL currently supports vLLM versions", category=UserWarning)
    logging.getLogger("vllm.triton_utils.importing").addFilter(
        lambda record: "doesn't include CPU backend" not in record.getMessage())


def _interrupt_on_sigterm() -> None:
    """SIGTERM (a job scheduler, `kill`) ends the command as Ctrl-C does, so writers remove their temporary files."""
    import signal
    import threading

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:  # `srl ... | head`: the reader left; end quietly, as other command-line tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


def _main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from srl import __version__

        print(f"srl {__version__}")
        return 0
    _interrupt_on_sigterm()
    verbose = "--verbose" in argv
    argv = [a for a in argv if a != "--verbose"]
    if not verbose:
        _quiet_known_library_notices()
    for words, (fn, _) in COMMANDS.items():
        if tuple(argv[:len(words)]) == words:
            return run_guarded(fn, argv[len(words):])
    group = [(w, h) for w, (_, h) in COMMANDS.items() if len(w) > 1 and w[0] == argv[0]]
    if group and (len(argv) == 1 or argv[1] in ("-h", "--help")):  # `srl data`, `srl data --help`
        print(f"usage: srl {argv[0]} <command> [options]   (srl {argv[0]} <command> --help for its options)\n\n"
              "commands:\n" + "\n".join(f"  {' '.join(w):<14} {h}" for w, h in group))
        return 0
    print(f"srl: error: unknown command '{' '.join(argv[:2])}'\n\n{_usage()}", file=sys.stderr)
    return 2

