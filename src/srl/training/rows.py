"""The rows each training stage trains on, read from `--train_data` with the run's data options (the same code
as `srl data build`), and the validation split. Used by `srl train`, `srl compare` and the verl export.

- `srl`:  step-wise instances (`srl_rows`): read from an instances file, or built from expert solutions;
- `rlvr`: whole problems with their final answer, in the paper's evaluation prompt (`rlvr_rows`);
- `sft`:  prompt-completion pairs, the problem and the expert's whole solution (`sft_rows`).
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any

from srl.data import BUNDLED_GSM8K
from srl.data.formats import gold_kind_of
from srl.data.build import DataOptions, instance_rows, iter_trajectories
from srl.data.prompts import EVAL_SYSTEM_PROMPT
from srl.errors import InputError
from srl.data.instances import INSTANCE_COLUMNS, checked_instances
from srl.training.config import RunArguments


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


def problems_of(rows: list[dict[str, Any]]):
    """The problem text of each training row (a string prompt without a `problem` column has none), for the
    warning about training on evaluation problems."""
    for r in rows:
        prompt = r.get("prompt")
        yield r.get("problem") or (prompt[-1].get("content") if isinstance(prompt, list) and prompt else None)


def split_validation(items: list, key, n: int, seed: int) -> tuple[list, list]:
    """Hold out `n` whole problems (never one step of a problem in each split)."""
    if n <= 0:
        return items, []
    ids = sorted({key(x) for x in items})
    if n >= len(ids):
        raise InputError(f"asks for {n} validation problems but the data has {len(ids)}", field="validation_problems")
    held = set(random.Random(seed).sample(ids, n))
    return [x for x in items if key(x) not in held], [x for x in items if key(x) in held]


def srl_rows(run: RunArguments) -> list[dict[str, Any]]:
    """Step-wise instances for the SRL stage (`_instances`), with the `remaining` column when the run compares
    actions with the expert's remaining solution (`--step_target remaining`)."""
    rows = _instances(run)
    return with_remaining(rows) if getattr(run, "step_target", "next") == "remaining" else rows


def _instances(run: RunArguments) -> list[dict[str, Any]]:
    """Step-wise instances for the SRL stage: read from an instances file, or built from solutions with the run's
    data options, by the same code as `srl data build` (`srl.data.build.instance_rows`)."""
    from srl.io import read_records

    path = run.train_data or BUNDLED_GSM8K
    if _read_instances(run, path):
        return [rec.data for rec in checked_instances(read_records(path))]
    from srl.models import load_tokenizer

    return list(instance_rows(run.data_config(), load_tokenizer=load_tokenizer))


def with_remaining(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows with a `remaining` column: the instance's target and every later target of its trajectory, joined
    by newlines (the expert's remaining solution, for `--step_target remaining`)."""
    by_trajectory: dict[Any, list[tuple[int, str]]] = {}
    for r in rows:
        by_trajectory.setdefault(r.get("trajectory_id"), []).append((int(r.get("step_index") or 0), r["expert_step"]))
    for steps in by_trajectory.values():
        steps.sort()
    return [{**r, "remaining": "\n".join(s for i, s in by_trajectory[r.get("trajectory_id")]
                                          if i >= int(r.get("step_index") or 0))} for r in rows]


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
    """Prompt-completion pairs: the problem, and the expert's whole solution ending in `\\boxed{answer}` (added
    unless its last step already holds a `\\boxed{}`)."""
    path = run.train_data or BUNDLED_GSM8K
    if run.data_format == "instances" or run.data_format == "auto" and _is_instances_file(path):
        raise InputError("the SFT stage trains on whole solutions: give the solutions file, not instances",
                         path=path, field="train_data")
    rows = []
    for t in _trajectories(run):
        solution = "\n".join(s.text for s in t.steps)
        if t.final_answer and "\\boxed{" not in (t.steps[-1].text if t.steps else ""):
            solution += f"\nThe final answer is \\boxed{{{t.final_answer}}}."
        rows.append({"prompt": [{"role": "system", "content": EVAL_SYSTEM_PROMPT},
                                {"role": "user", "content": t.problem}],
                     "completion": [{"role": "assistant", "content": solution}], "trajectory_id": t.id})
    return rows


STAGE_ROWS = {"srl": srl_rows, "rlvr": rlvr_rows, "sft": sft_rows}
