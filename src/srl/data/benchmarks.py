"""Reading a math benchmark: each record becomes a `Problem` (id, problem text, gold answer).

Any file `srl.data.trajectories.read_records` reads works (.jsonl, .json, .parquet, a `datasets` folder). The gold
answer is, in order of preference:

1. the `--answer_field` value (default `answer`, when the record has one): a plain answer (`27.0`, `\\frac{14}{3}`),
   or reduced to its `#### n` number (a GSM8K solution) or its last `\\boxed{}`;
2. the last `\\boxed{}` of the `--solution_field` (default `solution`), as in MATH or Minerva.

Known benchmark names (`BENCHMARKS`) stand for the shared data files (`$SRL_DATA_DIR/<name>/test.jsonl`, by
default `../shared/data` next to the repository) with their field names. A name resolves to a split: the test
split for evaluation (`srl eval`), the train split for making training data (`srl data generate`); a benchmark
without that split is refused, naming `--split`. `benchmark_overlap` counts the problems of a training set that
are also in an evaluation benchmark (`warn_benchmark_overlap` says so once).

This module is the data layer's: `srl.evaluation` scores the problems, `srl.teacher` makes training data from
them.

A subset for `--limit N` is a seeded sample (`select_subset`): the same N problems on every run, and the subset
of N is part of the subset of any larger N.
"""

from __future__ import annotations

import functools
import logging
import os
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from srl.data.answers import extract_boxed, extract_gsm8k
from srl.errors import InputError
from srl.io import Record, read_records

logger = logging.getLogger("srl")

GOLD_KINDS = ("plain", "gsm8k", "boxed")
SPLITS = ("test", "train")


@dataclass(frozen=True)
class BenchmarkSpec:
    """A known benchmark: its test file under the data root (what `srl eval` scores), its other splits' files
    (`splits`, e.g. {"train": ...}) and its field names (None: detected)."""

    name: str
    file: str
    problem_field: str
    answer_field: str | None = None
    solution_field: str | None = None
    id_field: str | None = None
    description: str = ""
    splits: dict[str, str] = field(default_factory=dict)

    def split_file(self, split: str) -> str | None:
        """The file of `split` under the data root (None: this benchmark has no such split)."""
        return self.file if split == "test" else self.splits.get(split)


BENCHMARKS: dict[str, BenchmarkSpec] = {spec.name: spec for spec in (
    BenchmarkSpec("gsm8k", "gsm8k/test.jsonl", "question", answer_field="answer",
                  description="GSM8K test (1,319): answer = solution ending in `#### n`; train split 7,473",
                  splits={"train": "gsm8k/train.jsonl"}),
    BenchmarkSpec("math500", "math500/test.jsonl", "problem", answer_field="answer", id_field="unique_id",
                  description="MATH-500 (500): problem, solution, answer"),
    BenchmarkSpec("amc23", "amc23/test.jsonl", "problem", answer_field="answer", id_field="id",
                  description="AMC 2023 (40): problem, numeric answer"),
    BenchmarkSpec("aime24", "aime24/test.jsonl", "problem", answer_field="answer", id_field="id",
                  description="AIME 2024 (30): problem, answer, solution"),
    BenchmarkSpec("minerva_math", "minerva_math/test.jsonl", "problem", solution_field="solution", id_field="idx",
                  description="Minerva math / OCW (272): answer = last \\boxed{} of the solution"),
    BenchmarkSpec("math", "math_test_5000/test.jsonl", "problem", solution_field="solution", id_field="idx",
                  description="MATH test (5,000): answer = last \\boxed{} of the solution"),
)}

DEFAULT_PROBLEM_FIELDS = ("problem", "question")
DEFAULT_ANSWER_FIELD = "answer"
DEFAULT_SOLUTION_FIELD = "solution"
DEFAULT_ID_FIELDS = ("id", "unique_id", "idx")


@dataclass(frozen=True)
class Problem:
    """One benchmark problem. `gold_kind`: where the gold answer came from — `plain` (an answer field),
    `gsm8k` (a `#### n` line) or `boxed` (a `\\boxed{}`)."""

    id: Any
    problem: str
    gold: str
    gold_kind: str
    line: int
    source: str


def data_root() -> str:
    """Where known benchmark names are looked up: `$SRL_DATA_DIR`, else `../shared/data` next to the
    repository holding this package (a source checkout)."""
    env = os.environ.get("SRL_DATA_DIR")
    if env:
        return os.path.abspath(os.path.expanduser(env))
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    return os.path.abspath(os.path.join(repo, "..", "shared", "data"))


