"""Expert trajectories: the data model and the loaders that read them from files or `datasets`.

A trajectory is one expert solution of one problem, already cut into ordered steps (see `srl.steps` for the
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
                data = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(f"invalid JSON: {e.msg} (column {e.colno})", path=path, line=line_no) from None
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
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"invalid JSON: {e.msg} (column {e.colno})", path=path, line=e.lineno) from None
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
