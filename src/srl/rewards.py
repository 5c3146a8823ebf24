"""Rewards: the SRL step reward (similarity of the action to the expert's step, -1 for a broken format) and
the outcome reward of the RLVR stage (is the final answer right?).

Each reward exists twice: as a plain function of one completion (`srl_reward`, `outcome_reward`) and as a TRL
`GRPOTrainer` reward function taking the batch of completions plus dataset columns as keyword arguments
(`step_similarity_reward`, `answer_reward`). Both never raise and bound their work on any model output.

>>> srl_reward("<think>half of 48</think> Natalia sold 48/2 = 24 clips in May.",
...            "Natalia sold 48/2 = 24 clips in May.")
1.0
>>> srl_reward("Natalia sold 24 clips.", "Natalia sold 48/2 = 24 clips in May.")
-1.0
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from srl.answers import answers_match, extract_answer
from srl.prompts import OutputFormat, ThinkMode, completion_text, parse_response
from srl.similarity import similarity

FORMAT_PENALTY = -1.0

__all__ = ["similarity", "srl_reward", "outcome_reward", "step_similarity_reward", "answer_reward",
           "get_step_reward", "get_answer_reward", "REWARDS", "FORMAT_PENALTY"]


def srl_reward(completion: str | list, expert_step: str, *, output_format: OutputFormat | None = None,
               think: ThinkMode | None = None, method: str = "difflib", autojunk: bool = True,
               normalize_whitespace: bool = False) -> float:
    """The paper's step reward: `similarity(action, expert_step)` in [0, 1] when the response follows the
    format, else -1.

    Args:
        completion: the model's response (text, or a chat completion).
        expert_step: the expert's step that the action is compared with.
        output_format: the format to check (default: the paper's, `think="required"`).
        think: shortcut overriding `output_format.think`.
        method, autojunk, normalize_whitespace: passed to `srl.similarity.similarity`.
    """
    fmt = output_format or OutputFormat()
    if think is not None and think != fmt.think:
        fmt = OutputFormat(**{**fmt.__dict__, "think": think})
    parsed = parse_response(completion_text(completion), fmt)
    if not parsed.ok:
        return FORMAT_PENALTY
    return similarity(parsed.action, expert_step if isinstance(expert_step, str) else "", method=method,
                      autojunk=autojunk, normalize_whitespace=normalize_whitespace)


def outcome_reward(completion: str | list, final_answer: str, *, mode: str = "auto", timeout: float = 5.0) -> float:
    """1.0 if the answer in the completion (`\\boxed{}` or GSM8K `#### n`) is equivalent to `final_answer`
    (checked with math-verify within `timeout` seconds), else 0.0."""
    if final_answer is None:
        return 0.0
    predicted = extract_answer(completion_text(completion), mode=mode)
    if predicted is None:
        return 0.0
    return 1.0 if answers_match(predicted, str(final_answer), timeout=timeout) else 0.0


def get_step_reward(output_format: OutputFormat | None = None, **similarity_options: Any) -> Callable:
    """A TRL reward function `f(completions, expert_step, **kwargs) -> list[float]` for the given format and
    similarity options. Its `__name__` is what TRL logs (`rewards/step_similarity/mean`)."""

    def step_similarity(completions: list, expert_step: list[str], **kwargs: Any) -> list[float]:
        return [srl_reward(c, e, output_format=output_format, **similarity_options)
                for c, e in zip(completions, expert_step)]

    return step_similarity


def get_answer_reward(mode: str = "auto", timeout: float = 5.0) -> Callable:
    """A TRL reward function `f(completions, final_answer, **kwargs) -> list[float]` (the RLVR reward)."""

    def answer(completions: list, final_answer: list[str], **kwargs: Any) -> list[float]:
        return [outcome_reward(c, a, mode=mode, timeout=timeout) for c, a in zip(completions, final_answer)]

    return answer


# The defaults, ready to pass as `GRPOTrainer(reward_funcs=[step_similarity_reward])`.
step_similarity_reward = get_step_reward()
answer_reward = get_answer_reward()

# CLI names -> reward factories.
REWARDS: dict[str, Callable[..., Callable]] = {"step_similarity": get_step_reward, "answer": get_answer_reward}
