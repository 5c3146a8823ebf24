"""`srl train --stage srl|rlvr|sft` and `srl pipeline` (SRL, then RLVR from the SRL model, in one run folder).

Options come, lowest priority first, from the dataclass defaults, `--preset NAME` (a recipe of srl/recipes/),
`--config run.yaml` and the flags (`srl.training.presets`); the pipeline's stages run through
`srl.training.chain`."""

from __future__ import annotations

import os
from collections.abc import Sequence

from srl.console import console
from srl.errors import InputError
from srl.io import read_mapping
from srl.options import pop_flag, section_flags

# --- srl train / srl pipeline ------------------------------------------------------------------------------
def train(argv: Sequence[str]) -> int:
    from srl.training.presets import STAGES, stage_arguments, stage_parser

    stage, argv = pop_flag(argv, "stage", "srl")
    if stage in ("-h", "--help") or "-h" in argv or "--help" in argv:
        if stage not in STAGES:
            stage = "srl"
        stage_parser(stage).print_help()
        return 0
    quiet_libraries()
    run, cfg = stage_arguments(stage, argv)
    from srl.training.reporting import run_summary
    from srl.training.stages import run_stage

    if cfg.process_index == 0:
        console().print(settings_line(stage, run, cfg))
    final = run_stage(stage, run, cfg)
    if cfg.process_index == 0:
        if line := run_summary(cfg.output_dir):
            console().print(line)
        console().print(f"[bold green]done[/]: {stage} run folder {cfg.output_dir} (model: {final})")
    return 0


def settings_line(stage: str, run, cfg) -> str:
    """The opening line of a run: what trains on what, with the settings that matter most."""
    parts = [f"model {run.model}", f"data {run.train_data or 'the bundled GSM8K sample'}",
             f"lr {cfg.learning_rate:g}", f"batch {cfg.per_device_train_batch_size}"]
    if stage != "sft":
        parts += [f"G={cfg.num_generations}", f"{cfg.max_completion_length} new tokens", f"think {run.think}",
                  f"backend {cfg.backend}"]
    parts.append(f"{cfg.max_steps} steps" if cfg.max_steps > 0 else f"{cfg.num_train_epochs:g} epochs")
    preset = f" (preset {run.preset})" if run.preset != "none" else ""
    return f"[bold]{stage}[/]{preset}: " + ", ".join(parts) + f" → {cfg.output_dir}"


def pipeline(argv: Sequence[str]) -> int:
    """SRL, then RLVR from the SRL model, in one run folder. Shared options are plain flags; stage options are
    `--srl.<option>` / `--rlvr.<option>`; a YAML `--config` may hold shared keys and `srl:` / `rlvr:` sections.
    Every stage's options are checked before the first stage trains."""
    argv = list(argv)
    if "-h" in argv or "--help" in argv:
        print(pipeline.__doc__.strip() + "\n\nExample: srl pipeline --model smollm2-135m-instruct --output_dir runs/pipe "
              "--preset cpu-small --srl.max_steps 20 --rlvr.max_steps 10\n\nStage options: see `srl train --stage srl "
              "--help`.")
        return 0
    from srl.training.chain import chain_specs, run_chain

    config_path, argv = pop_flag(argv, "config", "")
    out, argv = pop_flag(argv, "output_dir", "runs/pipeline")
    config = read_mapping(config_path, what="config file") if config_path else {}
    shared, per_stage = section_flags(argv, ("srl", "rlvr"))
    stages = []
    for stage in ("srl", "rlvr"):
        section = config.get(stage) or {}
        if not isinstance(section, dict):
            raise InputError("expected a mapping of options", path=config_path, field=stage)
        stages.append({"stage": stage, **section})
    common = {k: v for k, v in config.items() if k not in ("srl", "rlvr")}
    specs = chain_specs(stages, model=None, output_dir=out, shared=common, argv=shared,
                        stage_argv=per_stage, source=config_path or "options")
    quiet_libraries()
    def announce(i, spec, finished):
        console().print(f"{spec.stage}: already finished ({finished}), skipped" if finished else
                        f"[bold]pipeline[/]: stage {spec.stage} → {spec.output_dir}")

    final = run_chain(specs, announce=announce)
    console().print(f"[bold green]done[/]: pipeline run folder {out} (model: {final})")
    return 0


def quiet_libraries() -> None:
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import warnings

    warnings.filterwarnings("ignore", message=".*TRL_EXPERIMENTAL_SILENCE.*")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
