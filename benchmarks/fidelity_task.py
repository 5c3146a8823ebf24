"""The fidelity experiment's task (issue 21): staged arithmetic whose expert folds several operations into one line.

A problem is a start value and numbered stages of 1-3 operations each:

    Start with 17. Step 1: add 5, double it, subtract 3. Step 2: add 4, double it. What is the result?

The *expert* (the limited data SFT and SRL learn from) writes one line per stage with the stage's operations
folded into one expression, computed "in its head", then the answer line:

    (17+5)*2-3 = 41 | (41+4)*2 = 90 | The final answer is \\boxed{90}.

The *student* (the base model, pre-trained on easier problems) writes the same actions, but works each stage out
one operation at a time in a `<think>` scratchpad first (`student_steps`, `student_solution`):

    <think>
    Step 1: add 5, double it, subtract 3. 17+5=22, 22*2=44, 44-3=41.
    </think>
    (17+5)*2-3 = 41

so the expert's lines are not the student's text (P3: the expert skips the scratchpad the student relies on),
and a whole problem of n stages is right only if all n folded steps are (P2: accuracy ~ p^n).

The student has a *habit* (`slips`, `SLIP_RATE`): in its pre-training solutions, a subtraction from a value >= 20
that needs a borrow is done without it (`23-5=22`, the smaller units digit taken from the larger) 90% of the
time, right the other 10%, and the work goes on from the slipped value. So the pre-trained base can do most
steps, has the right step in its distribution where it slips, but does not prefer it: its greedy step is wrong
in the stages where a slip can strike (26% of pretrain stages, 36% of test stages, 42% of hard ones), and a
whole problem comes out right only if none of its stages can slip (7% of test problems, 0.3% of hard ones) --
the regime the paper describes for Qwen2.5-7B (most single steps right, hard problems failed), made explicit.

Splits (`levels`, `LEVELS`, `make_splits`), disjoint by problem text: `pretrain` 3-6 stages of 1-3 operations
(the student's easier problems: fewer stages on average, 2 operations per stage against 2.5, and
single-operation stages); `train` (the expert data, <= 1,000 problems), `validation`, `test`: 6 stages of 2-3
operations (every expert line folds >= 2); `hard`: 7-9 stages, and more operations in total than any problem
of the other splits. `levels(pretrain_stages, test_stages)` draws other lengths. Values stay in [0, max_value]
before a slip; operands 1-9.

Records are `--data_format steps` rows (`problem`, `steps`, `answer`, plus `id`, `num_stages`, `num_ops`,
`stages`: the operations per stage, which `check_record` re-derives the expert lines from).
"""

from __future__ import annotations

import json
import os
import random
import re
import sys
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mechanism_task  # noqa: E402

ANSWER_LINE = "The final answer is \\boxed{{{}}}."  # also what `srl train --stage sft` ends a whole solution with
DONE_THOUGHT = "All {} steps are done; the last result is {}."


@dataclass(frozen=True)
class Level:
    """Problems of `stages` (min, max) stages, each of `ops` (min, max) operations; values in [0, max_value];
    `min_total_ops`: draw again until a problem has at least this many operations in all."""

    stages: tuple[int, int]
    ops: tuple[int, int]
    max_value: int = 30
    min_total_ops: int = 0


def levels(pretrain_stages: tuple[int, int] = (3, 6), test_stages: tuple[int, int] = (6, 6)) -> dict[str, Level]:
    """The splits' levels: pretrain problems of `pretrain_stages` stages of 1-3 operations; train, validation and
    test of `test_stages` stages of 2-3; hard of 1-3 stages more than test, with more operations in all than any
    problem of the other splits can have."""
    most = max(pretrain_stages[1], test_stages[1])
    experiment = Level(tuple(test_stages), (2, 3))
    return {"pretrain": Level(tuple(pretrain_stages), (1, 3)), "train": experiment, "validation": experiment,
            "test": experiment, "hard": Level((test_stages[1] + 1, test_stages[1] + 3), (2, 3),
                                              min_total_ops=3 * most + 1)}


LEVELS = levels()
SLIP_RATE = 0.9  # the student's habit: how often its pre-training solutions slip where they can (`slips`)
SIZES = {"pretrain": 30000, "train": 1000, "validation": 100, "test": 300, "hard": 300}

# (instruction, operator, operand) of an operation; "double it" is *2.
Op = tuple[str, str, int]


def _operation(value: int, max_value: int, rng: random.Random) -> Op:
    """A random operation that keeps the value in [0, max_value]."""
    d = rng.randint(1, 9)
    choices = []
    if value + d <= max_value:
        choices.append((f"add {d}", "+", d))
    if value - d >= 0:
        choices.append((f"subtract {d}", "-", d))
    if 0 < 2 * value <= max_value:
        choices.append(("double it", "*", 2))
    return rng.choice(choices)  # never empty while max_value >= 18: value+d or value-d is in range


