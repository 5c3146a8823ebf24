"""The controlled experiment's task: chained arithmetic problems with exact step-wise expert solutions.

A problem is a start value and a chain of operations; the expert writes one line per operation and then the
answer:

    problem: Start with 17. Add 5. Subtract 3. Double it. What is the result?
    steps:   17+5=22 | 22-3=19 | 19*2=38 | The answer is \\boxed{38}.

Difficulty knobs: the number of operations (`steps`), the size of the numbers (`max_value`, `max_operand`) and
distractor sentences that mention numbers the solution must ignore (`distractors`).

Splits are by problem: every problem text appears in at most one split (`make_splits`), and the harder split
has more operations than any problem of the other splits.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

DISTRACTORS = ("Ignore the number {n}.", "A friend says {n}, but that is not used.", "The page number is {n}.")


@dataclass(frozen=True)
class Level:
    """One difficulty level: operations per problem in [min_steps, max_steps], values kept in [0, max_value],
    additive operands in [1, max_operand], and `distractors` irrelevant sentences per problem."""

    min_steps: int
    max_steps: int
    max_value: int = 60
    max_operand: int = 9
    distractors: int = 0


def _operation(value: int, level: Level, rng: random.Random) -> tuple[str, str, int]:
    """(instruction, expert line, new value) for one random operation that keeps the value in range."""
    choices = []
    d = rng.randint(1, level.max_operand)
    if value + d <= level.max_value:
        choices.append((f"Add {d}.", f"{value}+{d}={value + d}", value + d))
    if value - d >= 0:
        choices.append((f"Subtract {d}.", f"{value}-{d}={value - d}", value - d))
    if 2 * value <= level.max_value and value > 0:
        choices.append(("Double it.", f"{value}*2={2 * value}", 2 * value))
    return rng.choice(choices)  # never empty: value+d or value-d is always in range when max_value > max_operand


def make_problem(level: Level, rng: random.Random) -> dict:
    """One problem as a `--data_format steps` record: problem, steps (expert lines, the last one holds the
    boxed answer), answer."""
    value = rng.randint(1, level.max_value // 2)
    sentences, lines = [f"Start with {value}."], []
    for _ in range(rng.randint(level.min_steps, level.max_steps)):
        instruction, line, value = _operation(value, level, rng)
        sentences.append(instruction)
        lines.append(line)
    for _ in range(level.distractors):
        sentences.insert(rng.randint(1, len(sentences)), rng.choice(DISTRACTORS).format(n=rng.randint(1, 99)))
    return {"problem": " ".join(sentences) + " What is the result?",
            "steps": lines + [f"The answer is \\boxed{{{value}}}."], "answer": str(value), "num_ops": len(lines)}


def solve(problem: str) -> int:
    """The exact answer of a problem text, computed from the text alone (distractors are ignored)."""
    value = None
    for sentence in problem.replace("?", ".").split(". "):
        words = sentence.strip(" .").split()
        if not words:
            continue
        if words[0] == "Start":
            value = int(words[2])
        elif words[0] == "Add":
            value += int(words[1])
        elif words[0] == "Subtract":
            value -= int(words[1])
        elif words[:2] == ["Double", "it"]:
            value *= 2
    if value is None:
        raise ValueError(f"no start value in {problem!r}")
    return value


def make_splits(sizes: dict[str, int], levels: dict, seed: int = 0, make=None) -> dict[str, list[dict]]:
    """Problems per split, disjoint by problem text (a text drawn twice is drawn again). Each record gets a
    unique `id` `<split>-<i>`. `make(level, rng)` draws one problem (default: `make_problem`)."""
    make = make or make_problem
    rng = random.Random(seed)
    seen: set[str] = set()
    out: dict[str, list[dict]] = {}
    for split, n in sizes.items():
        rows, attempts = [], 0
        while len(rows) < n:
            attempts += 1
            if attempts > 100 * n + 1000:
                raise ValueError(f"split '{split}': cannot draw {n} distinct problems at this level")
            p = make(levels[split], rng)
            if p["problem"] in seen:
                continue
            seen.add(p["problem"])
            rows.append({"id": f"{split}-{len(rows)}", **p})
        out[split] = rows
    return out
