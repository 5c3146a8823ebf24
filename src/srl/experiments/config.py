"""`CompareConfig`: every option of `srl compare`, documented; each field is also a flag (lists and mappings as
YAML text, e.g. `--seeds "[0, 1, 2]"`), and a key of the `--config` YAML file. Stage options also come as
`--srl.<option> v`, `--rlvr.<option> v`, `--sft.<option> v` and `--shared.<option> v`.

A method is a sequence of stages, each `{stage: srl|rlvr|sft, <srl train options>}`, trained one after another
from the base model (`srl.training.chain`). An RL stage may say which `budget_share` of the RL budget it gets
(default: the RL budget split evenly among the method's RL stages).
"""

from __future__ import annotations

import copy
import hashlib
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from srl.errors import InputError
from srl.training.budget import UNITS
from srl.training.presets import STAGES

# The paper's five rows and its dynamic-sampling ablation (Table 1: 27.6 with it, 24.7 without).
METHODS: dict[str, list[dict[str, Any]]] = {
    "base": [],
    "sft": [{"stage": "sft"}],
    "rlvr": [{"stage": "rlvr"}],
    "srl": [{"stage": "srl"}],
    "srl_rlvr": [{"stage": "srl"}, {"stage": "rlvr"}],
    "srl_nods": [{"stage": "srl", "dynamic_sampling": False}],
}
LABELS = {"base": "base (no training)", "sft": "SFT", "rlvr": "RLVR", "srl": "SRL", "srl_rlvr": "SRL → RLVR",
          "srl_nods": "SRL without dynamic sampling"}
RL_STAGES = ("srl", "rlvr")
# What compare sets for every RL stage unless the config says otherwise: a constant learning rate (verl's
# default, and a budget in rollouts or seconds has no known length to decay over) and a log line per step (the
# rollout count and the curves read it).
RL_DEFAULTS = {"lr_scheduler_type": "constant", "warmup_steps": 0, "logging_steps": 1}


