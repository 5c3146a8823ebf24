"""`srl train --stage srl|rlvr|sft` and `srl pipeline` (SRL, then RLVR from the SRL model, in one run folder).

Options come, lowest priority first, from the dataclass defaults, `--preset NAME` (a recipe of srl/recipes/),
`--config run.yaml` and the flags."""

from __future__ import annotations

import os
from collections.abc import Sequence

from srl.cli.utils import make_parser, parse
from srl.console import console
from srl.errors import InputError
from srl.io import read_mapping

# --- srl train / srl pipeline ------------------------------------------------------------------------------
RECIPES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "recipes")
STAGES = ("srl", "rlvr", "sft")


def preset_values(stage: str):
    """`--preset NAME` loads recipes/NAME_<stage>.yaml as defaults."""
    def load(name: str) -> dict:
        path = os.path.join(RECIPES, f"{name}_{stage}.yaml")
        if not os.path.exists(path):
            raise InputError(f"unknown preset '{name}' for stage {stage}", field="preset")
        return read_mapping(path, what="preset")

    return load


def stage_parser(stage: str):
    from srl.training.config import STAGE_CONFIGS, RunArguments

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
    quiet_libraries()
    run, cfg = parse_stage(stage, argv)
    from srl.training.stages import run_stage

    final = run_stage(stage, run, cfg)
    if cfg.process_index == 0:
        console().print(f"[bold green]done[/]: {stage} run folder {cfg.output_dir} (model: {final})")
    return 0


def pipeline(argv: Sequence[str]) -> int:
    """SRL, then RLVR from the SRL model, in one run folder. Shared options are plain flags; stage options are
    `--srl.<option>` / `--rlvr.<option>`; a YAML `--config` may hold shared keys and `srl:` / `rlvr:` sections."""
    argv = list(argv)
    if "-h" in argv or "--help" in argv:
        print(pipeline.__doc__.strip() + "\n\nExample: srl pipeline --model smollm2-135m-instruct --output_dir runs/pipe "
              "--preset cpu-small --srl.max_steps 20 --rlvr.max_steps 10\n\nStage options: see `srl train --stage srl "
              "--help`.")
        return 0
    from srl.training.stages import finished_model, run_stage

    config_path, argv = _pop_flag(argv, "config", "")
    out, argv = _pop_flag(argv, "output_dir", "runs/pipeline")
    config = read_mapping(config_path, what="config file") if config_path else {}
    shared, per_stage = _split_stage_flags(argv)
    quiet_libraries()
    model_dir = None
    for stage in ("srl", "rlvr"):
        section = config.get(stage) or {}
        if not isinstance(section, dict):
            raise InputError("expected a mapping of options", path=config_path, field=stage)
        values = {k: v for k, v in config.items() if k not in ("srl", "rlvr")} | section
        forced = ["--output_dir", os.path.join(out, stage)] + (["--model", model_dir] if model_dir else [])
        run, cfg = parse_stage(stage, shared + per_stage[stage] + forced,
                               [(config_path, values)] if values else [])
        final = finished_model(cfg.output_dir)
        if run.resume and final:
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


def quiet_libraries() -> None:
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import warnings

    warnings.filterwarnings("ignore", message=".*TRL_EXPERIMENTAL_SILENCE.*")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
