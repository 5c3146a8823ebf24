"""`srl demo`: the embedded default: step-wise data from the bundled GSM8K sample, then a short SRL run on CPU."""

from __future__ import annotations

import os
from collections.abc import Sequence

from srl.cli.data import run_build
from srl.cli.train import quiet_libraries
from srl.console import console
from srl.data import BUNDLED_GSM8K as DEMO_DATA
from srl.errors import InputError


# --- srl demo -----------------------------------------------------------------------------------------------
DEMO_FLAGS = [  # SRL on CPU: 2 prompts x G=4 per step, the `optional` format (docs/format.md), short steps
    "--preset", "cpu-small", "--think", "optional", "--max_completion_length", "32",
    "--per_device_train_batch_size", "8", "--num_generations", "4", "--save_steps", "2", "--logging_steps", "1",
]


def demo(argv: Sequence[str]) -> int:
    from srl.cli.utils import OneLineParser

    parser = OneLineParser(prog="srl demo", description="The embedded default: build step-wise data from "
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
    from srl.data.build import DataConfig
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
    if args.max_steps is not None and args.max_steps < 0:
        raise InputError(f"must be >= 0 (0: build the data only), got {args.max_steps}", field="max_steps")
    steps = (40 if tiny else 5) if args.max_steps is None else args.max_steps
    lr = args.learning_rate or (1e-3 if tiny else 2e-6)
    instances = os.path.join(args.output_dir, "instances.jsonl")
    run_dir = os.path.join(args.output_dir, "srl")
    flags = DEMO_FLAGS + ["--model", model, "--train_data", instances, "--max_steps", str(max(steps, 1)),
                          "--learning_rate", str(lr), "--output_dir", run_dir, "--backend", args.backend] + \
        (["--resume"] if args.resume else [])
    from srl.training.presets import stage_arguments
    from srl.training.stages import run_stage

    run, cfg = stage_arguments("srl", flags)  # every option checked before anything is written
    check_model_name(model)

    os.makedirs(args.output_dir, exist_ok=True)
    out.print(f"[bold]1/2 step-wise data[/]: {len(open(DEMO_DATA).readlines())} GSM8K train solutions (bundled sample)")
    run_build(DataConfig(input=DEMO_DATA, output=instances, format="gsm8k", think="optional"))
    if steps == 0:
        out.print(f"[bold]2/2 SRL[/]: --max_steps 0, nothing trained; the instances are in {instances}")
        return 0
    out.print(f"[bold]2/2 SRL[/] on {model}: {steps} steps, 2 prompts x G=4 per step, lr {lr}")
    quiet_libraries()
    run_stage("srl", run, cfg)
    _print_run_summary(run_dir)
    return 0


def _print_run_summary(run_dir: str) -> None:
    from srl.training.reporting import run_summary

    out = console()
    if line := run_summary(run_dir):
        out.print(line)
    out.print(f"run folder [bold]{run_dir}[/]: metrics.jsonl, plots/*.png, completions.jsonl, checkpoint-*/, final/")
