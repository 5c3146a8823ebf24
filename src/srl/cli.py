"""The `srl` command. Each subcommand is a `make_parser()` + `main(args)` pair, callable from Python:

    srl data build --input train.jsonl --format gsm8k --output instances.jsonl
    srl data show instances.jsonl
    srl demo
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from srl.cli_utils import console, make_parser, parse, progress_bar, run_guarded
from srl.errors import InputError

DEMO_DATA = os.path.join(os.path.dirname(__file__), "data", "gsm8k_train_sample.jsonl")


# --- srl data build -----------------------------------------------------------------------------------------
def data_build(argv: Sequence[str]) -> int:
    from srl.build import DataConfig

    parser = make_parser("srl data build", "Cut expert solutions into steps and write the step-wise instances "
                                           "(N steps -> N-1 instances: problem + steps 1..k-1 -> step k).",
                         DataConfig)
    (cfg,) = parse(parser, argv)
    run_build(cfg)
    return 0


def run_build(cfg):
    """Build with a progress bar, print the summary, return it (`srl.instances.BuildSummary`)."""
    from srl.build import build, count_input_rows

    total = count_input_rows(cfg.input)
    if total is not None and cfg.limit is not None:
        total = min(total, cfg.limit)
    with progress_bar("building", total) as advance:
        summary = build(cfg, progress=advance)
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
    stats = summary.steps_stats()
    if stats:
        table.add_row("steps per trajectory", "min {min}  median {median}  mean {mean}  max {max}".format(**stats))
    console().print(table)


# --- srl data show ------------------------------------------------------------------------------------------
def data_show(argv: Sequence[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="srl data show", description="Print a few step-wise instances.")
    parser.add_argument("path", help="Instances written by `srl data build` (.jsonl, .json, .parquet or folder).")
    parser.add_argument("-n", "--num", type=int, default=3, help="How many instances to show (default 3).")
    parser.add_argument("--start", type=int, default=0, help="Index of the first instance shown (default 0).")
    parser.add_argument("--system", action="store_true", help="Also print the system prompt.")
    args = parser.parse_args(argv)

    from rich.panel import Panel

    from srl.trajectories import read_records

    out = console()
    shown = 0
    for i, rec in enumerate(read_records(args.path)):
        if i < args.start:
            continue
        if shown >= args.num:
            break
        row = rec.data
        for name in ("prompt", "expert_step"):
            if name not in row:
                raise rec.error("missing: is this a file written by `srl data build`?", name)
        messages = row["prompt"] if isinstance(row["prompt"], list) else [{"role": "user", "content": row["prompt"]}]
        body = []
        for m in messages:
            if m.get("role") == "system" and not args.system:
                continue
            body.append(f"[bold cyan]{m.get('role')}[/]\n{_escape(m.get('content', ''))}")
        body.append(f"[bold green]expert step (target)[/]\n{_escape(row['expert_step'])}")
        title = (f"#{i}  {row.get('trajectory_id', '')}  step {row.get('step_index', '?')}/{row.get('num_steps', '?')}"
                 f"  answer: {row.get('final_answer')}")
        out.print(Panel("\n\n".join(body), title=title, title_align="left"))
        shown += 1
    if shown == 0:
        out.print("no instances")
    return 0


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(str(text))


# --- srl demo -----------------------------------------------------------------------------------------------
DEMO_FLAGS = [  # SRL on CPU: 2 prompts x G=4 per step, the `optional` format (docs/format.md), short steps
    "--preset", "cpu-small", "--think", "optional", "--max_completion_length", "32",
    "--per_device_train_batch_size", "8", "--num_generations", "4", "--save_steps", "2", "--logging_steps", "1",
]


def demo(argv: Sequence[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="srl demo", description="The embedded default: build step-wise data from "
                                     "the bundled GSM8K sample, then a short SRL run on CPU into one run folder.")
    parser.add_argument("--output_dir", default="runs/demo", help="Run folder (default runs/demo).")
    parser.add_argument("--model", default=None, help="Model (default: smollm2-135m-instruct when installed, "
                                                      "else the tiny local model).")
    parser.add_argument("--max_steps", type=int, default=None, help="Optimizer steps (default: 5 for SmolLM2, "
                                                                    "40 for the tiny model).")
    parser.add_argument("--learning_rate", type=float, default=None, help="Default: 2e-6 (SmolLM2), 1e-3 (tiny).")
    parser.add_argument("--resume", action="store_true", help="Continue an interrupted demo.")
    parser.add_argument("--backend", default="hf", choices=["hf", "vllm", "auto"],
                        help="Generation backend (default hf; see `srl train --help`).")
    args = parser.parse_args(argv)
    from srl.build import DataConfig
    from srl.models import KNOWN_MODELS, check_model_name

    out = console()
    model = args.model
    if model is None:
        model = next(iter(KNOWN_MODELS))
        try:
            check_model_name(model)
        except InputError:
            out.print(f"[yellow]{model} is not installed; the demo uses the tiny local model[/]")
            model = "tiny"
    tiny = model == "tiny"
    steps = args.max_steps or (40 if tiny else 5)
    lr = args.learning_rate or (1e-3 if tiny else 2e-6)

    os.makedirs(args.output_dir, exist_ok=True)
    instances = os.path.join(args.output_dir, "instances.jsonl")
    out.print(f"[bold]1/2 step-wise data[/]: {len(open(DEMO_DATA).readlines())} GSM8K train solutions (bundled sample)")
    run_build(DataConfig(input=DEMO_DATA, output=instances, format="gsm8k", think="optional"))

    out.print(f"[bold]2/2 SRL[/] on {model}: {steps} steps, 2 prompts x G=4 per step, lr {lr}")
    _quiet_libraries()
    run_dir = os.path.join(args.output_dir, "srl")
    flags = DEMO_FLAGS + ["--model", model, "--train_data", instances, "--max_steps", str(steps),
                          "--learning_rate", str(lr), "--output_dir", run_dir, "--backend", args.backend] + \
        (["--resume"] if args.resume else [])
    run, cfg = parse_stage("srl", flags)
    from srl.stages import run_stage

    run_stage("srl", run, cfg)
    _print_run_summary(run_dir)
    return 0


def _print_run_summary(run_dir: str) -> None:
    from srl.reporting import read_metrics

    rows = [r for r in read_metrics(os.path.join(run_dir, "metrics.jsonl")) if "reward" in r]
    out = console()
    if rows:
        fifth = max(len(rows) // 5, 1)
        mean = lambda part, k: sum(r.get(k, 0) for r in part) / len(part)  # noqa: E731
        out.print(f"step reward: first fifth {mean(rows[:fifth], 'reward'):.3f} -> last fifth "
                  f"{mean(rows[-fifth:], 'reward'):.3f}; format errors {mean(rows, 'format_error_rate'):.1%}; "
                  f"groups filtered {mean(rows, 'dynamic_sampling/filtered_fraction'):.1%}")
    out.print(f"run folder [bold]{run_dir}[/]: metrics.jsonl, plots/*.png, completions.jsonl, checkpoint-*/, final/")


# --- srl train / srl pipeline ------------------------------------------------------------------------------
RECIPES = os.path.join(os.path.dirname(__file__), "recipes")
STAGES = ("srl", "rlvr", "sft")


def preset_values(stage: str):
    """`--preset NAME` loads recipes/NAME_<stage>.yaml as defaults."""
    from srl.cli_utils import _load_yaml_config

    def load(name: str) -> dict:
        path = os.path.join(RECIPES, f"{name}_{stage}.yaml")
        if not os.path.exists(path):
            raise InputError(f"unknown preset '{name}' for stage {stage}", field="preset")
        return _load_yaml_config(path)

    return load


def stage_parser(stage: str):
    from srl.config import STAGE_CONFIGS, RunArguments

    return make_parser(f"srl train --stage {stage}", f"Train the {stage} stage. Options come from --preset, "
                                                     "--config run.yaml and flags (flags win).",
                       RunArguments, STAGE_CONFIGS[stage])


def parse_stage(stage: str, argv: Sequence[str], layers: Sequence = ()):
    if stage not in STAGES:
        raise InputError(f"unknown stage '{stage}' (expected one of {', '.join(STAGES)})", field="stage")
    return parse(stage_parser(stage), argv, preset_values(stage), layers)


def _pop_flag(argv: list[str], name: str, default: str) -> tuple[str, list[str]]:
    argv = list(argv)
    for i, arg in enumerate(argv):
        if arg == f"--{name}" and i + 1 < len(argv):
            return argv[i + 1], argv[:i] + argv[i + 2:]
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1], argv[:i] + argv[i + 1:]
    return default, argv


def train(argv: Sequence[str]) -> int:
    stage, argv = _pop_flag(argv, "stage", "srl")
    if stage in ("-h", "--help") or "-h" in argv or "--help" in argv:
        if stage not in STAGES:
            stage = "srl"
        stage_parser(stage).print_help()
        return 0
    _quiet_libraries()
    run, cfg = parse_stage(stage, argv)
    from srl.stages import run_stage

    final = run_stage(stage, run, cfg)
    if cfg.process_index == 0:
        console().print(f"[bold green]done[/]: {stage} run folder {cfg.output_dir} (model: {final})")
    return 0


def pipeline(argv: Sequence[str]) -> int:
    """SRL, then RLVR from the SRL model, in one run folder. Shared options are plain flags; stage options are
    `--srl.<option>` / `--rlvr.<option>`; a YAML `--config` may hold shared keys and `srl:` / `rlvr:` sections."""
    argv = list(argv)
    if "-h" in argv or "--help" in argv:
        print(pipeline.__doc__.strip() + "\n\nExample: srl pipeline --output_dir runs/pipe --preset cpu-small "
              "--srl.max_steps 20 --rlvr.max_steps 10\n\nStage options: see `srl train --stage srl --help`.")
        return 0
    from srl.cli_utils import _load_yaml_config
    from srl.stages import run_stage

    config_path, argv = _pop_flag(argv, "config", "")
    out, argv = _pop_flag(argv, "output_dir", "runs/pipeline")
    config = _load_yaml_config(config_path) if config_path else {}
    shared, per_stage = _split_stage_flags(argv)
    _quiet_libraries()
    model_dir = None
    for stage in ("srl", "rlvr"):
        section = config.get(stage) or {}
        if not isinstance(section, dict):
            raise InputError("expected a mapping of options", path=config_path, field=stage)
        values = {k: v for k, v in config.items() if k not in ("srl", "rlvr")} | section
        forced = ["--output_dir", os.path.join(out, stage)] + (["--model", model_dir] if model_dir else [])
        run, cfg = parse_stage(stage, shared + per_stage[stage] + forced,
                               [(config_path, values)] if values else [])
        final = os.path.join(cfg.output_dir, "final")
        if run.resume and os.path.exists(os.path.join(final, "config.json")):
            console().print(f"{stage}: already finished ({final}), skipped")
        else:
            console().print(f"[bold]pipeline[/]: stage {stage} → {cfg.output_dir}")
            final = run_stage(stage, run, cfg)
        model_dir = final
    console().print(f"[bold green]done[/]: pipeline run folder {out} (model: {model_dir})")
    return 0


def _split_stage_flags(argv: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """Shared flags, and `--srl.x v` / `--rlvr.x=v` flags rewritten as `--x v` for their stage."""
    shared, per_stage = [], {"srl": [], "rlvr": []}
    i = 0
    while i < len(argv):
        arg = argv[i]
        stage = next((s for s in per_stage if arg.startswith(f"--{s}.")), None)
        if stage is None:
            shared.append(arg)
        else:
            per_stage[stage].append("--" + arg[len(stage) + 3:])
            if "=" not in arg and i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                per_stage[stage].append(argv[i + 1])
                i += 1
        i += 1
    return shared, per_stage


def _quiet_libraries() -> None:
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import warnings

    warnings.filterwarnings("ignore", message=".*TRL_EXPERIMENTAL_SILENCE.*")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


# --- srl eval -----------------------------------------------------------------------------------------------
def models(argv: Sequence[str]) -> int:
    from srl.models import models_command

    return models_command(argv)


def eval_command(argv: Sequence[str]) -> int:
    from srl.evaluation import EvalConfig, evaluate

    parser = make_parser("srl eval", "Evaluate a model on a math benchmark: greedy accuracy, avg@k and pass@k; "
                                     "writes problems.jsonl and summary.json into --output_dir.", EvalConfig)
    (cfg,) = parse(parser, argv)
    _quiet_libraries()
    evaluate(cfg)
    return 0


def data_generate(argv: Sequence[str]) -> int:
    from srl.cli_teacher import generate_main

    return generate_main(argv)


def data_rewrite(argv: Sequence[str]) -> int:
    from srl.cli_teacher import rewrite_main

    return rewrite_main(argv)


COMMANDS = {
    ("data", "generate"): (data_generate, "a teacher's verified solutions (OpenAI-compatible endpoint)"),
    ("data", "rewrite"): (data_rewrite, "rewrite solutions into `1. **Title** action` steps with a teacher"),
    ("data", "build"): (data_build, "cut expert solutions into steps and write step-wise instances"),
    ("data", "show"): (data_show, "print a few instances"),
    ("train",): (train, "train one stage: --stage srl|rlvr|sft"),
    ("pipeline",): (pipeline, "SRL then RLVR from the SRL model, one run folder"),
    ("demo",): (demo, "the embedded default run"),
    ("eval",): (eval_command, "evaluate a model on a math benchmark (greedy, avg@k, pass@k)"),
    ("models",): (models, "list the models srl knows and where they are cached"),
}


def _usage() -> str:
    lines = ["usage: srl <command> [options]   (srl <command> --help for its options)", "", "commands:"]
    lines += [f"  {' '.join(words):<14} {help_}" for words, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from srl import __version__

        print(f"srl {__version__}")
        return 0
    for words, (fn, _) in COMMANDS.items():
        if tuple(argv[:len(words)]) == words:
            return run_guarded(fn, argv[len(words):])
    print(f"srl: error: unknown command '{' '.join(argv[:2])}'\n\n{_usage()}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