def apply(value: int, op: Op) -> int:
    _, sign, d = op
    return value + d if sign == "+" else value - d if sign == "-" else value * d


def fold(value: int, ops: list[Op]) -> str:
    """The expert's folded expression: `(17+5)*2-3` (parentheses only where precedence needs them)."""
    expr = str(value)
    for _, sign, d in ops:
        if sign == "*" and ("+" in expr or "-" in expr):
            expr = f"({expr})"
        expr += f"{sign}{d}"
    return expr


def expert_step(value: int, ops: list[Op]) -> tuple[str, int]:
    """(the expert's line for one stage, the value after it)."""
    end = value
    for op in ops:
        end = apply(end, op)
    return f"{fold(value, ops)} = {end}", end


def label(stage: int) -> str:
    """A stage's label: its number. (Letters, tried so that a label is never an operand's token as in `Step 2:
    add 2`, made the base copy its stages far worse: docs/results.md, iteration 4.)"""
    return str(stage)


def op_text(sign: str, d: int) -> str:
    """The problem's words for an operation: `add 5`, `subtract 3`, `double it`."""
    return f"add {d}" if sign == "+" else f"subtract {d}" if sign == "-" else "double it"


def slips(value: int, op: Op) -> bool:
    """Whether the student's habit (`SLIP_RATE`) can strike this operation: a subtraction from a value >= 20 that
    needs a borrow (`23-5`)."""
    return op[1] == "-" and value >= 20 and value % 10 < op[2]


def slipped(value: int, d: int) -> int:
    """The slip: the smaller units digit taken from the larger, no borrow (`23-5` -> 22, `21-9` -> 28)."""
    return value // 10 * 10 + d - value % 10


def work_out(value: int, ops: list[Op], rng: random.Random | None = None, slip_rate: float = 0.0) -> list[int]:
    """The values after each operation as the student computes them: right, except that each operation that
    `slips` is `slipped` with probability `slip_rate` (drawn from `rng`) and the work goes on from there."""
    values = []
    for op in ops:
        value = slipped(value, op[2]) if slip_rate and slips(value, op) and rng.random() < slip_rate else apply(value, op)
        values.append(value)
    return values


def scratchpad(stage: int, value: int, ops: list[Op], values: list[int] | None = None) -> str:
    """The student's unfolded working of one stage: the stage's words copied from the problem, then one
    operation at a time: `Step 1: add 5, double it, subtract 3. 17+5=22, 22*2=44, 44-3=41.` (`values`: the
    results it writes, default the right ones)."""
    values = values or work_out(value, ops)
    parts = [f"{a}{op[1]}{op[2]}={b}" for a, op, b in zip([value] + values, ops, values)]
    return f"Step {label(stage)}: " + ", ".join(op_text(s, d) for _, s, d in ops) + ". " + ", ".join(parts) + "."


