"""A training budget: stop a stage after so many optimizer steps, rollouts or seconds, and save checkpoint
candidates on the way (at fractions of the budget), so that a comparison can give every method the same budget
and choose each run's checkpoint on validation problems.

    budget = Budget("rollouts", 1280, candidates=(0.5, 1.0), path="runs/x/budget.json")
    run_stage("srl", run, cfg, callbacks=[budget])
    read_mapping("runs/x/budget.json")["marks"]     # {"0.5": 11, "1": 21}: optimizer step of each candidate

Rollouts are counted from the trainer's logs (`dynamic_sampling/rounds` × the generation batch, so dynamic
sampling's refills count), which needs `logging_steps = 1`. `unit = "epochs"` follows the stage's own length
(`max_steps` or `num_train_epochs`; SFT draws no rollouts) and only places the candidates.

The marks, and the steps, rollouts and seconds at each save, are kept in `path`, so a stage resumed from a
checkpoint (a steps or rollouts budget) counts on from there; a wall-clock budget is spoilt by an interruption.
Checkpoints saved only to resume from are pruned to the newest one.
"""

from __future__ import annotations

import math
import os
import shutil
import time

from transformers import TrainerCallback

from srl.errors import InputError
from srl.io import read_mapping, write_json

UNITS = ("steps", "rollouts", "seconds", "epochs")


class Budget(TrainerCallback):
    def __init__(self, unit: str, amount: float | None, *, candidates=(1.0,), path: str):
        if unit not in UNITS:
            raise InputError(f"unknown budget unit {unit!r} (expected one of {', '.join(UNITS)})", field="budget_unit")
        if unit != "epochs" and not (amount and amount > 0):
            raise InputError(f"must be > 0 for a budget in {unit}", field="budget")
        if not candidates or any(not 0 < c <= 1 for c in candidates):
            raise InputError("candidates must be fractions in (0, 1]", field="candidates")
        self.unit, self.amount, self.path = unit, amount, path
        self.candidates = sorted(set(float(c) for c in candidates) | {1.0})
        self.marks: dict[str, int] = {}  # fraction -> optimizer step
        self.at_mark: dict[str, dict] = {}  # fraction -> {"seconds", "rollouts"} when reached
        self.saved: dict[str, dict] = {}  # optimizer step of each save -> {"seconds", "rollouts"}
        self.rollouts = 0.0
        self.start = time.time()
        if os.path.exists(path):  # a stage resumed from one of its checkpoints
            before = read_mapping(path, what="budget file")
            self.marks, self.at_mark, self.saved = before["marks"], before["at_mark"], before["saved"]

    def on_train_begin(self, args, state, control, **kwargs):
        if self.unit == "rollouts" and args.logging_steps != 1:
            raise InputError("a budget in rollouts counts them from every step's log: needs --logging_steps 1",
                             field="logging_steps")
        resumed = self.saved.get(str(state.global_step), {})
        self.start = time.time() - resumed.get("seconds", 0.0)
        self.rollouts = resumed.get("rollouts", 0.0)
        if self.unit == "epochs":
            self.amount = state.max_steps

    def _used(self, state) -> float:
        return {"steps": state.global_step, "epochs": state.global_step, "rollouts": self.rollouts,
                "seconds": time.time() - self.start}[self.unit]

    def _check(self, state, control):
        used = self._used(state)
        for c in self.candidates:
            key = f"{c:g}"
            threshold = max(1, math.ceil(self.amount * c)) if self.unit in ("steps", "epochs") else self.amount * c
            if key not in self.marks and used >= threshold:
                self.marks[key] = state.global_step
                self.at_mark[key] = self._now(state)
                control.should_save = True
        if "1" in self.marks:
            control.should_training_stop = True
        return control

    def progress_of(self, state) -> tuple[float, float, str] | None:
        """(used, amount, unit) for a progress bar where this budget, not max_steps, ends training (rollouts,
        seconds); None for steps and epochs (max_steps is then the length)."""
        if self.unit in ("steps", "epochs"):
            return None
        return round(self._used(state)), self.amount, self.unit

    def _now(self, state) -> dict:
        return {"step": state.global_step, "seconds": round(time.time() - self.start, 1),
                "rollouts": int(self.rollouts)}

    def on_step_end(self, args, state, control, **kwargs):
        return control if self.unit == "rollouts" else self._check(state, control)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "dynamic_sampling/rounds" in logs:
            self.rollouts += logs["dynamic_sampling/rounds"] * args.generation_batch_size
            for mark in self.at_mark.values():  # a mark set at this step's end, before its log
                if mark["step"] == state.global_step:
                    mark["rollouts"] = int(self.rollouts)
        return self._check(state, control) if self.unit == "rollouts" and logs and "loss" in logs else control

    def _write(self) -> None:
        write_json(self.path, {"unit": self.unit, "amount": self.amount, "marks": self.marks,
                               "at_mark": self.at_mark, "saved": self.saved})

    def on_save(self, args, state, control, **kwargs):
        from srl.training.checkpoints import complete_checkpoints

        self.saved[str(state.global_step)] = self._now(state)
        self._write()
        keep = {f"checkpoint-{step}" for step in self.marks.values()}
        for path in complete_checkpoints(args.output_dir)[:-1]:  # the newest complete one is kept to resume from
            if os.path.basename(path) not in keep:
                shutil.rmtree(path, ignore_errors=True)
        return control

    def on_train_end(self, args, state, control, **kwargs):
        if "1" not in self.marks:  # the stage ended on its own (its max_steps or epochs) before the budget
            self.marks["1"] = state.global_step
            self.at_mark["1"] = self._now(state)
        self._write()
