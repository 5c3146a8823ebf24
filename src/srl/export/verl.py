"""`srl data export --to verl`: SRL (or RLVR) training data for verl, the engine the paper trained with.

One command turns our rows into a folder verl 0.9.1 runs as it is:

    train.parquet, val.parquet   verl's RL dataset layout (`verl.utils.dataset.rl_dataset.RLHFDataset`):
                                 data_source, prompt (chat messages), ability, reward_model, extra_info
    srl_reward.py                verl's `compute_score`, scoring with `srl.rewards` (a copy of
                                 `srl/export/srl_reward.py`)
    srl_verl.yaml, run_srl.sh    the paper's values in verl's keys (Hydra config on top of verl's ppo_trainer)
    srl_export.json              what was exported, with which options (and: this folder is ours)

The rows are exactly those `srl train` trains on (`srl.training.rows.srl_rows` / `rlvr_rows`): the same system prompt
and user turn, the expert step (SRL) or final answer (RLVR) as `reward_model.ground_truth`, and in
`extra_info` every reward option `srl train` would use, so that `compute_score` gives `srl train`'s reward.

Units differ between the engines (see docs/scaling.md): verl counts *prompts* in `data.train_batch_size` and
`actor.ppo_mini_batch_size` (it multiplies the latter by `rollout.n`), TRL counts completions.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from dataclasses import dataclass, field
from typing import Any, Literal

from srl.data.formats import SOLUTION_FORMATS
from srl.data.prompts import ThinkMode
from srl.errors import InputError
from srl.io import check_output_target, follow_umask, write_parquet

# `--data_format`: built instances, or solutions in a format whose reading needs no option export lacks (regex
# needs its --pattern).
ExportDataFormat = Literal[("auto", "instances") + tuple(f for f in SOLUTION_FORMATS if f != "regex")]

VERL_VERSION = "0.9.1"
DATA_SOURCES = {"srl": "srl_step", "rlvr": "srl_outcome"}
PAPER_BATCH_PROMPTS = {"srl": 512, "rlvr": 128}  # Section 4.1
RESPONSE_TOKENS = {"srl": 2048, "rlvr": 4096}  # our recipes' max_completion_length (not reported by the paper)
REWARD_TEMPLATE = os.path.join(os.path.dirname(__file__), "srl_reward.py")
MARKER = "srl_export.json"
FILES = ("train.parquet", "val.parquet", "srl_reward.py", "srl_verl.yaml", "run_srl.sh", MARKER)


@dataclass
class ExportConfig:
    """`srl data export`: write SRL or RLVR rows, the reward and a run configuration for another engine."""

    input: str = field(metadata={
        "help": "Training data as `srl train` reads it: step-wise instances from `srl data build` (.jsonl, .json, "
                ".parquet or folder), or expert solutions (built on the fly with --data_format)."})
    output: str = field(metadata={
        "help": "Folder to write (train.parquet, val.parquet, srl_reward.py, srl_verl.yaml, run_srl.sh); an "
                "existing folder is replaced only if it is a previous export."})
    to: Literal["verl"] = field(default="verl", metadata={"help": f"The engine: verl (version {VERL_VERSION})."})
    stage: Literal["srl", "rlvr"] = field(default="srl", metadata={
        "help": "srl: step-wise instances with the step reward (data_source srl_step); rlvr: whole problems with "
                "the outcome reward and DAPO's group filter (data_source srl_outcome), as `srl train --stage`."})
    data_format: ExportDataFormat = field(default="auto", metadata={
        "help": "How to read --input, as `srl train --data_format`: `auto` = instances if the file has `prompt` and "
                "`expert_step` columns, else gsm8k solutions."})
    validation_fraction: float = field(default=0.0, metadata={
        "help": "Hold out this fraction of the problems (whole trajectories) as val.parquet (0: none; at least one "
                "problem when > 0)."})
    seed: int = field(default=42, metadata={"help": "Seed of the validation split (and of verl's data shuffle)."})
    ability: str = field(default="math", metadata={"help": "verl's `ability` column (a label for logs)."})
    # --- the reward, exactly as `srl train` scores (see `srl train --help`) ---
    think: ThinkMode = field(default="required", metadata={
        "help": "Output format the reward checks, as `srl train --think` (required: <think>...</think> then the "
                "action, else -1)."})
    solution_tags: bool = field(default=False, metadata={
        "help": "As `srl train --solution_tags`: the action must be wrapped in <solution>...</solution>."})
    similarity: Literal["difflib", "indel"] = field(default="difflib", metadata={
        "help": "Step similarity, as `srl train --similarity` (difflib = the paper)."})
    autojunk: bool = field(default=True, metadata={"help": "As `srl train --autojunk` (difflib's heuristic)."})
    normalize_whitespace: bool = field(default=False, metadata={
        "help": "As `srl train --normalize_whitespace`."})
    action_structure: bool = field(default=False, metadata={
        "help": "Agent instances, as `srl train --action_structure`: compare tool calls by structure."})
    action_shell: bool = field(default=False, metadata={
        "help": "Agent instances, as `srl train --action_shell`: normalise shell whitespace first."})
    number_fallback: Literal["auto", "on", "off"] = field(default="auto", metadata={
        "help": "RLVR rows, as `srl train --number_fallback`: score a response without \\boxed{} or `#### n` by its "
                "last number (auto = for GSM8K answers)."})
    score_decimals: int | None = field(default=None, metadata={
        "help": "Round the SRL score to this many decimals, so that verl's group filter (it drops a group only "
                "when the std of its scores is exactly 0) also drops groups whose rewards differ by less than the "
                "rounding. Default: no rounding, the exact reward of `srl train`."})
    # --- the run configuration (verl keys; the paper's values, Section 4.1) ---
    model: str = field(default="Qwen/Qwen2.5-7B-Instruct", metadata={
        "help": "actor_rollout_ref.model.path: a Hugging Face id or local folder (the paper: Qwen2.5-7B-Instruct)."})
    train_batch_size: int | None = field(default=None, metadata={
        "help": "data.train_batch_size in PROMPTS (default: the paper's 512 for srl, 128 for rlvr)."})
    ppo_mini_batch_size: int | None = field(default=None, metadata={
        "help": "actor.ppo_mini_batch_size in PROMPTS, multiplied by rollout_n inside verl (default: the train "
                "batch size = one optimizer step per batch; not reported by the paper)."})
    micro_batch_size_per_gpu: int = field(default=4, metadata={
        "help": "actor.ppo_micro_batch_size_per_gpu and the log-prob micro batch (completions per GPU per pass)."})
    rollout_n: int = field(default=8, metadata={"help": "rollout.n: G, rollouts per prompt (the paper: 8)."})
    learning_rate: float = field(default=5e-7, metadata={"help": "actor.optim.lr (the paper: 5e-7)."})
    temperature: float = field(default=1.0, metadata={"help": "rollout.temperature (the paper: 1.0)."})
    clip_ratio_low: float = field(default=0.2, metadata={"help": "actor.clip_ratio_low (TRL's epsilon, 0.2)."})
    clip_ratio_high: float = field(default=0.2, metadata={
        "help": "actor.clip_ratio_high (TRL's epsilon_high, default = epsilon; DAPO uses 0.28)."})
    max_prompt_length: int = field(default=2048, metadata={
        "help": "data.max_prompt_length in tokens; verl drops longer prompts (filter_overlong_prompts)."})
    max_response_length: int | None = field(default=None, metadata={
        "help": "data.max_response_length in tokens (default: our recipes' 2048 for srl, 4096 for rlvr)."})
    dynamic_sampling: bool = field(default=True, metadata={
        "help": "algorithm.filter_groups: drop groups whose rewards are all equal and refill the batch (the paper; "
                "metric `score` for srl, `acc` for rlvr)."})
    total_epochs: int = field(default=30, metadata={"help": "trainer.total_epochs (the paper: up to 30)."})
    n_gpus_per_node: int = field(default=8, metadata={"help": "trainer.n_gpus_per_node."})
    nnodes: int = field(default=1, metadata={"help": "trainer.nnodes."})
    rollout_engine: Literal["vllm", "sglang"] = field(default="vllm", metadata={"help": "rollout.name."})
    rollout_tensor_parallel: int = field(default=1, metadata={"help": "rollout.tensor_model_parallel_size."})

    def __post_init__(self):
        import math

        for name in ("learning_rate", "temperature"):
            if not (getattr(self, name) > 0 and math.isfinite(getattr(self, name))):
                raise InputError(f"must be > 0, got {getattr(self, name)}", field=name)
        for name in ("clip_ratio_low", "clip_ratio_high"):
            if not 0 <= getattr(self, name) < 1:
                raise InputError(f"must be in [0, 1), got {getattr(self, name)}", field=name)
        if self.score_decimals is not None and self.score_decimals < 0:
            raise InputError(f"must be >= 0 (or left out: exact scores), got {self.score_decimals}",
                             field="score_decimals")
        if not 0 <= self.validation_fraction < 1:
            raise InputError("must be in [0, 1)", field="validation_fraction")
        if self.rollout_n < 2:
            raise InputError("must be >= 2: GRPO compares a prompt's rollouts with each other", field="rollout_n")
        for name in ("train_batch_size", "ppo_mini_batch_size", "micro_batch_size_per_gpu", "max_prompt_length",
                     "max_response_length", "total_epochs", "n_gpus_per_node", "nnodes", "rollout_tensor_parallel"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise InputError("must be >= 1", field=name)
        train, mini = self.prompts_per_batch, self.prompts_per_update
        if mini > train or train % mini:
            raise InputError(f"must divide the train batch size ({train} prompts)", field="ppo_mini_batch_size")
        gpus = self.n_gpus_per_node * self.nnodes
        if (train * self.rollout_n) % gpus:
            raise InputError(f"train batch x rollout_n ({train} x {self.rollout_n}) must be divisible by the "
                             f"number of GPUs ({gpus}), as verl requires", field="train_batch_size")

    @property
    def prompts_per_batch(self) -> int:
        return self.train_batch_size or PAPER_BATCH_PROMPTS[self.stage]

    @property
    def prompts_per_update(self) -> int:
        return self.ppo_mini_batch_size or self.prompts_per_batch


@dataclass
class ExportSummary:
    """What an export wrote: rows per split, problems per split, the folder."""

    output: str
    stage: str
    rows: dict[str, int]
    problems: dict[str, int]


# --- rows ---------------------------------------------------------------------------------------------------
def reward_options(cfg: ExportConfig) -> dict[str, Any]:
    """The options `srl_reward.compute_score` reads from `extra_info`: those `srl train` scores with."""
    from srl.rewards.stage import reward_options as stage_options

    if cfg.stage == "rlvr":
        return stage_options("rlvr", cfg)
    return {**stage_options("srl", cfg), "think_prefill": False, "score_decimals": cfg.score_decimals}


def read_rows(cfg: ExportConfig) -> list[dict[str, Any]]:
    """The rows `srl train --stage {srl,rlvr}` would train on, read with the same code."""
    from srl.training.config import RunArguments
    from srl.training.rows import STAGE_ROWS

    run = RunArguments(train_data=cfg.input, data_format=cfg.data_format, think=cfg.think)
    return STAGE_ROWS[cfg.stage](run)


def verl_row(row: dict[str, Any], index: int, split: str, cfg: ExportConfig) -> dict[str, Any]:
    """One row in verl's layout (`RLHFDataset`; `NaiveRewardManager` passes `data_source`,
    `reward_model.ground_truth` and `extra_info` to `compute_score`)."""
    target = row["expert_step"] if cfg.stage == "srl" else row["final_answer"]
    where = f"row {index} ({row.get('trajectory_id')})"
    if not isinstance(target, str) or not target.strip():
        raise InputError(f"{where}: empty or missing", path=cfg.input,
                         field="expert_step" if cfg.stage == "srl" else "final_answer")
    prompt = row["prompt"]
    if not isinstance(prompt, list) or not all(isinstance(m, dict) and isinstance(m.get("content"), str)
                                               for m in prompt):
        raise InputError(f"{where}: expected chat messages", path=cfg.input, field="prompt")
    info: dict[str, Any] = {"index": index, "split": split, "trajectory_id": str(row.get("trajectory_id"))}
    if cfg.stage == "srl":
        info |= {"step_index": int(row.get("step_index") or 0), "num_steps": int(row.get("num_steps") or 0),
                 "final_answer": None if row.get("final_answer") is None else str(row["final_answer"])}
    else:
        info["gold_kind"] = row.get("gold_kind")
    return {"data_source": DATA_SOURCES[cfg.stage],
            "prompt": [{"role": str(m["role"]), "content": m["content"]} for m in prompt],
            "ability": cfg.ability,
            "reward_model": {"style": "rule", "ground_truth": target},
            "extra_info": info | reward_options(cfg)}


def _check_think(rows: list[dict[str, Any]], cfg: ExportConfig) -> None:
    """A prompt without the monologue (built with --think off) scored with --think required gives -1 to every
    response: refuse that before a cluster learns nothing from it."""
    from srl.data.prompts import SYSTEM_PROMPT_NO_THINK

    if cfg.stage != "srl" or cfg.think != "required":
        return
    for i, row in enumerate(rows):
        system = next((m.get("content") for m in row["prompt"] if m.get("role") == "system"), None)
        if system == SYSTEM_PROMPT_NO_THINK:
            raise InputError(f"row {i}: the instances were built with --think off (their system prompt asks for no "
                             "<think> monologue) but the reward would require one: pass --think off (or optional)",
                             path=cfg.input, field="think")


def split_rows(rows: list[dict[str, Any]], cfg: ExportConfig) -> tuple[list, list]:
    """Train and validation rows, holding out whole problems as `srl train --validation_problems` does."""
    from srl.training.rows import split_validation

    if cfg.validation_fraction <= 0:
        return rows, []
    problems = len({r.get("trajectory_id") for r in rows})
    held = max(1, round(cfg.validation_fraction * problems))
    return split_validation(rows, lambda r: r.get("trajectory_id"), held, cfg.seed)


# --- run configuration ----------------------------------------------------------------------------------------
def config_yaml(cfg: ExportConfig, has_val: bool) -> str:
    """verl's Hydra config for this export: verl's `ppo_trainer` with the paper's values on top."""
    stage = cfg.stage
    metric = "score" if stage == "srl" else "acc"
    response = cfg.max_response_length or RESPONSE_TOKENS[stage]
    q = json.dumps  # a JSON string is a YAML string
    return f"""\
# verl {VERL_VERSION} configuration for `srl train --stage {stage}`, written by `srl data export --to verl`.
# Run: bash run_srl.sh [more Hydra overrides, e.g. trainer.n_gpus_per_node=4]. It sets the data and reward paths.
# Units: verl counts PROMPTS in data.train_batch_size and actor.ppo_mini_batch_size (the latter is multiplied by
# rollout.n inside verl); TRL counts completions. The paper: Section 4.1 of Deng et al. (arXiv 2510.25992).
hydra:
  searchpath:
    - pkg://verl.trainer.config
defaults:
  - ppo_trainer
  - _self_

data:
  # PROMPTS a step (paper: {PAPER_BATCH_PROMPTS[stage]}) x rollout.n = {cfg.prompts_per_batch * cfg.rollout_n} rollouts
  train_batch_size: {cfg.prompts_per_batch}
  max_prompt_length: {cfg.max_prompt_length}  # tokens
  max_response_length: {response}  # tokens (not reported by the paper)
  filter_overlong_prompts: true  # verl drops longer prompts (it prints the dataset length after filtering)
  truncation: error
  shuffle: true
  seed: {cfg.seed}

actor_rollout_ref:
  model:
    path: {q(cfg.model)}
  actor:
    optim:
      lr: {_yaml_float(cfg.learning_rate)}  # paper: 5e-7
      lr_warmup_steps: 0  # paper: no warm-up
    ppo_mini_batch_size: {cfg.prompts_per_update}  # PROMPTS per optimizer step; verl multiplies by rollout.n
    ppo_micro_batch_size_per_gpu: {cfg.micro_batch_size_per_gpu}
    ppo_epochs: 1
    use_kl_loss: false  # paper: no KL term
    kl_loss_coef: 0.0
    entropy_coeff: 0
    clip_ratio_low: {_yaml_float(cfg.clip_ratio_low)}
    clip_ratio_high: {_yaml_float(cfg.clip_ratio_high)}
    grad_clip: 1.0  # paper: 1.0
    loss_agg_mode: token-mean  # TRL's default loss_type "dapo" also averages over the batch's tokens
  rollout:
    name: {cfg.rollout_engine}
    n: {cfg.rollout_n}  # G (paper: 8)
    temperature: {_yaml_float(cfg.temperature)}  # paper: 1.0
    top_p: 1.0
    tensor_model_parallel_size: {cfg.rollout_tensor_parallel}
    log_prob_micro_batch_size_per_gpu: {cfg.micro_batch_size_per_gpu}
  ref:
    log_prob_micro_batch_size_per_gpu: {cfg.micro_batch_size_per_gpu}

algorithm:
  adv_estimator: grpo
  norm_adv_by_std_in_grpo: true
  use_kl_in_reward: false
  filter_groups:  # dynamic sampling (paper) / DAPO: drop a prompt's group when its rewards are all equal
    enable: {str(cfg.dynamic_sampling).lower()}
    metric: {metric}  # compute_score's "{metric}" (= the reward) from reward_extra_info
    # verl drops a group only when np.std of its metric is exactly 0; `srl train` drops std <= 1e-6
    # (--dynamic_sampling_eps). Groups with 0 < std <= 1e-6 are kept here; export with --score_decimals to
    # merge near-equal scores. verl refills until the batch is full; srl train stops after 8 rounds.
    max_inflight_gen_batches: 1

reward:
  reward_manager:
    name: naive  # calls compute_score once per response, with the response decoded without special tokens
  custom_reward_function:  # verl 0.9.x: under `reward.`; a top-level custom_reward_function.* is ignored
    name: compute_score  # run_srl.sh sets path to srl_reward.py beside this file

trainer:
  use_v1: true
  n_gpus_per_node: {cfg.n_gpus_per_node}
  nnodes: {cfg.nnodes}
  total_epochs: {cfg.total_epochs}  # paper: up to 30, keeping the best checkpoint on validation
  critic_warmup: 0
  val_before_train: {str(has_val).lower()}
  test_freq: {10 if has_val else -1}
  save_freq: 10
  project_name: srl
  experiment_name: {q(f"{stage}-{os.path.basename(os.path.normpath(cfg.output))}")}
  logger: [console]
"""


