"""Expert trajectories: the data model and the loaders that read them from files or `datasets`.

A trajectory is one expert solution of one problem, already cut into ordered steps (see `srl.data.steps` for the
splitters). Records come from JSONL, JSON (a list of objects), parquet, a `datasets` folder saved with
`save_to_disk`, or an in-memory `datasets.Dataset`; the field names are configurable.

Every problem in the input is reported as an `InputError` naming the file, line (or record) and field.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from srl.errors import InputError


@dataclass(frozen=True)
class Step:
    """One expert action. `title` is the short heading of the paper's template `1. **Title** action`."""

    action: str
    title: str | None = None

    @property
    def text(self) -> str:
        """The step as the expert wrote it (without its number): `**Title** action`, or the action alone."""
        return f"**{self.title}** {self.action}" if self.title else self.action


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


@dataclass(frozen=True)
class Record:
    """A raw input row and where it came from (1-based `line` for JSONL, `record` number otherwise)."""

    data: dict[str, Any]
    path: str
    line: int
    unit: str = "line"

    def error(self, message: str, field: str | None = None) -> InputError:
        return InputError(message, path=self.path, line=self.line, field=field, unit=self.unit)

    def text(self, name: str, *, required: bool = True, max_chars: int | None = None) -> str | None:
        """The string field `name`, checked: present, a string (numbers are converted), not empty."""
        if name not in self.data or self.data[name] is None:
            if required:
                raise self.error("missing (use the field-name options if it has another name)", name)
            return None
        value = self.data[name]
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise self.error(f"expected a string, got {type(value).__name__}", name)
        if required and not value.strip():
            raise self.error("empty", name)
        if max_chars is not None and len(value) > max_chars:
            raise self.error(f"{len(value):,} characters, over the limit of {max_chars:,} (raise --max-chars)", name)
        return value


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON value")


def _json_error(e: ValueError) -> str:
    if isinstance(e, json.JSONDecodeError):
        return f"invalid JSON: {e.msg} (column {e.colno})"
    return f"invalid JSON: {e}"


def _read_jsonl(path: str) -> Iterator[Record]:
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise InputError(f"not UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1})",
                                 path=path, line=line_no) from None
            if not line.strip():
                continue
            try:
                data = json.loads(line, parse_constant=_refuse_constant)  # NaN, Infinity: not JSON
            except ValueError as e:
                raise InputError(_json_error(e), path=path, line=line_no) from None
            if not isinstance(data, dict):
                raise InputError(f"expected a JSON object, got {type(data).__name__}", path=path, line=line_no)
            yield Record(data, path, line_no)


