"""Scoring one response, and the benchmark metrics.

- `score_response(response, gold)`: the answer extracted from a response (`srl.data.answers.extract_answer`) and
  whether it is equivalent to the gold one (`srl.data.answers.answers_match`, with a time limit).
- `greedy_accuracy(flags)`: the fraction of problems whose greedy answer is right.
- `avg_at_k(samples)`: the mean, over problems, of the fraction of right answers among its k samples (the
  paper's Avg@32: the expected accuracy of one sample).
- `pass_at_k(n, c, k)`: the unbiased estimator of Chen et al. (2021, "Evaluating Large Language Models Trained
  on Code"): the probability that at least one of k answers drawn without replacement from the n generated,
  c of them right, is right: 1 - C(n-c, k) / C(n, k). `mean_pass_at_k` averages it over problems.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from srl.data.answers import extract_answer
from srl.rewards.answers import answers_match


@dataclass(frozen=True)
class Scored:
    """The answer extracted from a response (None: none found) and whether it matches the gold answer."""

    answer: str | None
    correct: bool


def use_number_fallback(number_fallback: str, gold_kind: str) -> bool:
    """Whether the last number of a response counts as its answer: `on`, `off`, or `auto` (GSM8K golds)."""
    if number_fallback == "auto":
        return gold_kind == "gsm8k"
    return number_fallback == "on"


def score_response(response: str, gold: str, *, answer_mode: str = "auto", number_fallback: bool = False,
                   timeout: float | None = 5.0) -> Scored:
    """Extract the answer of `response` by `answer_mode` and check it against `gold`.

    >>> score_response("so the total is \\\\boxed{\\\\frac{1}{2}}.", "0.5")
    Scored(answer='\\\\frac{1}{2}', correct=True)
    >>> score_response("She pays 18 dollars.", "18")
    Scored(answer=None, correct=False)
    >>> score_response("She pays 18 dollars.", "18", number_fallback=True)
    Scored(answer='18', correct=True)
    """
    answer = extract_answer(response or "", answer_mode, last_number_fallback=number_fallback)
    correct = answer is not None and answers_match(answer, gold, timeout=timeout)
    return Scored(answer, bool(correct))


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem with `n` samples of which `c` are right (needs k <= n).

    >>> pass_at_k(4, 1, 1), pass_at_k(4, 1, 2), pass_at_k(4, 0, 4), pass_at_k(4, 3, 2)
    (0.25, 0.5, 0.0, 1.0)
    """
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got n={n}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def mean_pass_at_k(counts: Sequence[tuple[int, int]], k: int) -> float:
    """pass@k averaged over problems, each given as (n samples, c right)."""
    if not counts:
        return 0.0
    return sum(pass_at_k(n, c, k) for n, c in counts) / len(counts)


def avg_at_k(samples: Sequence[Sequence[bool]]) -> float:
    """The mean over problems of each problem's fraction of right samples.

    >>> avg_at_k([[True, False, False, False], [True, True, False, False]])
    0.375
    """
    rows = [s for s in samples if len(s)]
    if not rows:
        return 0.0
    return sum(sum(map(bool, s)) / len(s) for s in rows) / len(rows)


def greedy_accuracy(flags: Sequence[bool]) -> float:
    """The fraction of right greedy answers.

    >>> greedy_accuracy([True, False, True, True])
    0.75
    """
    return sum(map(bool, flags)) / len(flags) if flags else 0.0


def pass_k_values(k: int) -> list[int]:
    """The j of the pass@j reported for k samples: the powers of two below k, and k.

    >>> pass_k_values(1), pass_k_values(8), pass_k_values(12)
    ([1], [1, 2, 4, 8], [1, 2, 4, 8, 12])
    """
    values, j = [], 1
    while j < k:
        values.append(j)
        j *= 2
    return values + [k] if k >= 1 else []
