"""`srl data generate` and `srl data rewrite`: expert trajectories from a teacher model (see srl.teacher).

    export OPENAI_API_KEY=...                     # or --api_key_env NAME; a local server needs none
    srl data generate --input gsm8k --limit 40 --n 4 --model gpt-4.1-mini --output teacher/solutions.jsonl
    srl data rewrite --input teacher/solutions.jsonl --model gpt-4.1-mini --output teacher/steps.jsonl
    srl data build --input teacher/steps.jsonl --format numbered --output teacher/instances.jsonl

Exit codes: 0 done; 1 some calls failed after all retries while others were answered (counted by reason; the
outputs hold the answered ones, and a rerun of the same command calls exactly the failed ones again); 2 bad input
or configuration: the endpoint refused the key or the model, or no call was answered at all (an unreachable
server, replies that are not the API's), or a file cannot be read or written; 130 interrupted (Ctrl-C: the calls
in flight are dropped, the journal keeps the rest). Whatever ends a run, the journal (<output>.calls.jsonl) exists
only if some call was answered, and the message says so: a rerun continues from it.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence

from srl.options import make_parser, parse
from srl.console import console
from srl.errors import file_system_errors_reported


def make_generate_parser():
    from srl.teacher import EndpointConfig, GenerateConfig

    return make_parser("srl data generate", "Sample a teacher's solutions through an OpenAI-compatible endpoint "
                                            "and keep those whose final answer is verified.",
                       GenerateConfig, EndpointConfig)


def make_rewrite_parser():
    from srl.teacher import EndpointConfig, RewriteConfig

    return make_parser("srl data rewrite", "Rewrite expert solutions into the paper's `1. **Title** action` steps "
                                           "through an OpenAI-compatible endpoint; keep the faithful rewrites.",
                       RewriteConfig, EndpointConfig)


def generate_main(argv: Sequence[str]) -> int:
    from srl.teacher import generate_solutions

    cfg, endpoint = parse(make_generate_parser(), argv)
    try:
        with file_system_errors_reported():
            summary = generate_solutions(cfg, endpoint)
    except KeyboardInterrupt:
        return _interrupted(cfg.journal_path)
    if summary.dry_run:
        return _print_dry_run(endpoint, summary.dry_run)
    rows = [("problems", f"{summary.problems:,} x {summary.n} samples"),
            *_call_rows(summary.calls),
            ("samples answered", f"{summary.samples:,}"),
            ("correct (verified)", f"{summary.correct:,}"),
            *[(f"wrong: {reason}", f"{n:,}") for reason, n in sorted(summary.wrong.items())],
            ("problems with >= 1 correct", f"{summary.problems_with_correct:,} of {summary.problems:,}"),
            ("kept", f"{summary.kept:,} → {cfg.output}")]
    _print_table(f"teacher solutions ({endpoint.model})", rows)
    return _exit_code(summary.calls, cfg.journal_path)


def rewrite_main(argv: Sequence[str]) -> int:
    from srl.teacher import rewrite_solutions

    cfg, endpoint = parse(make_rewrite_parser(), argv)
    try:
        with file_system_errors_reported():
            summary = rewrite_solutions(cfg, endpoint)
    except KeyboardInterrupt:
        return _interrupted(cfg.journal_path)
    if summary.dry_run:
        return _print_dry_run(endpoint, summary.dry_run)
    rows = [("solutions read", f"{summary.read:,}"),
            *[(f"skipped: {reason}", f"{n:,}") for reason, n in sorted(summary.skipped.items())],
            *_call_rows(summary.calls),
            ("rewrites answered", f"{summary.rewritten:,}"),
            *[(f"rejected: {reason}", f"{n:,}") for reason, n in sorted(summary.rejected.items())],
            ("kept", f"{summary.kept:,} → {cfg.output}")]
    _print_table(f"rewrites into titled steps ({endpoint.model})", rows)
    return _exit_code(summary.calls, cfg.journal_path)


def _call_rows(stats) -> list[tuple[str, str]]:
    rows = [("calls", f"{stats.total:,} ({stats.done_before:,} already in the journal, {stats.called:,} made now)")]
    if stats.called:
        rows.append(("throughput", f"{stats.calls_per_second:.3f} calls/s over {stats.seconds:.1f} s; tokens "
                                   f"{stats.prompt_tokens:,} in / {stats.completion_tokens:,} out"))
    rows += [(f"failed: {reason}", f"{n:,}") for reason, n in sorted(stats.failed.items())]
    if stats.repaired_bytes:
        rows.append(("journal repaired", f"a torn last line ({stats.repaired_bytes} bytes) was cut off"))
    return rows


def _print_table(title: str, rows: list[tuple[str, str]]) -> None:
    from rich.table import Table

    table = Table(title=title, show_header=False, title_justify="left")
    for name, value in rows:
        table.add_row(name, value)
    console().print(table)


def _print_dry_run(endpoint, info: dict) -> int:
    from srl.teacher.client import describe_request

    print(json.dumps(describe_request(endpoint, info["first_request"]), indent=2, ensure_ascii=False))
    print(f"dry run: {info['to_call']:,} of {info['calls']:,} calls to make (the others are in the journal); "
          "nothing was called or written")
    return 0


def _interrupted(journal: str) -> int:
    kept = (f"the answered calls are in {journal}: rerun the same command to continue" if os.path.exists(journal)
            else "no call was answered, nothing was written")
    print(f"srl: interrupted; {kept}", file=sys.stderr)
    return 130


def _exit_code(stats, journal: str) -> int:
    failed = sum(stats.failed.values())
    if failed:
        print(f"srl: {failed:,} call(s) failed after all retries; the answered ones are in {journal}: rerun the "
              "same command to call the failed ones again", file=sys.stderr)
        return 1
    return 0
