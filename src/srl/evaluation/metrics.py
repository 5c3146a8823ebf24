"""Scoring one response, and the benchmark metrics.

- `score_response(response, gold)`: the answer extracted from a response (`srl.data.answers.extract_answer`) and
  whether it is equivalent to the gold one (`srl.data.answers.answers_match`, with a time limit).
- `greedy_accuracy(flags)`: the fraction of problems whose greedy answer is right.
- `avg_at_k(samples)`: the mean, over problems, of the fraction of right answers among its k samples (the
  paper's Avg@32: the expected accuracy of one sample).
- `pass_at_k(n, c, k)`: the unbiased estimator of Chen et al. (2021, "Evaluating Large Language Models Trained
  on Code"): the probability that at least one of k answers drawn without replacement from the n generated,
  c of them right, is right: 1 - C(n-c, k) / C(n, k). `mean_pass_at_k` averages it over problems.
- Comparing methods on the same items: `wilson_interval` (a proportion), `paired_exact_test` (McNemar's exact
  test of two methods' right/wrong flags on the same problems), `mean_interval` and `paired_mean_difference`
  (means such as the step reward); across seeds: `t_interval` (a mean over a few runs, Student's t).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from srl.data.answers import find_answer, use_number_fallback
from srl.rewards.answers import answers_match


@dataclass(frozen=True)
class Scored:
    """The answer extracted from a response (None: none found), whether it matches the gold answer, and how it was
    found (`srl.data.answers.find_answer`: "boxed", "gsm8k", "last_number"; None: no answer)."""

    answer: str | None
    correct: bool
    found_by: str | None = None


def score_response(response: str, gold: str, *, answer_mode: str = "auto", number_fallback: bool = False,
                   timeout: float | None = 5.0) -> Scored:
    """Extract the answer of `response` by `answer_mode` and check it against `gold`.

    >>> score_response("so the total is \\\\boxed{\\\\frac{1}{2}}.", "0.5")
    Scored(answer='\\\\frac{1}{2}', correct=True, found_by='boxed')
    >>> score_response("She pays 18 dollars.", "18")
    Scored(answer=None, correct=False, found_by=None)
    >>> score_response("She pays 18 dollars.", "18", number_fallback=True)
    Scored(answer='18', correct=True, found_by='last_number')
    """
    answer, found_by = find_answer(response or "", answer_mode, last_number_fallback=number_fallback)
    correct = answer is not None and answers_match(answer, gold, timeout=timeout)
    return Scored(answer, bool(correct), found_by)


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


# --- comparing methods: intervals and paired tests ---------------------------------------------------------------
def wilson_interval(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval (95% for z = 1.96) of a proportion `correct / n`; (0, 1) when n = 0.

    >>> [round(x, 3) for x in wilson_interval(20, 100)]
    [0.133, 0.289]
    """
    if n <= 0:
        return 0.0, 1.0
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def paired_exact_test(a: Sequence[bool], b: Sequence[bool]) -> dict:
    """McNemar's exact test of two methods scored on the same problems: only the problems where they disagree
    count (`a_only`: right for a only; `b_only`: right for b only); the two-sided p-value of a binomial(n, 1/2)
    as extreme as what was seen. 1.0 when they never disagree.

    >>> paired_exact_test([True] * 10 + [False] * 10, [False] * 10 + [False] * 10)
    {'n': 20, 'a_only': 10, 'b_only': 0, 'difference': 0.5, 'p_value': 0.001953125}
    """
    if len(a) != len(b):
        raise ValueError(f"paired test of {len(a)} against {len(b)} problems")
    a_only = sum(1 for x, y in zip(a, b) if x and not y)
    b_only = sum(1 for x, y in zip(a, b) if y and not x)
    disagree = a_only + b_only
    tail = sum(math.comb(disagree, i) for i in range(min(a_only, b_only) + 1)) / 2 ** disagree
    return {"n": len(a), "a_only": a_only, "b_only": b_only,
            "difference": (a_only - b_only) / len(a) if len(a) else 0.0, "p_value": min(1.0, 2 * tail)}


def _mean_half_width(values: Sequence[float], quantile: float) -> tuple[float, float]:
    """(mean, quantile x its standard error); nan for what fewer values cannot give."""
    n = len(values)
    if n == 0:
        return float("nan"), float("nan")
    mean = sum(values) / n
    if n < 2:
        return mean, float("nan")
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, quantile * sd / math.sqrt(n)


def mean_interval(values: Sequence[float], z: float = 1.96) -> tuple[float, float]:
    """(mean, half-width of its normal-approximation interval, 95% for z = 1.96): for means over hundreds of
    items (step rewards). The half-width is nan with fewer than 2 values.

    >>> mean_interval([0.0, 1.0, 0.0, 1.0])
    (0.5, 0.565...)
    """
    return _mean_half_width(values, z)


def paired_mean_difference(a: Sequence[float], b: Sequence[float], z: float = 1.96) -> dict:
    """The mean of the paired differences a - b (e.g. the step reward of two models on the same instances),
    its 95% interval (normal approximation) and the two-sided p-value of "no difference".

    >>> paired_mean_difference([0.5, 0.6, 0.7, 0.8], [0.4, 0.5, 0.6, 0.7])["difference"]
    0.1
    """
    if len(a) != len(b):
        raise ValueError(f"paired difference of {len(a)} against {len(b)} items")
    diffs = [x - y for x, y in zip(a, b)]
    mean, half = mean_interval(diffs, z)
    se = half / z if half == half else float("nan")
    if se == 0:
        p = 1.0 if mean == 0 else 0.0
    else:
        p = math.erfc(abs(mean) / se / math.sqrt(2)) if se == se else float("nan")
    return {"n": len(diffs), "difference": round(mean, 12), "ci95": [mean - half, mean + half], "p_value": p}


# Two-sided 95% quantiles of Student's t, by degrees of freedom (1-30); above 30 the normal 1.96 is within 4%.
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
       11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093,
       20: 2.086, 21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064, 25: 2.060, 26: 2.056, 27: 2.052, 28: 2.048,
       29: 2.045, 30: 2.042}


def t_interval(values: Sequence[float]) -> tuple[float, float]:
    """(mean, half-width of its 95% Student-t interval) of a few values, e.g. one accuracy per seed; the
    half-width is nan with fewer than 2 values.

    >>> [round(x, 4) for x in t_interval([0.2, 0.3, 0.4])]
    [0.3, 0.2484]
    """
    return _mean_half_width(values, T95.get(len(values) - 1, 1.96))