def resolve_data(data: str, split: str = "test", *, field: str = "data") -> tuple[str, BenchmarkSpec | None]:
    """(path, spec) for `--data` / `--input`: an existing path (spec None), or a known benchmark name, read from its
    `split` (the test split by default: evaluation). A benchmark without that split is an `InputError` naming
    `--split`; `field` names the option that gave `data`."""
    if os.path.exists(os.path.expanduser(data)):
        return os.path.expanduser(data), None
    spec = BENCHMARKS.get(data.lower())
    if spec is None:
        raise InputError(f"no such file or folder, and not a known benchmark ({', '.join(BENCHMARKS)})",
                         path=data, field=field)
    file = spec.split_file(split)
    if file is None:
        have = ", ".join(s for s in SPLITS if spec.split_file(s))
        raise InputError(f"benchmark '{spec.name}' has no {split} split here (it has: {have}); give a file of "
                         f"{split} problems, or --split {have.split(', ')[0]} to use those knowingly", field=field)
    path = os.path.join(data_root(), file)
    if not os.path.exists(path):
        raise InputError(f"benchmark '{spec.name}': {path} not found (set SRL_DATA_DIR to the folder holding "
                         f"{file})", field=field)
    return path, spec


def normalize_problem(text: str) -> str:
    """A problem's text for matching across files: whitespace runs collapsed (as `--exclude` matches)."""
    return " ".join(str(text).split())


@functools.lru_cache(maxsize=None)
def _benchmark_problems(name: str, root: str) -> frozenset[str]:
    spec = BENCHMARKS[name]
    path = os.path.join(root, spec.file)
    if not os.path.exists(path):
        return frozenset()
    return frozenset(normalize_problem(rec.data[spec.problem_field]) for rec in read_records(path)
                     if isinstance(rec.data.get(spec.problem_field), str))


def benchmark_overlap(problems: Iterable[str]) -> tuple[int, dict[str, int]]:
    """(distinct problems, {benchmark: how many of them are in its test split}) for the benchmarks found under
    `data_root()`; benchmarks without a shared problem are left out.

    >>> benchmark_overlap(["What is 2 + 2?"])
    (1, {})
    """
    distinct = {normalize_problem(p) for p in problems if isinstance(p, str) and p.strip()}
    root = data_root()
    counts = {name: len(distinct & _benchmark_problems(name, root)) for name in BENCHMARKS}
    return len(distinct), {name: n for name, n in counts.items() if n}


_WARNED: set[str] = set()


def warn_benchmark_overlap(problems: Iterable[str], source: str) -> dict[str, int]:
    """Warn, once per `source`, when problems of `source` (a training set) are also evaluation problems: a model
    trained on them would be scored on problems it has seen. Returns the counts (see `benchmark_overlap`)."""
    total, counts = benchmark_overlap(problems)
    if counts and source not in _WARNED:
        _WARNED.add(source)
        found = ", ".join(f"{n} in {name} (test)" for name, n in counts.items())
        logger.warning("%s: %s of its %d problems are also evaluation problems: %s; a model trained on them is "
                       "scored on problems it has seen (`srl data build --exclude <benchmark>` leaves them out)",
                       source, max(counts.values()), total, found)
    return counts


def benchmark_name(data: str, path: str, spec: BenchmarkSpec | None) -> str:
    """A short name for reports: the known name, else the file name (its folder's for `test.jsonl` & co.)."""
    if spec is not None:
        return spec.name
    path = os.path.normpath(path)
    stem = os.path.splitext(os.path.basename(path))[0]
    if stem in ("test", "train", "validation", "valid", "dev", "data") or not stem:
        stem = os.path.basename(os.path.dirname(os.path.abspath(path))) or stem
    return stem


