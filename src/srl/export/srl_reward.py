"""SRL's rewards for verl: `compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs)`.

`srl data export --to verl` copies this file into its output folder as `srl_reward.py`; the run script points
verl at it (`reward.custom_reward_function.path=.../srl_reward.py`, `...name=compute_score`). verl calls it
once per response with the row's `data_source`, the decoded response, `reward_model.ground_truth` and the
row's `extra_info`, which carries every reward option `srl train` would use (think mode, similarity options,
agent-action options, answer mode and number fallback), so a row scores exactly as it does in `srl train`.

It scores with the `srl` package itself rather than a copy of it, so the values are those of `srl.rewards` by
construction. `srl.rewards` needs only the standard library and math-verify (no torch, transformers or TRL),
so install srl into verl's environment, from a clone of its repository (it is not on PyPI), without its
dependencies, which would fight verl's pins:

    pip install --no-deps ./supervised-rl  &&  pip install 'math-verify[antlr4_9_3]>=0.7' cydifflib

(cydifflib, or srl's compiled `_difflib`, only makes difflib faster; the values are the same without them.)

Returned: a dict, so verl logs its parts (`reward_extra_info`):

- `srl_step` rows (the SRL step reward): `score` = `srl_reward` (similarity of the action to the expert step
  in [0, 1], -1 for a broken format), `similarity` (the same, 0.0 when the format is broken) and `format_ok`
  (1.0 or 0.0);
- `srl_outcome` rows (the RLVR reward): `score` = `outcome_reward` (1.0 if the final answer is right, else
  0.0) and `acc` (the same; DAPO's `algorithm.filter_groups.metric=acc`).
"""

from __future__ import annotations

from typing import Any

try:
    from srl.rewards import FORMAT_PENALTY
    from srl.rewards.stage import score
except ImportError as error:  # pragma: no cover - the message is the point
    raise ImportError(
        "srl_reward.py scores with the `srl` package, which is not importable in this environment: install it "
        "from a clone of its repository without its dependencies (`pip install --no-deps ./supervised-rl` and "
        "`pip install 'math-verify[antlr4_9_3]>=0.7'`)") from error

STEP, OUTCOME = "srl_step", "srl_outcome"


def step_score(solution_str: str, ground_truth: str, info: dict[str, Any]) -> dict[str, float]:
    """The SRL step reward of one response, with the row's reward options (`srl.rewards.stage.score`, as
    `srl train --stage srl`; verl never pre-fills `<think>`)."""
    value = score("srl", solution_str, ground_truth, {**info, "think_prefill": False})
    ok = value != FORMAT_PENALTY  # a similarity is never negative
    return {"score": _rounded(value, info), "similarity": value if ok else 0.0, "format_ok": float(ok)}


def outcome_score(solution_str: str, ground_truth: str, info: dict[str, Any]) -> dict[str, float]:
    """The RLVR outcome reward of one response (`srl.rewards.stage.score`, as `srl train --stage rlvr`)."""
    value = score("rlvr", solution_str, ground_truth, info, gold_kind=info.get("gold_kind"))
    return {"score": value, "acc": value}


def _rounded(score: float, info: dict[str, Any]) -> float:
    """`score_decimals` (set at export): round the score so that verl's exact-zero group filter treats rewards
    closer than the rounding as equal. None (the default): the exact value of `srl.rewards`."""
    decimals = info.get("score_decimals")
    return score if decimals is None or decimals < 0 else round(score, int(decimals))


SCORERS = {STEP: step_score, OUTCOME: outcome_score}


def compute_score(data_source: str, solution_str: str, ground_truth: str, extra_info: dict | None = None,
                  **kwargs: Any) -> dict[str, float]:
    """verl's custom reward function: the row's SRL reward of `solution_str` and its parts (see above).

    >>> compute_score("srl_step", "<think>half of 48</think> Natalia sold 48/2 = 24 clips in May.",
    ...               "Natalia sold 48/2 = 24 clips in May.", {"think": "required"})
    {'score': 1.0, 'similarity': 1.0, 'format_ok': 1.0}
    >>> compute_score("srl_outcome", "So she sold \\\\boxed{72} clips.", "72")
    {'score': 1.0, 'acc': 1.0}
    """
    scorer = SCORERS.get(data_source)
    if scorer is None:
        raise ValueError(f"srl_reward.py scores data_source {' or '.join(SCORERS)}, not {data_source!r}")
    return scorer(solution_str, ground_truth, dict(extra_info or {}))
