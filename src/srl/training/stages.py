"""The training stages: configuration in, run folder and checkpoint out.

- `srl`:  SRLTrainer (GRPO + dynamic sampling) with the step reward on step-wise instances;
- `rlvr`: SRLTrainer with the outcome reward on whole problems (DAPO dynamic sampling = the same filter);
- `sft`:  TRL's SFTTrainer on whole expert solutions (the paper's baseline).

Every stage writes into `output_dir`: metrics.jsonl, plots/, completions.jsonl (RL stages), checkpoint-N/ and
final/ (the trained model and tokenizer), plus config.json with the arguments it ran with.

The rows each stage trains on are `srl.training.rows`; the reward a stage scores with, `srl.rewards.stage`;
a stage's options from a preset, a YAML file and flags, `srl.training.presets`; stages run one after another
(SRL → RLVR), `srl.training.chain`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil

from srl.data import BUNDLED_GSM8K
from srl.data.benchmarks import warn_benchmark_overlap
from srl.errors import InputError
from srl.io import write_json
from srl.rewards.stage import output_format, reward_funcs
from srl.training.checkpoints import COMPLETE_MARKER, complete_checkpoints, last_complete_checkpoint, read_marker
from srl.training.config import RunArguments
from srl.training.model_card import publish_model
from srl.training.rows import STAGE_ROWS, problems_of, split_validation

logger = logging.getLogger("srl")


# --- running ------------------------------------------------------------------------------------------------
def _peft_config(run: RunArguments, model=None):
    if not run.use_peft:
        return None
    from peft import LoraConfig

    targets = run.lora_target_modules if run.lora_target_modules == "all-linear" else \
        [m.strip() for m in run.lora_target_modules.split(",")]
    if model is not None and targets != "all-linear":
        names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
        missing = [t for t in targets if t not in names]
        if missing:
            raise InputError(f"no module named {', '.join(missing)} in {run.model} (its linear layers: "
                             f"{', '.join(sorted(n for n in names if n.endswith('proj'))) or 'see model.named_modules()'})",
                             field="lora_target_modules")
    return LoraConfig(r=run.lora_r, lora_alpha=run.lora_alpha, target_modules=targets, task_type="CAUSAL_LM")


RUN_FOLDER_MARKS = tuple(f"config_{stage}.json" for stage in ("srl", "rlvr", "sft"))


def is_run_folder(path: str) -> bool:
    """A folder written by a stage of srl (its `config_<stage>.json`), or one that holds nothing."""
    names = os.listdir(path) if os.path.isdir(path) else []
    return not names or any(mark in names for mark in RUN_FOLDER_MARKS)


def prepare_output_dir(cfg, run: RunArguments) -> str | None:
    """Check the run folder and return the checkpoint to resume from (None: start fresh). A non-empty folder
    that is not a run folder of ours (a user's files) is refused unless --overwrite_output_dir."""
    out = cfg.output_dir
    if os.path.isdir(out) and not is_run_folder(out) and not run.overwrite_output_dir:
        raise InputError("holds files that no srl run wrote: training would overwrite them (metrics.jsonl, "
                         "README.md, plots/, final/); choose another --output_dir, or pass --overwrite_output_dir",
                         path=out, field="output_dir")
    if run.resume:
        ckpt = last_complete_checkpoint(out)
        if ckpt is None:
            logger.warning("--resume: no complete checkpoint in %s, starting from scratch", out)
        return ckpt
    if complete_checkpoints(out):
        raise InputError("already holds checkpoints: pass --resume to continue, or choose another --output_dir",
                         path=out, field="output_dir")
    return None


# Files of a checkpoint that are training state, not the model `trainer.save_model` writes into final/.
TRAINING_STATE = ("optimizer.pt", "scheduler.pt", "trainer_state.json", COMPLETE_MARKER)


def training_ended(checkpoint: str, max_steps: int) -> bool:
    """Whether `checkpoint` was saved when training ended (its marker says so; older markers: at max_steps)."""
    marker = read_marker(checkpoint) or {}
    if "training_ended" in marker:
        return bool(marker["training_ended"])
    return 0 < max_steps <= int(marker.get("global_step", 0))


def finish_from_checkpoint(checkpoint: str, output_dir: str, stage: str) -> str:
    """final/ from the checkpoint saved when training ended (a run killed while it wrote final/): the model files
    as `trainer.save_model` writes them, byte for byte those of the uninterrupted run; no step trained again."""
    final = os.path.join(output_dir, "final")
    shutil.rmtree(final, ignore_errors=True)
    os.makedirs(final)
    for name in os.listdir(checkpoint):
        path = os.path.join(checkpoint, name)
        if name not in TRAINING_STATE and not name.startswith("rng_state") and os.path.isfile(path):
            shutil.copy2(path, os.path.join(final, name))
    step = int((read_marker(checkpoint) or {}).get("global_step", 0))
    write_json(os.path.join(final, COMPLETE_MARKER), {"stage": stage, "global_step": step})
    logger.warning("--resume: training had ended at step %d (%s); final/ written from it", step, checkpoint)
    return final


def finished_model(output_dir: str) -> str | None:
    """`<output_dir>/final` if a stage finished there: its completeness marker is written after every file of
    the model, so a `final/` cut off while being written does not count."""
    final = os.path.join(output_dir, "final")
    return final if os.path.exists(os.path.join(final, COMPLETE_MARKER)) else None


def run_stage(stage: str, run: RunArguments, cfg, *, callbacks: list | None = None, progress: bool = True) -> str:
    """Train one stage and return the folder of the final model (`<output_dir>/final`). With `run.resume`, a
    stage that already finished in `output_dir` is not trained again."""
    from srl.models import check_model_name

    if run.resume and (final := finished_model(cfg.output_dir)):
        logger.warning("--resume: %s already finished (%s); nothing to do", stage, final)
        return final
    check_model_name(run.model)
    resume_from = prepare_output_dir(cfg, run)
    if resume_from and training_ended(resume_from, cfg.max_steps):
        return finish_from_checkpoint(resume_from, cfg.output_dir, stage)
    rows = STAGE_ROWS[stage](run)  # bad training data is refused here, before anything heavy is imported
    warn_benchmark_overlap(problems_of(rows), run.train_data or BUNDLED_GSM8K)
    if run.max_train_samples:
        rows = rows[: run.max_train_samples]
    if not rows:
        raise InputError("no training rows", path=run.train_data or BUNDLED_GSM8K, field="train_data")
    train_rows, eval_rows = split_validation(rows, lambda r: r.get("trajectory_id"), run.validation_problems,
                                              cfg.seed)
    import datasets

    from srl.models import load_model_and_tokenizer
    from srl.training.reporting import MetricsFileCallback, ProgressCallback

    train_ds = datasets.Dataset.from_list(train_rows)
    eval_ds = datasets.Dataset.from_list(eval_rows) if eval_rows else None

    from srl.training.threads import huge_pages_line, set_torch_threads

    threads, huge_pages = set_torch_threads(run.torch_threads), huge_pages_line()
    if progress and cfg.process_index == 0:
        from srl.console import console

        console(stderr=True).print(f"{threads}; {huge_pages}")
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and cfg.world_size == 1:
        raise InputError(f"launched as {launched} processes but each would train alone on the same folder; "
                         "on a machine without GPUs pass --use_cpu true", field="use_cpu")
    warm = None
    if run.model == "tiny" and stage != "sft":  # a random model must first learn to write something step-like
        warm = [r for r in train_rows if "expert_step" in r] or None
    prefix = "<think>\n</think>\n" if run.think != "off" else ""
    from srl.precision import training_line, training_weights_bf16

    import torch

    on_cpu = bool(cfg.use_cpu) or not torch.cuda.is_available()
    if progress and cfg.process_index == 0:
        from srl.console import console

        console(stderr=True).print(training_line(bool(cfg.bf16), on_cpu=on_cpu))
    model, tokenizer = load_model_and_tokenizer(run.model, bf16=training_weights_bf16(bool(cfg.bf16), on_cpu),
                                                seed=cfg.seed)
    if warm:
        from srl.tiny import warm_up

        warm_up(model, tokenizer, warm, steps=run.tiny_warm_up_steps, seed=cfg.seed, response_prefix=prefix)
    if getattr(cfg, "beta", 0.0) > 0 and not os.path.isdir(str(model.config._name_or_path or "")):
        # TRL loads the KL reference model from model.config._name_or_path, which a model built here (tiny) lacks:
        # the reference is the model as training starts, saved into the run folder
        reference = os.path.join(cfg.output_dir, "reference_model")
        model.save_pretrained(reference)
        tokenizer.save_pretrained(reference)
        model.config._name_or_path = reference
    cbs = [MetricsFileCallback(os.path.join(cfg.output_dir, "metrics.jsonl"),
                               os.path.join(cfg.output_dir, "plots"), stage)]
    if progress:
        cbs.append(ProgressCallback(meter=next((c for c in callbacks or [] if hasattr(c, "progress_of")), None)))
    cbs += callbacks or []

    if stage == "sft":
        from trl import SFTTrainer

        from srl.training.checkpoints import FilesFollowUmask

        class Trainer(FilesFollowUmask, SFTTrainer):  # its model files follow the umask, as SRLTrainer's
            pass

        trainer = Trainer(model=model, args=cfg, train_dataset=train_ds, eval_dataset=eval_ds,
                             processing_class=tokenizer, peft_config=_peft_config(run, model), callbacks=cbs)
    else:
        from srl.training.trainer import SRLTrainer

        trainer = SRLTrainer(model=model, reward_funcs=reward_funcs(stage, run), args=cfg, train_dataset=train_ds,
                             eval_dataset=eval_ds, processing_class=tokenizer, peft_config=_peft_config(run, model),
                             callbacks=cbs, output_format=output_format(run),
                             completions_path=os.path.join(cfg.output_dir, "completions.jsonl"))
    if progress:
        from transformers.trainer_callback import PrinterCallback, ProgressCallback as HFProgress

        trainer.remove_callback(HFProgress)
        trainer.remove_callback(PrinterCallback)
    os.makedirs(cfg.output_dir, exist_ok=True)
    if cfg.process_index == 0:  # written once the model has loaded: a run that fails before leaves nothing
        write_json(os.path.join(cfg.output_dir, f"config_{stage}.json"),
                   {"stage": stage, "run": dataclasses.asdict(run), "train": cfg.to_dict(),
                    "torch_threads": threads, "huge_pages": huge_pages})
    trainer.train(resume_from_checkpoint=resume_from)
    final = os.path.join(cfg.output_dir, "final")
    trainer.save_model(final)
    if trainer.accelerator.is_main_process:
        tokenizer.save_pretrained(final)
        publish_model(trainer, final, stage, run, cfg)  # the model card (final/ and run folder), --push_to_hub
        write_json(os.path.join(final, COMPLETE_MARKER), {"stage": stage, "global_step": trainer.state.global_step})
    trainer.accelerator.wait_for_everyone()
    return final