def _yaml_float(x: float) -> str:
    """A float every YAML reader reads as one: `5e-07` is a string to YAML 1.1 (PyYAML), `5.0e-07` is not."""
    text = repr(float(x))
    mantissa, _, exponent = text.partition("e")
    return f"{mantissa}.0e{exponent}" if exponent and "." not in mantissa else text


def run_script(cfg: ExportConfig, has_val: bool) -> str:
    """A shell script that runs verl's trainer on this folder (paths resolved from the script's own place)."""
    val = "val.parquet" if has_val else "train.parquet"
    return f"""\
#!/usr/bin/env bash
# verl {VERL_VERSION}: `srl train --stage {cfg.stage}` on a GPU cluster. Written by `srl data export --to verl`.
#   bash run_srl.sh [Hydra overrides...]   e.g. bash run_srl.sh trainer.n_gpus_per_node=4 trainer.logger=[console,wandb]
# Needs, in the Python that runs verl: verl=={VERL_VERSION} (with vLLM or SGLang), and srl for the reward, installed
# from a clone of its repository (it is not on PyPI) without its dependencies, so that verl's own pins stay:
#   git clone <supervised-rl repository> && pip install --no-deps ./supervised-rl
#   pip install 'math-verify[antlr4_9_3]>=0.7' cydifflib   (antlr 4.9.3: verl's Hydra pins antlr4-python3-runtime 4.9.*)
# On several nodes this folder must be on storage every node sees (verl loads srl_reward.py by path on each one).
set -euo pipefail
HERE="$(cd "$(dirname "${{BASH_SOURCE[0]}}")" && pwd)"
exec "${{PYTHON:-python3}}" -m verl.trainer.main_ppo --config-path "$HERE" --config-name srl_verl \\
    data.train_files="$HERE/train.parquet" \\
    data.val_files="$HERE/{val}" \\
    reward.custom_reward_function.path="$HERE/srl_reward.py" \\
    "$@"
"""