def _read_json(path: str) -> Iterator[Record]:
    with open(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line_no = raw.count(b"\n", 0, e.start) + 1
        raise InputError(f"not UTF-8 (byte 0x{raw[e.start]:02x})", path=path, line=line_no) from None
    try:
        data = json.loads(text, parse_constant=_refuse_constant)
    except ValueError as e:
        raise InputError(_json_error(e), path=path, line=getattr(e, "lineno", None)) from None
    if isinstance(data, dict):  # {"data": [...]} or a single record
        lists = [v for v in data.values() if isinstance(v, list) and v and all(isinstance(x, dict) for x in v)]
        data = lists[0] if len(lists) == 1 else [data]
    if not isinstance(data, list):
        raise InputError("expected a JSON list of objects", path=path)
    for i, item in enumerate(data, start=1):
        if not isinstance(item, dict):
            raise InputError(f"expected a JSON object, got {type(item).__name__}", path=path, line=i, unit="record")
        yield Record(item, path, i, unit="record")


def _read_rows(rows: Iterable[dict[str, Any]], name: str) -> Iterator[Record]:
    for i, item in enumerate(rows, start=1):
        yield Record(dict(item), name, i, unit="record")


def read_records(source: Any, fmt: str | None = None) -> Iterator[Record]:
    """Yield the raw records of `source`: a path (`.jsonl`, `.json`, `.parquet`, a `save_to_disk` folder) or
    a `datasets.Dataset` / list of dicts. `fmt` forces the file type ("jsonl", "json", "parquet", "arrow")."""
    if not isinstance(source, (str, os.PathLike)):
        yield from _read_rows(source, getattr(source, "info", None) and source.info.dataset_name or "<dataset>")
        return
    path = os.fspath(source)
    if not os.path.exists(path):
        raise InputError("no such file or folder", path=path)
    kind = fmt or ("arrow" if os.path.isdir(path) else os.path.splitext(path)[1].lstrip(".").lower())
    if kind in ("jsonl", "ndjson"):
        yield from _read_jsonl(path)
    elif kind == "json":
        yield from _read_json(path)
    elif kind == "parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as e:  # pyarrow raises several types for corrupt files
            raise InputError(f"cannot read parquet: {e}", path=path) from None
        yield from _read_rows(table.to_pylist(), path)
    elif kind == "arrow":
        import datasets

        try:
            ds = datasets.load_from_disk(path)
        except Exception as e:
            raise InputError(f"cannot read a datasets folder: {e}", path=path) from None
        if isinstance(ds, datasets.DatasetDict):
            ds = ds["train"] if "train" in ds else next(iter(ds.values()))
        yield from _read_rows(ds, path)
    else:
        raise InputError(f"unknown file type '{kind}' (expected .jsonl, .json, .parquet or a datasets folder)",
                         path=path)


def read_mapping(path: str, known: set[str], what: str) -> dict[str, Any]:
    """A YAML (or, by extension, JSON) file holding a mapping whose keys are all in `known`."""
    if not os.path.exists(path):
        raise InputError(f"no such {what}", path=path)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        if path.endswith(".json"):
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as e:
        raise InputError(f"cannot parse: {e}".splitlines()[0], path=path) from None
    if not isinstance(data, dict):
        raise InputError(f"expected a mapping with keys among {sorted(known)}", path=path)
    for key in data:
        if key not in known:
            raise InputError(f"unknown key (expected one of {sorted(known)})", path=path, field=key)
    return data



def read_string_fields(cls, path: str, what: str):
    """`cls()` with the fields given in a YAML/JSON file replaced; every value must be a string."""
    from dataclasses import fields, replace

    values = read_mapping(path, {f.name for f in fields(cls)}, what)
    for key, value in values.items():
        if not isinstance(value, str):
            raise InputError("expected a string", path=path, field=key)
    return replace(cls(), **values)

# Field names per solution format: (problem field, solution field).
DEFAULT_FIELDS = {
    "gsm8k": ("question", "answer"),
    "math": ("problem", "solution"),
    "numbered": ("problem", "solution"),
    "regex": ("problem", "solution"),
    "steps": ("problem", "steps"),
}


def load_trajectories(source: Any, fmt: str, *, problem_field: str | None = None,
                      solution_field: str | None = None, answer_field: str | None = None,
                      id_field: str | None = None, system_field: str | None = None,
                      max_chars: int = 50_000, file_type: str | None = None,
                      **split_options: Any) -> Iterator[Trajectory]:
    """Read records from `source` and cut each solution into steps with the `fmt` splitter of `srl.data.steps`.

    Args:
        source: a path or a `datasets.Dataset` (see `read_records`).
        fmt: "gsm8k", "math", "numbered", "regex" or "steps" (the solution field is already a list of steps).
        problem_field / solution_field: field names (defaults per format: `DEFAULT_FIELDS`).
        answer_field: field holding the final answer; if unset, the splitter's answer (`#### n`, `\\boxed{}`).
        id_field: field holding a stable id; if unset, `<file name>-<line or record number>`.
        system_field: optional field with extra context shown before the problem.
        max_chars: a problem, solution or step longer than this is an error (the input is probably broken).
        split_options: passed to the splitter (e.g. `keep_calculator=True`, `unit="paragraph"`, `pattern=...`).
    """
    from srl.data.steps import split, split_list

    if fmt not in DEFAULT_FIELDS:
        raise ValueError(f"unknown format '{fmt}' (expected one of {', '.join(DEFAULT_FIELDS)})")
    default_problem, default_solution = DEFAULT_FIELDS[fmt]
    problem_field = problem_field or default_problem
    solution_field = solution_field or default_solution
    for rec in read_records(source, file_type):
        problem = rec.text(problem_field, max_chars=max_chars)
        if fmt == "steps":
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
                parts = split(text, fmt, **split_options)
            except ValueError as e:
                raise rec.error(str(e), solution_field) from None
        for step in parts.steps:
            if len(step.text) > max_chars:
                raise rec.error(f"a step of {len(step.text):,} characters, over the limit of {max_chars:,}",
                                solution_field)
        answer = parts.final_answer
        if answer_field:
            answer = rec.text(answer_field)
        name = os.path.splitext(os.path.basename(rec.path))[0]
        yield Trajectory(
            id=rec.text(id_field) if id_field else f"{name}-{rec.line}",
            problem=problem,
            steps=parts.steps,
            final_answer=answer,
            source=name,
            system=rec.text(system_field, required=False) if system_field else None,
        )
