"""`srl data build` (expert solutions -> step-wise instances) and `srl data show` (print a few instances)."""

from __future__ import annotations

from collections.abc import Sequence

from srl.errors import InputError, file_system_errors_reported
from srl.cli.utils import OneLineParser
from srl.options import make_parser, parse
from srl.console import console, progress_bar


# --- srl data build -----------------------------------------------------------------------------------------
def data_build(argv: Sequence[str]) -> int:
    from srl.data.build import DataConfig

    parser = make_parser("srl data build", "Cut expert solutions into steps and write the step-wise instances. "
                                           "Solution formats: N steps -> N-1 instances (problem + steps 1..k-1 -> "
                                           "step k). Agent formats: N actions -> N instances, one per action that "
                                           "ran (task + the last pairs -> action k).", DataConfig)
    (cfg,) = parse(parser, argv)
    with file_system_errors_reported("; nothing was written"):
        run_build(cfg)
    return 0


def run_build(cfg):
    """Build with a progress bar, print the summary, return it (`srl.data.instances.BuildSummary`)."""
    from srl.data.build import build, count_input_rows
    from srl.models import load_tokenizer

    total = count_input_rows(cfg.input)
    if total is not None and cfg.limit is not None:
        total = min(total, cfg.limit)
    with progress_bar("building", total) as advance:
        summary = build(cfg, progress=advance, load_tokenizer=load_tokenizer)
    print_summary(summary, cfg.output)
    return summary


def print_summary(summary, output: str) -> None:
    from rich.table import Table

    table = Table(title=f"step-wise instances → {output}", show_header=False, title_justify="left")
    table.add_row("trajectories read", f"{summary.read:,}")
    table.add_row("kept", f"{summary.kept:,}")
    for reason, n in sorted(summary.skipped.items()):
        table.add_row(f"skipped: {reason}", f"{n:,}")
    table.add_row("instances written", f"{summary.instances:,}")
    if summary.turns:
        from srl.data.agents.records import TURN_OUTCOMES

        for outcome in TURN_OUTCOMES:
            table.add_row(f"turns: {outcome}", f"{summary.turns.get(outcome, 0):,}")
    stats = summary.steps_stats()
    if stats:
        table.add_row("steps per trajectory", "min {min}  median {median}  mean {mean}  max {max}".format(**stats))
    console().print(table)


# --- srl data show ------------------------------------------------------------------------------------------
def data_show(argv: Sequence[str]) -> int:
    parser = OneLineParser(prog="srl data show", description="Print a few step-wise instances.")
    parser.add_argument("path", help="Instances written by `srl data build` (.jsonl, .json, .parquet or folder).")
    parser.add_argument("-n", "--num", type=int, default=3, help="How many instances to show (default 3).")
    parser.add_argument("--start", type=int, default=0, help="Index of the first instance shown (default 0).")
    parser.add_argument("--system", action="store_true", help="Also print the system prompt.")
    args = parser.parse_args(argv)
    if args.num < 1 or args.start < 0:
        raise InputError("-n must be >= 1 and --start >= 0", field="num" if args.num < 1 else "start")

    from srl.data.instances import checked_instances
    from srl.io import read_records

    out = console()
    shown, i = 0, -1
    with file_system_errors_reported():  # an unreadable file: one line
        for i, rec in enumerate(checked_instances(read_records(args.path))):  # checked as training checks them
            if i < args.start:
                continue
            if shown >= args.num:
                break
            out.print(_panel(i, rec.data, args.system))
            shown += 1
    if shown == 0:
        if i < 0:
            raise InputError("no instances: the file is empty", path=args.path)
        raise InputError(f"no instance from --start {args.start}: the file holds {i + 1}", path=args.path,
                         field="start")
    return 0


def _panel(i: int, row: dict, system: bool):
    """Instance number `i` (a checked row) as a rich panel: its messages (the system prompt if `system`), then
    the target."""
    from rich.panel import Panel

    messages = row["prompt"] if isinstance(row["prompt"], list) else [{"role": "user", "content": row["prompt"]}]
    body = [f"[bold cyan]{m['role']}[/]\n{_escape(m['content'])}" for m in messages
            if m["role"] != "system" or system]
    body.append(f"[bold green]expert step (target)[/]\n{_escape(row['expert_step'])}")
    title = (f"#{i}  {row.get('trajectory_id', '')}  step {row.get('step_index', '?')}/{row.get('num_steps', '?')}"
             f"  answer: {row.get('final_answer')}")
    return Panel("\n\n".join(body), title=title, title_align="left")


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(str(text))