def _as_answer_text(value: Any) -> str | None:
    """A gold value as text: integral floats lose their `.0` (AMC's `27.0` -> `27`)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return value
    return None


def gold_from_value(rec: Record, name: str) -> tuple[str, str]:
    """(gold, kind) from an answer field: plain, or the `#### n` of a GSM8K solution, or its last `\\boxed{}`."""
    value = rec.data.get(name)
    if value is None:
        raise rec.error("missing (use --answer_field / --solution_field if the answer has another name)", name)
    text = _as_answer_text(value)
    if text is None:
        raise rec.error(f"expected a string or a number, got {type(value).__name__}", name)
    if not text.strip():
        raise rec.error("empty", name)
    gsm8k = extract_gsm8k(text)
    if gsm8k is not None:
        return gsm8k, "gsm8k"
    if "\\boxed" in text or "\\fbox" in text:
        boxed = extract_boxed(text)
        if not boxed:
            raise rec.error("its last \\boxed{} is not closed or empty", name)
        return boxed, "boxed"
    return text.strip(), "plain"


def gold_from_solution(rec: Record, name: str) -> tuple[str, str]:
    """(gold, "boxed") from the last `\\boxed{}` of a solution field."""
    text = rec.text(name)
    boxed = extract_boxed(text)
    if not boxed:
        raise rec.error("no \\boxed{} answer in the solution (or it is not closed); give the answer's field with "
                        "--answer_field", name)
    return boxed, "boxed"


def problem_from_record(rec: Record, *, problem_field: str | None = None, answer_field: str | None = None,
                        solution_field: str | None = None, id_field: str | None = None) -> Problem:
    """A `Problem` from one record; fields left None are detected (see the module docstring)."""
    data = rec.data
    if problem_field is None:
        problem_field = next((f for f in DEFAULT_PROBLEM_FIELDS if data.get(f) is not None), DEFAULT_PROBLEM_FIELDS[0])
        if data.get(problem_field) is None:
            raise rec.error(f"no problem: neither '{DEFAULT_PROBLEM_FIELDS[0]}' nor '{DEFAULT_PROBLEM_FIELDS[1]}' "
                            "(use --problem_field)", problem_field)
    problem = rec.text(problem_field)

    if answer_field is not None:
        gold, kind = gold_from_value(rec, answer_field)
    elif solution_field is not None:
        gold, kind = gold_from_solution(rec, solution_field)
    elif data.get(DEFAULT_ANSWER_FIELD) is not None:
        gold, kind = gold_from_value(rec, DEFAULT_ANSWER_FIELD)
    elif data.get(DEFAULT_SOLUTION_FIELD) is not None:
        gold, kind = gold_from_solution(rec, DEFAULT_SOLUTION_FIELD)
    else:
        raise rec.error(f"no gold answer: neither '{DEFAULT_ANSWER_FIELD}' nor a \\boxed{{}} in "
                        f"'{DEFAULT_SOLUTION_FIELD}' (use --answer_field or --solution_field)", DEFAULT_ANSWER_FIELD)

    if id_field is not None:
        if data.get(id_field) is None:
            raise rec.error("missing (use --id_field for another name, or leave it unset)", id_field)
        pid = data[id_field]
    else:
        name = next((f for f in DEFAULT_ID_FIELDS if data.get(f) is not None), None)
        pid = data[name] if name else f"{_stem(rec.path)}-{rec.line}"
    if not isinstance(pid, (str, int)) or isinstance(pid, bool):
        pid = str(pid)
    return Problem(pid, problem, gold, kind, rec.line, rec.path)


def _stem(path: str) -> str:
    return os.path.splitext(os.path.basename(str(path)))[0] or "problem"


def load_problems(path: str, *, problem_field: str | None = None, answer_field: str | None = None,
                  solution_field: str | None = None, id_field: str | None = None,
                  spec: BenchmarkSpec | None = None) -> list[Problem]:
    """Every problem of a benchmark file, checked (an `InputError` names file, line and field). Field names
    given here win over the known benchmark's (`spec`), which win over detection."""
    if spec is not None:
        problem_field = problem_field or spec.problem_field
        if answer_field is None and solution_field is None:
            answer_field, solution_field = spec.answer_field, spec.solution_field
        id_field = id_field or spec.id_field
    problems = [problem_from_record(rec, problem_field=problem_field, answer_field=answer_field,
                                    solution_field=solution_field, id_field=id_field)
                for rec in read_records(path)]
    if not problems:
        raise InputError("no problems in the file", path=path)
    seen: dict[Any, int] = {}
    for p in problems:
        if p.id in seen:
            raise InputError(f"duplicate problem id {p.id!r} (also on {seen[p.id]}); set --id_field to a unique "
                             "field", path=path, line=p.line)
        seen[p.id] = p.line
    return problems


def select_subset(items: list, limit: int | None, seed: int = 0) -> list:
    """`limit` items drawn with `seed`, kept in file order; all of them when `limit` is None or too large.

    The draw is a seeded shuffle of the indices cut at `limit`, so a run is reproducible and the subset for a
    smaller limit is contained in the one for a larger limit (same seed).

    >>> select_subset(list("abcdefgh"), 3, seed=0)
    ['b', 'e', 'f']
    >>> set(select_subset(list("abcdefgh"), 2, seed=0)) <= set(select_subset(list("abcdefgh"), 5, seed=0))
    True
    """
    if limit is None or limit >= len(items):
        return list(items)
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    return [items[i] for i in sorted(order[:limit])]
