"""`srl agent run | eval | tasks | swebench`: a model as a software agent (mini-swe-agent in a bubblewrap sandbox),
its resolve rate, the local task suite, and SWE-bench predictions (see docs/agents.md).

    srl agent run --model teacher --base_url http://127.0.0.1:8000/v1 --output_dir runs/teacher --workers 4 \\
        --data_output runs/teacher/steps.jsonl          # + SRL instances from the resolved runs
    srl agent eval --run_dir runs/teacher                # resolve rate with its Wilson 95% interval
    srl agent tasks --verify true                        # the shipped suite, each task verified
    srl agent swebench --predictions runs/x/preds.jsonl  # the harness's loader checks it; scores where docker runs

Exit codes: 0 done; 1 some tasks ended in an error (e.g. the endpoint failed; rerun the same command to run
exactly those again) or a task did not verify; 2 bad input or configuration; 130 interrupted (finished tasks are
kept; a rerun resumes).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field

from srl.options import make_parser, parse
from srl.console import console
from srl.errors import InputError


@dataclass
class AgentDataOptions:
    """What `srl agent run` does with the resolved runs afterwards."""

    data_output: str | None = field(default=None, metadata={
        "help": "Also build SRL instances from the resolved trajectories into this JSONL "
                "(`srl data build --format mini-swe-agent --input <output_dir>/trajectories.jsonl`)."})


@dataclass
class AgentEvalConfig:
    run_dir: str = field(metadata={"help": "An `srl agent run` output folder."})


@dataclass
class AgentTasksConfig:
    tasks: str | None = field(default=None, metadata={"help": "Task file (default: the shipped toolz suite)."})
    verify: bool = field(default=False, metadata={"help": "Check each task in the sandbox: its FAIL_TO_PASS tests "
                                                          "fail before and every listed test passes after the gold "
                                                          "patch."})


@dataclass
class SwebenchConfig:
    predictions: str | None = field(default=None, metadata={
        "help": "Predictions JSONL/JSON (`preds.jsonl` of a run, `preds.json` of `mini-extra swebench`)."})
    dataset_name: str = field(default="princeton-nlp/SWE-bench_Verified", metadata={
        "help": "The SWE-bench dataset (a Hugging Face name or a local JSON/JSONL file)."})
    split: str = field(default="test", metadata={"help": "Dataset split."})
    run_id: str = field(default="srl", metadata={"help": "The harness's run id (its report's name)."})
    max_workers: int = field(default=4, metadata={"help": "Instances the harness scores at once."})
    check_only: bool = field(default=False, metadata={"help": "Only check the file with the harness's loader."})
    label_run: str | None = field(default=None, metadata={
        "help": "With --report: a `mini-extra swebench` output folder whose trajectories get `resolved` from the "
                "report, written to <label_run>/trajectories.jsonl (for `srl data build --format mini-swe-agent`)."})
    report: str | None = field(default=None, metadata={"help": "The harness's report (<model>.<run_id>.json)."})


def _print_table(title: str, rows: list[tuple[str, str]]) -> None:
    from rich.table import Table

    table = Table(title=title, show_header=False, title_justify="left")
    for name, value in rows:
        table.add_row(name, value)
    console().print(table)


def summary_rows(s: dict) -> list[tuple[str, str]]:
    low, high = s["wilson_95"]
    rows = [("tasks", f"{s['tasks']:,}"),
            ("resolved", f"{s['resolved']:,} = {100 * s['resolve_rate']:.1f}% (Wilson 95%: "
                         f"{100 * low:.1f}-{100 * high:.1f}%)"),
            ("patches applied", f"{s['patches_applied']:,} ({s['empty_patches']:,} empty)"),
            *[(f"exit: {reason}", f"{n:,}") for reason, n in sorted(s["exit_reasons"].items())],
            ("steps (mean)", f"{s['mean_steps']:.1f}"),
            ("tokens", f"{s['prompt_tokens']:,} in / {s['completion_tokens']:,} out"),
            ("cost", f"${s['cost']:.4f}"), ("task time (sum)", f"{s['seconds']:.0f} s")]
    rows += [(f"sandbox limit hit: {k}", f"{n:,}") for k, n in sorted(s["limit_hits"].items())]
    if s["errors"]:
        rows.append(("ended in an error", f"{s['errors']:,} (rerun the same command to run them again)"))
    return rows


def run_main(argv: Sequence[str]) -> int:
    from srl.agent.run import SRL_ACTION_PATTERN, AgentRunConfig, run_agent, summarize

    parser = make_parser("srl agent run", "Run a model as a software agent (mini-swe-agent, bubblewrap sandbox) on "
                                          "a task set; write trajectories, patches and a summary.",
                         AgentRunConfig, AgentDataOptions)
    cfg, data = parse(parser, argv)
    try:
        results, skipped = run_agent(cfg)
    except KeyboardInterrupt:
        print(f"srl: interrupted; finished tasks are kept in {cfg.output_dir}: rerun the same command to continue",
              file=sys.stderr)
        return 130
    s = summarize(results)
    _print_table(f"agent run: {cfg.model} ({skipped:,} task(s) finished before, kept)", summary_rows(s))
    print(f"results: {os.path.join(cfg.output_dir, 'results.jsonl')}; trajectories: "
          f"{os.path.join(cfg.output_dir, 'trajectories.jsonl')}; predictions: "
          f"{os.path.join(cfg.output_dir, 'preds.jsonl')}")
    if data.data_output:
        from srl.cli.data import data_build

        pattern = ["--action_pattern", SRL_ACTION_PATTERN] if cfg.action_style == "srl" else []
        code = data_build(["--format", "mini-swe-agent", *pattern, "--input",
                           os.path.join(cfg.output_dir, "trajectories.jsonl"), "--output", data.data_output])
        if code:
            return code
    return 1 if s["errors"] else 0


def eval_main(argv: Sequence[str]) -> int:
    from srl.agent.run import summarize

    (cfg,) = parse(make_parser("srl agent eval", "Resolve rate (Wilson 95% interval), exit reasons, steps, tokens "
                                                 "and cost of an `srl agent run` folder.", AgentEvalConfig), argv)
    path = os.path.join(cfg.run_dir, "results.jsonl")
    if not os.path.isfile(path):
        raise InputError("no results.jsonl here: not an `srl agent run` folder (or no task finished yet)",
                         path=cfg.run_dir)
    with open(path, encoding="utf-8") as f:
        results = [json.loads(line) for line in f if line.strip()]
    s = summarize(results)
    _print_table(f"agent run {cfg.run_dir}", summary_rows(s))
    return 0


def tasks_main(argv: Sequence[str]) -> int:
    from srl.agent.tasks import SUITE, load_tasks, verify_task

    (cfg,) = parse(make_parser("srl agent tasks", "List (and verify) a local task file.", AgentTasksConfig), argv)
    tasks = load_tasks(cfg.tasks or SUITE)
    bad = 0
    with tempfile.TemporaryDirectory(prefix="srl-verify-") as scratch:
        for t in tasks:
            line = f"{t.instance_id}  files: {', '.join(t.files)}  FAIL_TO_PASS: {len(t.FAIL_TO_PASS)}"
            if cfg.verify:
                problem = verify_task(t, scratch)
                bad += problem is not None
                line += f"  {'verified' if problem is None else 'NOT VERIFIED: ' + problem}"
            print(line, flush=True)
    print(f"{len(tasks)} task(s)" + (f", {len(tasks) - bad} verified" if cfg.verify else ""))
    return 1 if bad else 0


def swebench_main(argv: Sequence[str]) -> int:
    from srl.agent.swebench import check_predictions, label_trajectories, run_harness

    (cfg,) = parse(make_parser("srl agent swebench", "Check predictions with the SWE-bench harness's loader and "
                                                     "score them with the harness (needs docker).",
                               SwebenchConfig), argv)
    if cfg.label_run or cfg.report:
        if not (cfg.label_run and cfg.report):
            raise InputError("--label_run and --report go together", field="report")
        output = os.path.join(cfg.label_run, "trajectories.jsonl")
        n, resolved = label_trajectories(cfg.label_run, cfg.report, output)
        print(f"{output}: {n:,} trajectories, {resolved:,} resolved")
        return 0
    if cfg.predictions is None:
        raise InputError("give --predictions (or --label_run with --report)", field="predictions")
    if cfg.check_only:
        preds = check_predictions(cfg.predictions, cfg.dataset_name, cfg.split)
        print(f"{cfg.predictions}: {len(preds):,} predictions in SWE-bench's format")
        return 0
    return run_harness(cfg.predictions, cfg.dataset_name, cfg.run_id, cfg.max_workers, cfg.split)