def make_problem(level: Level, rng: random.Random) -> dict:
    """One problem as a `--data_format steps` record."""
    while True:
        start = value = rng.randint(1, level.max_value // 2)
        stages = []
        for _ in range(rng.randint(*level.stages)):
            ops = []
            for _ in range(rng.randint(*level.ops)):
                ops.append(_operation(value, level.max_value, rng))
                value = apply(value, ops[-1])
            stages.append(ops)
        if sum(map(len, stages)) >= level.min_total_ops:
            break
    text = f"Start with {start}. " + " ".join(
        f"Step {label(i)}: " + ", ".join(op_text(s, d) for _, s, d in ops) + "." for i, ops in enumerate(stages, 1))
    lines, value = [], start
    for ops in stages:
        line, value = expert_step(value, ops)
        lines.append(line)
    return {"problem": text + " What is the result?", "steps": lines + [ANSWER_LINE.format(value)],
            "answer": str(value), "start": start, "stages": [[[s, d] for _, s, d in ops] for ops in stages],
            "num_stages": len(stages), "num_ops": sum(map(len, stages))}


def _ops(record: dict) -> list[list[Op]]:
    return [[("", s, d) for s, d in ops] for ops in record["stages"]]


def _slip_rng(record: dict, kind: str, stage: int) -> random.Random:
    """The draw of the student's slips in one stage of one record's step instance (`kind="step"`) or whole
    solution (`"whole"`): fixed by the record's id, so a row's target is the same however it is built."""
    return random.Random(f"{record.get('id', record['problem'])}/{kind}/{stage}")


def _student_stage(record: dict, kind: str, stage: int, value: int, ops: list[Op], slip_rate: float) -> tuple[str, int]:
    """(think + action of one stage, the value the student ends it with)."""
    values = work_out(value, ops, _slip_rng(record, kind, stage), slip_rate)
    line = f"{fold(value, ops)} = {values[-1]}"
    return f"<think>\n{scratchpad(stage, value, ops, values)}\n</think>\n{line}", values[-1]


def student_steps(record: dict, slip_rate: float = 0.0) -> list[str]:
    """The student's response to each step instance (think + action), the answer step last. Each stage starts
    from the expert's value (the instance shows the expert's earlier lines); with `slip_rate` the student's
    habit may strike there (`work_out`), and the answer step states the expert's last value."""
    out, value = [], record["start"]
    for i, ops in enumerate(_ops(record), 1):
        response, _ = _student_stage(record, "step", i, value, ops, slip_rate)
        out.append(response)
        value = expert_step(value, ops)[1]
    done = DONE_THOUGHT.format(len(record["stages"]), value)
    return out + [f"<think>\n{done}\n</think>\n{ANSWER_LINE.format(value)}"]


def student_solution(record: dict, slip_rate: float = 0.0) -> str:
    """The student's whole solution under the evaluation prompt: each stage's scratchpad, then its folded line,
    each stage from the value the student's previous line ended with (a slip carries to the answer)."""
    out, value = [], record["start"]
    for i, ops in enumerate(_ops(record), 1):
        response, value = _student_stage(record, "whole", i, value, ops, slip_rate)
        out.append(response)
    return "\n".join(out) + "\n" + ANSWER_LINE.format(value)


def solve(problem: str) -> int:
    """The answer computed from the problem text alone."""
    value = int(re.match(r"Start with (\d+)\.", problem).group(1))
    for word, d in re.findall(r"(add|subtract|double) (it|\d+)", problem):
        value = value + int(d) if word == "add" else value - int(d) if word == "subtract" else 2 * value
    return value


def check_record(record: dict) -> None:
    """Raise AssertionError unless the record is right: every expert line is `<folded expression> = <value>`
    where the expression starts from the previous line's value, applies exactly its stage's operations (as the
    problem text states them) and evaluates to the value; the answer line and `answer` hold the last value."""
    stated = re.findall(r"Step (\d+): ([^.]*)\.", record["problem"])
    assert [n for n, _ in stated] == [label(i) for i in range(1, len(record["stages"]) + 1)], "stages mislabelled"
    value = record["start"]
    for (_, text), ops, line in zip(stated, record["stages"], record["steps"]):
        expr, result = line.split(" = ")
        words = [("+" if w == "add" else "-" if w == "subtract" else "*", 2 if d == "it" else int(d))
                 for w, d in re.findall(r"(add|subtract|double) (it|\d+)", text)]
        assert words == [tuple(o) for o in ops], f"stage {text!r} is not {ops}"
        assert len(ops) >= 1 and re.fullmatch(r"[\d+\-*()]+", expr), line
        assert expr.lstrip("(").startswith(str(value)) and re.findall(r"[+\-*]", expr) == [s for s, _ in ops]
        assert eval(expr) == int(result), line  # noqa: S307 (digits, + - * and parentheses only)
        value = int(result)
        assert 0 <= value, line
    assert len(record["steps"]) == len(record["stages"]) + 1
    assert record["steps"][-1] == ANSWER_LINE.format(value) and record["answer"] == str(value)
    assert solve(record["problem"]) == value


def make_splits(sizes: dict[str, int] | None = None, levels: dict[str, Level] | None = None,
                seed: int = 0) -> dict[str, list[dict]]:
    """Problems per split, disjoint by problem text; each record gets the id `<split>-<i>` (the controlled
    experiment's splitter, `mechanism_task.make_splits`, drawing this task's problems)."""
    return mechanism_task.make_splits(sizes or SIZES, levels or LEVELS, seed, make=make_problem)


def write_splits(folder: str, sizes: dict[str, int] | None = None, seed: int = 0,
                 levels: dict[str, Level] | None = None) -> dict[str, str]:
    """`<folder>/<split>.jsonl` for every split (kept if all exist); returns the paths."""
    from srl.io import write_jsonl

    sizes = sizes or SIZES
    paths = {s: os.path.join(folder, f"{s}.jsonl") for s in sizes}
    if not all(os.path.exists(p) for p in paths.values()):
        for split, rows in make_splits(sizes, levels, seed=seed).items():
            write_jsonl(paths[split], rows)
    return paths


def read_jsonl(path: str) -> list[dict]:
    """The records of a split file (`srl.io.read_records`)."""
    from srl.io import read_records

    return [r.data for r in read_records(path)]
