"""The training stages: configuration in, run folder and checkpoint out.

- `srl`:  SRLTrainer (GRPO + dynamic sampling) with the step reward on step-wise instances;
- `rlvr`: SRLTrainer with the outcome reward on whole problems (DAPO dynamic sampling = the same filter);
- `sft`:  TRL's SFTTrainer on whole expert solutions (the paper's baseline).

Every stage writes into `output_dir`: metrics.jsonl, plots/, completions.jsonl (RL stages), checkpoint-N/ and
final/ (the trained model and tokenizer), plus config.json with the arguments it ran with.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
from typing import Any

from srl.data import BUNDLED_GSM8K
from srl.data.benchmarks import warn_benchmark_overlap
from srl.data.build import DataOptions, instance_rows, iter_trajectories
from srl.io import write_json
from srl.training.checkpoints import COMPLETE_MARKER, complete_checkpoints, last_complete_checkpoint
from srl.training.config import RunArguments
from srl.training.model_card import publish_model
from srl.errors import InputError
from srl.data.answers import gold_kind_of
from srl.data.prompts import EVAL_SYSTEM_PROMPT
from srl.rewards.format import OutputFormat

logger = logging.getLogger("srl")

INSTANCE_COLUMNS = ("prompt", "expert_step")


# --- data ---------------------------------------------------------------------------------------------------
def _is_instances_file(path: str) -> bool:
    from srl.io import read_records

    first = next(iter(read_records(path)), None)
    return first is not None and all(c in first.data for c in INSTANCE_COLUMNS)


def _read_instances(run: RunArguments, path: str) -> bool:
    """True when --train_data is read as built instances. Then the data options (`srl data build`'s) cannot apply:
    one set away from its default is refused instead of being ignored."""
    if not (run.data_format == "instances" or run.data_format == "auto" and _is_instances_file(path)):
        return False
    for f in dataclasses.fields(DataOptions):
        if getattr(run, f.name) != f.default:
            raise InputError(f"--{f.name} applies when --train_data holds solutions or trajectories, but it holds "
                             f"instances that are already built: rebuild them with `srl data build --{f.name} ...`",
                             path=path, field=f.name)
    return True


def _trajectories(run: RunArguments):
    """The expert trajectories of --train_data, read with the run's data options (as `srl data build` reads them)."""
    cfg = run.data_config()
    if cfg.is_agent:
        raise InputError("the rlvr and sft stages train on solutions with a final answer, not agent trajectories",
                         field="data_format")
    return [t for t in iter_trajectories(cfg) if not isinstance(t, tuple)]


def _problems(rows: list[dict[str, Any]]):
    """The problem text of each training row (a string prompt without a `problem` column has none)."""
    for r in rows:
        prompt = r.get("prompt")
        yield r.get("problem") or (prompt[-1].get("content") if isinstance(prompt, list) and prompt else None)


def _split_validation(items: list, key, n: int, seed: int) -> tuple[list, list]:
    """Hold out `n` whole problems (never one step of a problem in each split)."""
    if n <= 0:
        return items, []
    ids = sorted({key(x) for x in items})
    if n >= len(ids):
        raise InputError(f"asks for {n} validation problems but the data has {len(ids)}", field="validation_problems")
    held = set(random.Random(seed).sample(ids, n))
    return [x for x in items if key(x) not in held], [x for x in items if key(x) in held]


def _check_instance(rec) -> None:
    """One line naming file, line and field for an instance the trainer could not use (or would train on an
    empty target with)."""
    for column in INSTANCE_COLUMNS:
        if column not in rec.data:
            raise rec.error("missing: the SRL stage needs step-wise instances (srl data build)", column)
    step = rec.data["expert_step"]
    if not isinstance(step, str) or not step.strip():
        raise rec.error(f"must be a non-empty string, got {json_type(step)}", "expert_step")
    prompt = rec.data["prompt"]
    if isinstance(prompt, str):
        if not prompt.strip():
            raise rec.error("empty", "prompt")
        return
    if not isinstance(prompt, list) or not prompt or not all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
            for m in prompt):
        raise rec.error("must be a string or a list of chat messages {role: str, content: str}", "prompt")


