"""Expert trajectories: the data model and the loaders that read them from files or `datasets`.

A trajectory is one expert solution of one problem, already cut into ordered steps (`srl.data.steps` holds the
`Step` type and the splitters). Records come from JSONL, JSON (a list of objects), parquet, a `datasets` folder
saved with `save_to_disk`, or an in-memory `datasets.Dataset` (`srl.io.read_records`); the field names are
configurable.

Every problem in the input is reported as an `InputError` naming the file, line (or record) and field.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from srl.data.formats import data_format
from srl.data.steps import Step, split_list
from srl.io import file_stem, read_records


@dataclass
class Trajectory:
    """An expert solution: a problem, its ordered steps and the final answer.

    Args:
        id: stable identifier (from the data, or `<source>-<record number>`).
        problem: the task statement shown to the model.
        steps: the expert's actions, in order.
        final_answer: the expert's final answer (e.g. the `\\boxed{}` content or GSM8K `#### n`), if known.
        source: where the trajectory came from (file name or dataset name).
        system: optional extra context shown before the problem (a system text, a repository description...).
    """

    id: str
    problem: str
    steps: list[Step]
    final_answer: str | None = None
    source: str = ""
    system: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def read_trajectories(source: Any, fmt: str, *, problem_field: str | None = None,
                      solution_field: str | None = None, answer_field: str | None = None,
                      id_field: str | None = None, system_field: str | None = None,
                      max_chars: int = 50_000, file_type: str | None = None,
                      **split_options: Any) -> Iterator[Trajectory]:
    """Read records from `source` one at a time and cut each solution into steps with the `fmt` splitter of
    `srl.data.steps` (a generator; `srl.data.build.load_trajectories` gives the list, and reads every format).

    Args:
        source: a path or a `datasets.Dataset` (see `read_records`).
        fmt: a solution format of `srl.data.formats` (e.g. "gsm8k"; "steps": the solution field is already a
            list of steps).
        problem_field / solution_field: field names (defaults: the format's).
        answer_field: field holding the final answer; if unset, the splitter's answer (`#### n`, `\\boxed{}`).
        id_field: field holding a stable id; if unset, `<file name>-<line or record number>`.
        system_field: optional field with extra context shown before the problem.
        max_chars: a problem, solution or step longer than this is an error (the input is probably broken).
        split_options: passed to the splitter (e.g. `keep_calculator=True`, `unit="paragraph"`, `pattern=...`).
    """
    data = data_format(fmt)
    if data.agent:
        raise ValueError(f"{fmt!r} is an agent format: read it with srl.data.agents.read_agent_trajectories")
    problem_field = problem_field or data.problem_field
    solution_field = solution_field or data.solution_field
    for rec in read_records(source, file_type):
        problem = rec.text(problem_field, max_chars=max_chars)
        if data.splitter is split_list:  # already a list of steps
            value = rec.data.get(solution_field)
            if not isinstance(value, list) or not value:
                raise rec.error("missing or not a list of steps", solution_field)
            try:
                parts = split_list(value)
            except (TypeError, ValueError) as e:
                raise rec.error(str(e), solution_field) from None
        else:
            text = rec.text(solution_field, max_chars=max_chars)
            try:
                parts = data.split(text, **split_options)
            except ValueError as e:
                raise rec.error(str(e), solution_field) from None
        for step in parts.steps:
            if len(step.text) > max_chars:
                raise rec.error(f"a step of {len(step.text):,} characters, over the limit of {max_chars:,}",
                                solution_field)
        answer = parts.final_answer
        if answer_field:
            answer = rec.text(answer_field)
        name = file_stem(rec.path)
        yield Trajectory(
            id=rec.text(id_field) if id_field else f"{name}-{rec.line}",
            problem=problem,
            steps=parts.steps,
            final_answer=answer,
            source=name,
            system=rec.text(system_field, required=False) if system_field else None,
        )