@dataclass
class CompareConfig:
    """`srl compare`: train a base model with several methods at the same budget, choose each run's checkpoint
    on validation problems, evaluate every run on the same problems, and compare with paired tests."""

    model: str | None = field(default=None, metadata={
        "help": "The base model every method starts from (a known name, a folder, a cached Hugging Face id, or "
                "`tiny` for tests)."})
    train_data: str | None = field(default=None, metadata={
        "help": "Expert trajectories (solutions with a final answer): each stage derives its rows from them as "
                "`srl train` does (SRL: step-wise instances; RLVR: problems; SFT: whole solutions)."})
    data_format: str = field(default="auto", metadata={
        "help": "How to read --train_data (a format of `srl data build --format`; auto = gsm8k)."})
    methods: list[str] = field(default_factory=lambda: ["base", "sft", "rlvr", "srl", "srl_rlvr"], metadata={
        "help": f"Methods to compare, in table order: built-in ({', '.join(METHODS)}) or defined in "
                "--method_stages."})
    method_stages: dict[str, list[dict[str, Any]]] = field(default_factory=dict, metadata={
        "help": "Your methods (or changed built-ins): name -> list of stages, e.g. "
                "`{srl_rlvr: [{stage: srl, budget_share: 0.5}, {stage: rlvr, budget_share: 0.5}]}`."})
    labels: dict[str, str] = field(default_factory=dict, metadata={"help": "Method name -> label in the table."})
    seeds: list[int] = field(default_factory=lambda: [0], metadata={
        "help": "Training seeds: every trained method runs once per seed (the base model once)."})
    preset: str = field(default="cpu-small", metadata={
        "help": "Preset of every stage (`srl train --preset`): cpu-small, paper or none."})
    stage_options: dict[str, dict[str, Any]] = field(default_factory=dict, metadata={
        "help": "`srl train` options per stage: `{shared: {...}, srl: {...}, rlvr: {...}, sft: {...}}`; a "
                "method's own stage options win over these."})
    budget_unit: str = field(default="steps", metadata={
        "help": f"Unit of the RL budget, the same for every RL method: {', '.join(UNITS[:3])} (wall-clock)."})
    budget: float = field(default=20, metadata={
        "help": "RL budget of each method in --budget_unit (split among a method's RL stages)."})
    sft_budget_unit: str = field(default="epochs", metadata={
        "help": "Unit of the SFT stages' budget: epochs (their own num_train_epochs / max_steps), steps or "
                "seconds."})
    sft_budget: float | None = field(default=None, metadata={"help": "SFT budget in --sft_budget_unit."})
    candidates: list[float] = field(default_factory=lambda: [0.5, 1.0], metadata={
        "help": "Checkpoint candidates of each run, as fractions of its last stage's budget; the one with the best "
                "validation greedy accuracy is evaluated (ties: the later)."})
    validation_problems: int = field(default=30, metadata={
        "help": "Problems of --train_data held out before anything trains (the paper held out 60); 0: no "
                "validation, the end of training is evaluated."})
    validation_limit: int | None = field(default=None, metadata={
        "help": "Validation problems each candidate is scored on (default: all held out)."})
    evaluations: list[dict[str, Any]] = field(default_factory=list, metadata={
        "help": "Evaluations of every run: a list of `srl eval` options with a `name`, e.g. `[{name: gsm8k, "
                "data: gsm8k, limit: 500}, {name: gsm8k_avg4, data: gsm8k, limit: 50, greedy: false, k: 4}]`."})
    eval_options: dict[str, Any] = field(default_factory=dict, metadata={
        "help": "`srl eval` options for every evaluation and the validation (e.g. max_new_tokens, batch_size, "
                "backend, threads)."})
    step_eval: dict[str, Any] | None = field(default_factory=dict, metadata={
        "help": "The SRL objective on held-out step instances: `{data: <trajectories or instances>, data_format: "
                "..., limit: 200, max_new_tokens: 64}`; without `data`, the validation problems' steps; null: "
                "none."})
    output_dir: str = field(default="runs/compare", metadata={
        "help": "Work folder: data splits, run folders (checkpoints), evaluations."})
    record: str | None = field(default=None, metadata={
        "help": "Folder of the finished runs (runs/<method>-s<seed>.json), results.json, table.md and figures "
                "(default: --output_dir). Keep it in the repository: any machine reuses its finished runs, and "
                "runs measured with other settings are refused."})
    figures: str | None = field(default=None, metadata={
        "help": "Folder for the PNG figures (default: the record folder)."})
    title: str = field(default="", metadata={"help": "Title of the table and figures."})
    isolate: bool = field(default=True, metadata={
        "help": "Train and evaluate each model in its own process, so its memory is freed."})
    report_only: bool = field(default=False, metadata={
        "help": "Only redraw results.json, table.md and the figures from the record."})

    def __post_init__(self):
        if not self.report_only:
            for name in ("model", "train_data"):
                if not getattr(self, name):
                    raise InputError("required (the base model and its expert trajectories)", field=name)
        if not self.methods:
            raise InputError("at least one method", field="methods")
        if len(set(self.methods)) != len(self.methods):
            raise InputError("a method is named twice", field="methods")
        for name in self.methods:
            self.stages_of(name)  # unknown methods and bad stage lists fail here
        if not self.seeds or any(not isinstance(s, int) or s < 0 for s in self.seeds):
            raise InputError("a non-empty list of integers >= 0", field="seeds")
        if self.budget_unit not in UNITS[:3]:
            raise InputError(f"expected one of {', '.join(UNITS[:3])}", field="budget_unit")
        if not self.budget > 0:
            raise InputError("must be > 0", field="budget")
        if self.sft_budget_unit not in ("epochs", "steps", "seconds"):
            raise InputError("expected epochs, steps or seconds", field="sft_budget_unit")
        if self.sft_budget_unit != "epochs" and not (self.sft_budget and self.sft_budget > 0):
            raise InputError(f"must be > 0 with --sft_budget_unit {self.sft_budget_unit}", field="sft_budget")
        if not self.candidates or any(not 0 < c <= 1 for c in self.candidates):
            raise InputError("fractions in (0, 1]", field="candidates")
        if self.validation_problems < 0:
            raise InputError("must be >= 0", field="validation_problems")
        for section in self.stage_options:
            if section not in ("shared", *STAGES):
                raise InputError(f"unknown section (expected shared, {', '.join(STAGES)})", field="stage_options")
        names = [e.get("name") for e in self.evaluations if isinstance(e, dict)]
        if len(names) != len(self.evaluations) or not all(names) or len(set(names)) != len(names):
            raise InputError("each evaluation is a mapping with a unique `name`", field="evaluations")
        for name in self.methods:
            self.plan(name)  # budget shares and stage budgets fail here, before any work
        if self.record is None:
            self.record = self.output_dir

    # --- methods ---------------------------------------------------------------------------------------------
    def stages_of(self, method: str) -> list[dict[str, Any]]:
        """The stages of `method` as given (built-in or --method_stages)."""
        stages = self.method_stages.get(method, METHODS.get(method))
        if stages is None:
            raise InputError(f"unknown method '{method}' (built-in: {', '.join(METHODS)}; or define it in "
                             "method_stages)", field="methods")
        if not isinstance(stages, list) or not all(isinstance(s, dict) and s.get("stage") in STAGES for s in stages):
            raise InputError(f"method '{method}': a list of stages `{{stage: srl|rlvr|sft, ...options}}`",
                             field="method_stages")
        return stages

    def label(self, method: str) -> str:
        return self.labels.get(method) or LABELS.get(method, method)

    def plan(self, method: str) -> list[dict[str, Any]]:
        """The stages of `method` with everything that decides what they train: the options of each stage
        (preset, the config's stage options, the method's own) and its budget `{unit, amount}`."""
        stages = copy.deepcopy(self.stages_of(method))
        rl = [s for s in stages if s["stage"] in RL_STAGES]
        shares = [s.get("budget_share") for s in rl]
        if any(x is not None for x in shares) and (None in shares or abs(sum(shares) - 1) > 1e-6 or
                                                    min(shares) <= 0):
            raise InputError(f"method '{method}': every RL stage needs a budget_share > 0, summing to 1",
                             field="method_stages")
        plan = []
        for s in stages:
            stage = s.pop("stage")
            share = s.pop("budget_share", None)
            options = {"preset": self.preset, **(RL_DEFAULTS if stage in RL_STAGES else {}),
                       **self.stage_options.get("shared", {}), **self.stage_options.get(stage, {}), **s}
            if stage == "sft":
                budget = {"unit": self.sft_budget_unit, "amount": self.sft_budget}
            else:
                amount = self.budget * (share if share is not None else 1 / len(rl))
                budget = {"unit": self.budget_unit, "amount": round(amount) if self.budget_unit == "steps" else amount}
                if budget["unit"] == "steps" and budget["amount"] < 1:
                    raise InputError(f"method '{method}': its {stage} stage gets less than one step of the budget",
                                     field="budget")
            plan.append({"stage": stage, "options": options, "budget": budget})
        return plan

    def evaluation_settings(self) -> dict[str, Any]:
        """What every run is evaluated with (a run measured otherwise cannot be compared)."""
        return {"evaluations": self.evaluations, "eval_options": self.eval_options, "step_eval": self.step_eval,
                "validation_problems": self.validation_problems, "validation_limit": self.validation_limit,
                "candidates": sorted(self.candidates)}

    def run_settings(self, method: str, data_digest: str) -> dict[str, Any]:
        """Everything a run's numbers depend on; a recorded run with other settings is refused."""
        return {"model": self.model, "train_data": os.path.basename(str(self.train_data)),
                "data_digest": data_digest, "data_format": self.data_format, "plan": self.plan(method),
                **self.evaluation_settings()}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def digest(path: str) -> str:
    """A short content hash of a file (which data a run was trained on)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]