def json_type(value) -> str:
    return "null" if value is None else type(value).__name__


def srl_rows(run: RunArguments) -> list[dict[str, Any]]:
    """Step-wise instances for the SRL stage: read from an instances file, or built from solutions with the run's
    data options, by the same code as `srl data build` (`srl.data.build.instance_rows`)."""
    from srl.io import read_records

    path = run.train_data or BUNDLED_GSM8K
    if _read_instances(run, path):
        rows = []
        for rec in read_records(path):
            _check_instance(rec)
            rows.append(rec.data)
        return rows
    return list(instance_rows(run.data_config()))


def rlvr_rows(run: RunArguments) -> list[dict[str, Any]]:
    """Whole problems with their final answer, in the paper's evaluation prompt."""
    from srl.io import read_records

    path = run.train_data or BUNDLED_GSM8K
    problems = {}
    if _read_instances(run, path):  # built instances do not say the solutions' format
        for rec in read_records(path):
            answer = rec.text("final_answer")
            problems.setdefault(rec.data.get("trajectory_id"), (rec.text("problem"), answer,
                                                                 gold_kind_of(answer, None)))
    else:
        fmt = run.data_config().format
        for t in _trajectories(run):
            if t.final_answer:
                problems[t.id] = (t.problem, t.final_answer, gold_kind_of(t.final_answer, fmt))
    return [{"prompt": [{"role": "system", "content": EVAL_SYSTEM_PROMPT}, {"role": "user", "content": p}],
             "final_answer": a, "gold_kind": k, "trajectory_id": i} for i, (p, a, k) in problems.items()]


def sft_rows(run: RunArguments) -> list[dict[str, Any]]:
    """Prompt-completion pairs: the problem, and the expert's whole solution ending in `\\boxed{answer}`."""
    path = run.train_data or BUNDLED_GSM8K
    if run.data_format == "instances" or run.data_format == "auto" and _is_instances_file(path):
        raise InputError("the SFT stage trains on whole solutions: give the solutions file, not instances",
                         path=path, field="train_data")
    rows = []
    for t in _trajectories(run):
        solution = "\n".join(s.text for s in t.steps)
        if t.final_answer:
            solution += f"\nThe final answer is \\boxed{{{t.final_answer}}}."
        rows.append({"prompt": [{"role": "system", "content": EVAL_SYSTEM_PROMPT},
                                {"role": "user", "content": t.problem}],
                     "completion": [{"role": "assistant", "content": solution}], "trajectory_id": t.id})
    return rows


STAGE_ROWS = {"srl": srl_rows, "rlvr": rlvr_rows, "sft": sft_rows}


# --- running ------------------------------------------------------------------------------------------------
def output_format(run: RunArguments) -> OutputFormat:
    tags = ("<solution>", "</solution>") if run.solution_tags else (None, None)
    return OutputFormat(think=run.think, solution_open=tags[0], solution_close=tags[1],
                        think_prefilled=run.think_prefill and run.think != "off")


def _rewards(stage: str, run: RunArguments):
    from srl.rewards import get_action_reward, get_answer_reward, get_step_reward

    if stage == "srl":
        options = dict(method=run.similarity, autojunk=run.autojunk, normalize_whitespace=run.normalize_whitespace)
        if run.action_structure or run.action_shell:  # agent actions; else the paper's similarity on the text
            return [get_action_reward(output_format(run), structure=run.action_structure, shell=run.action_shell,
                                      **options)]
        return [get_step_reward(output_format(run), **options)]
    return [get_answer_reward(number_fallback=run.number_fallback)]