# --- writing ------------------------------------------------------------------------------------------------
def check_export_target(path: str, inputs: tuple[str, ...] = ()) -> None:
    """Refuse (InputError, before any work) to write where that would destroy user data: the output may be
    missing, an empty folder, or a previous export (our marker file and nothing but our files)."""
    check_output_target(path, inputs, ours=lambda p: MARKER in os.listdir(p) and set(os.listdir(p)) <= set(FILES),
                        written_by="`srl data export`", kind="folder")


def export(cfg: ExportConfig) -> ExportSummary:
    """Write the folder (all of it or nothing: into a temporary folder beside it, renamed at the end)."""
    from srl import __version__

    check_export_target(cfg.output, (cfg.input,))
    rows = read_rows(cfg)
    if not rows:
        raise InputError("no rows to export", path=cfg.input, field="input")
    _check_think(rows, cfg)
    train, val = split_rows(rows, cfg)
    splits = {"train": [verl_row(r, i, "train", cfg) for i, r in enumerate(train)],
              "val": [verl_row(r, i, "val", cfg) for i, r in enumerate(val)]}
    summary = ExportSummary(cfg.output, cfg.stage, {k: len(v) for k, v in splits.items()},
                            {k: len({r["extra_info"]["trajectory_id"] for r in v}) for k, v in splits.items()})

    from srl.io import atomic_path, write_json

    with atomic_path(cfg.output, folder=True) as tmp:  # the whole folder appears at once, or not at all
        for split, part in splits.items():
            if part:
                write_parquet(part, os.path.join(tmp, f"{split}.parquet"))
        shutil.copyfile(REWARD_TEMPLATE, os.path.join(tmp, "srl_reward.py"))
        with open(os.path.join(tmp, "srl_verl.yaml"), "w", encoding="utf-8") as f:
            f.write(config_yaml(cfg, bool(val)))
        script = os.path.join(tmp, "run_srl.sh")
        with open(script, "w", encoding="utf-8") as f:
            f.write(run_script(cfg, bool(val)))
        os.chmod(script, 0o700)
        follow_umask(tmp)  # every file as the umask gives (the script: executable)
        write_json(os.path.join(tmp, MARKER), {
            "written_by": "srl data export", "to": cfg.to, "verl_version": VERL_VERSION, "srl_version": __version__,
            "rows": summary.rows, "problems": summary.problems, "config": dataclasses.asdict(cfg)})
        check_export_target(cfg.output)  # still ours (or gone) right before it is replaced
    return summary