def _peft_config(run: RunArguments):
    if not run.use_peft:
        return None
    from peft import LoraConfig

    targets = run.lora_target_modules if run.lora_target_modules == "all-linear" else \
        [m.strip() for m in run.lora_target_modules.split(",")]
    return LoraConfig(r=run.lora_r, lora_alpha=run.lora_alpha, target_modules=targets, task_type="CAUSAL_LM")


def prepare_output_dir(cfg, run: RunArguments) -> str | None:
    """Check the run folder and return the checkpoint to resume from (None: start fresh)."""
    out = cfg.output_dir
    if run.resume:
        ckpt = last_complete_checkpoint(out)
        if ckpt is None:
            logger.warning("--resume: no complete checkpoint in %s, starting from scratch", out)
        return ckpt
    if complete_checkpoints(out):
        raise InputError("already holds checkpoints: pass --resume to continue, or choose another --output_dir",
                         path=out, field="output_dir")
    return None


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
    rows = STAGE_ROWS[stage](run)  # bad training data is refused here, before anything heavy is imported
    if run.max_train_samples:
        rows = rows[: run.max_train_samples]
    if not rows:
        raise InputError("no training rows", path=run.train_data or BUNDLED_GSM8K, field="train_data")
    warn_benchmark_overlap(_problems(rows), run.train_data or BUNDLED_GSM8K)
    train_rows, eval_rows = _split_validation(rows, lambda r: r.get("trajectory_id"), run.validation_problems,
                                              cfg.seed)
    import datasets

    from srl.models import load_model_and_tokenizer
    from srl.training.reporting import MetricsFileCallback, ProgressCallback

    train_ds = datasets.Dataset.from_list(train_rows)
    eval_ds = datasets.Dataset.from_list(eval_rows) if eval_rows else None

    from srl.training.threads import set_torch_threads

    threads = set_torch_threads(run.torch_threads)
    if progress and cfg.process_index == 0:
        from srl.console import console

        console(stderr=True).print(threads)
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and cfg.world_size == 1:
        raise InputError(f"launched as {launched} processes but each would train alone on the same folder; "
                         "on a machine without GPUs pass --use_cpu true", field="use_cpu")
    warm = None
    if run.model == "tiny" and stage != "sft":  # a random model must first learn to write something step-like
        warm = [r for r in train_rows if "expert_step" in r] or None
    prefix = "<think>\n</think>\n" if run.think != "off" else ""
    model, tokenizer = load_model_and_tokenizer(run.model, bf16=bool(cfg.bf16), seed=cfg.seed)
    if warm:
        from srl.tiny import warm_up

        warm_up(model, tokenizer, warm, steps=run.tiny_warm_up_steps, seed=cfg.seed, response_prefix=prefix)
    cbs = [MetricsFileCallback(os.path.join(cfg.output_dir, "metrics.jsonl"),
                               os.path.join(cfg.output_dir, "plots"), stage)]
    if progress:
        cbs.append(ProgressCallback())
    cbs += callbacks or []

    if stage == "sft":
        from trl import SFTTrainer

        trainer = SFTTrainer(model=model, args=cfg, train_dataset=train_ds, eval_dataset=eval_ds,
                             processing_class=tokenizer, peft_config=_peft_config(run), callbacks=cbs)
    else:
        from srl.training.trainer import SRLTrainer

        trainer = SRLTrainer(model=model, reward_funcs=_rewards(stage, run), args=cfg, train_dataset=train_ds,
                             eval_dataset=eval_ds, processing_class=tokenizer, peft_config=_peft_config(run),
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
                    "torch_threads": threads})
    trainer.train(resume_from_checkpoint=resume_from)
    final = os.path.join(cfg.output_dir, "final")
    trainer.save_model(final)
    if trainer.accelerator.is_main_process:
        tokenizer.save_pretrained(final)
        publish_model(trainer, final, stage, run, cfg)  # the model card (final/ and run folder), --push_to_hub
        write_json(os.path.join(final, COMPLETE_MARKER), {"stage": stage, "global_step": trainer.state.global_step})
    trainer.accelerator.wait_for_everyone()
    return final
