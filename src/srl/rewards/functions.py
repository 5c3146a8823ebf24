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

from srl.data.answers import extract_answer, use_number_fallback
from srl.rewards.answers import answers_match
from srl.data.prompts import ThinkMode
from srl.rewards.format import OutputFormat, completion_text, parse_response
from srl.rewards.text_similarity import similarity

FORMAT_PENALTY = -1.0

__all__ = ["similarity", "srl_reward", "outcome_reward", "step_similarity_reward", "answer_reward",
           "get_step_reward", "get_answer_reward", "action_similarity", "action_reward", "get_action_reward",
           "REWARDS", "FORMAT_PENALTY"]


def _action(completion, output_format: OutputFormat | None, think: ThinkMode | None) -> str | None:
    """The action of a response under the format (with `think` overriding its mode), None if broken."""
    fmt = output_format or OutputFormat()
    if think is not None and think != fmt.think:
        fmt = OutputFormat(**{**fmt.__dict__, "think": think})
    return parse_response(completion_text(completion), fmt).action


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
        method, autojunk, normalize_whitespace: passed to `srl.rewards.text_similarity.similarity`.
    """
    try:
        action = _action(completion, output_format, think)
    except Exception:  # an object that cannot even be read as text: not a well-formed response
        return FORMAT_PENALTY
    if action is None:
        return FORMAT_PENALTY
    return similarity(action, expert_step if isinstance(expert_step, str) else "", method=method,
                      autojunk=autojunk, normalize_whitespace=normalize_whitespace)


# A reward call must stay cheap on any model output (issue 12). Answers that could make sympy compute a gigantic
# number are refused up front (< 1 ms: every input of the bad-input campaign); anything else math-verify chews on
# is cut at this many seconds. 0.5 s rejected correct answers (`x^2` = `x^{2}`) on a 2-core machine running 6x
# more CPU work than cores; real checks take ~10-50 ms.
ANSWER_TIMEOUT = 1.0


def outcome_reward(completion: str | list, final_answer: str, *, mode: str = "auto",
                   timeout: float = ANSWER_TIMEOUT, number_fallback: bool = False) -> float:
    """1.0 if the answer in the completion (`\\boxed{}` or GSM8K `#### n`; with `number_fallback`, else its last
    number) is equivalent to `final_answer` (checked with math-verify within `timeout` seconds), else 0.0.
    One call takes at most `timeout` seconds, in any thread, whatever the completion holds (see
    `answers_match(wait_for_checker=False)`)."""
    if final_answer is None:
        return 0.0
    try:
        predicted = extract_answer(completion_text(completion), mode=mode, last_number_fallback=number_fallback)
        final_answer = str(final_answer)
    except Exception:  # unreadable completion or answer: no answer
        return 0.0
    if predicted is None:
        return 0.0
    return 1.0 if answers_match(predicted, final_answer, timeout=timeout, wait_for_checker=False) else 0.0


def action_similarity(predicted: str, expert: str, *, structure: bool = False, shell: bool = False,
                      **similarity_options: Any) -> float:
    """Similarity in [0, 1] of a predicted agent action to the expert's, both in the canonical form of
    `srl.data.agents` (`<function=NAME>` calls, or a plain command). Nothing is ever executed.

    Args:
        structure: compare structure first: the tool names of the calls must match exactly and in order
            (else 0.0), then the arguments are compared (the predicted parameters put in the expert's order,
            so order does not matter; the mean over calls). A call against a plain command scores 0.0; two
            plain commands are compared as text.
        shell: normalise shell whitespace first (`srl.data.agents.normalize_action`: plain commands and `command`
            parameters; quoted strings and indentation are kept).
        similarity_options: `method`, `autojunk`, `normalize_whitespace` of `srl.rewards.text_similarity.similarity`.

    Default (both off): the paper's similarity of the two action texts.

    >>> expert = "<function=bash>\\n<parameter=command>ls  -a</parameter>\\n</function>"
    >>> action_similarity("<function=str_replace_editor>\\n<parameter=command>ls -a</parameter>\\n</function>",
    ...                   expert, structure=True)
    0.0
    >>> action_similarity("<function=bash>\\n<parameter=command>ls -a</parameter>\\n</function>", expert, shell=True)
    1.0
    """
    from srl.data.agents.actions import ToolCall, normalize_action, parse_action

    if not isinstance(predicted, str) or not isinstance(expert, str):
        return 0.0
    if shell:
        predicted, expert = normalize_action(predicted), normalize_action(expert)
    if not structure:
        return similarity(predicted, expert, **similarity_options)
    got, want = parse_action(predicted), parse_action(expert)
    if got is None and want is None:
        return similarity(predicted.strip(), expert.strip(), **similarity_options)
    if got is None or want is None or [c.name for c in got] != [c.name for c in want]:
        return 0.0
    scores = []
    for g, w in zip(got, want):
        g_args = dict(g.arguments)
        ordered = [(k, g_args.pop(k)) for k, _ in w.arguments if k in g_args] + list(g_args.items())
        scores.append(similarity(ToolCall(g.name, tuple(ordered)).text, w.text, **similarity_options))
    return sum(scores) / len(scores)


def action_reward(completion: str | list, expert_action: str, *, output_format: OutputFormat | None = None,
                  think: ThinkMode | None = None, structure: bool = False, shell: bool = False,
                  **similarity_options: Any) -> float:
    """The SRL reward of an agent action: `action_similarity(action, expert_action, ...)` in [0, 1] when the
    response follows the format (`<think>...</think>` then the action, as `srl_reward`), else -1."""
    try:
        action = _action(completion, output_format, think)
    except Exception:
        return FORMAT_PENALTY
    if action is None:
        return FORMAT_PENALTY
    return action_similarity(action, expert_action, structure=structure, shell=shell, **similarity_options)


def get_action_reward(output_format: OutputFormat | None = None, *, structure: bool = False, shell: bool = False,
                      **similarity_options: Any) -> Callable:
    """A TRL reward function `f(completions, expert_step, **kwargs) -> list[float]` for agent instances (the
    target column is `expert_step`, as for math), named `action_similarity`. With `structure=False,
    shell=False` it gives the values of `get_step_reward(...)`: the paper's similarity on the action text."""

    def reward(completions: list, expert_step: list[str], **kwargs: Any) -> list[float]:
        return [action_reward(c, e, output_format=output_format, structure=structure, shell=shell,
                              **similarity_options) for c, e in zip(completions, expert_step)]

    reward.__name__ = reward.__qualname__ = "action_similarity"  # TRL logs rewards/action_similarity/mean
    return reward


def get_step_reward(output_format: OutputFormat | None = None, **similarity_options: Any) -> Callable:
    """A TRL reward function `f(completions, expert_step, **kwargs) -> list[float]` for the given format and
    similarity options. Its `__name__` is what TRL logs (`rewards/step_similarity/mean`)."""

    def step_similarity(completions: list, expert_step: list[str], **kwargs: Any) -> list[float]:
        return [srl_reward(c, e, output_format=output_format, **similarity_options)
                for c, e in zip(completions, expert_step)]

    return step_similarity


def get_answer_reward(mode: str = "auto", timeout: float = ANSWER_TIMEOUT, number_fallback: str = "auto") -> Callable:
    """A TRL reward function `f(completions, final_answer, **kwargs) -> list[float]` (the RLVR reward).

    `number_fallback` (`auto`, `on`, `off`): whether a completion without `\\boxed{}` or `#### n` is scored by
    its last number; `auto` = for rows whose `gold_kind` column is `gsm8k`, as `srl eval` scores GSM8K."""
    use_number_fallback(number_fallback, None)  # a bad value fails here, not at the first batch

    def answer(completions: list, final_answer: list[str], gold_kind: list[str] | None = None,
               **kwargs: Any) -> list[float]:
        fallbacks = [use_number_fallback(number_fallback, k) for k in gold_kind or [None] * len(completions)]
        return [outcome_reward(c, a, mode=mode, timeout=timeout, number_fallback=f)
                for c, a, f in zip(completions, final_answer, fallbacks)]

    return answer


# The defaults, ready to pass as `GRPOTrainer(reward_funcs=[step_similarity_reward])`.
step_similarity_reward = get_step_reward()
answer_reward = get_answer_reward()

# CLI names -> reward factories.
REWARDS: dict[str, Callable[..., Callable]] = {"step_similarity": get_step_reward, "answer": get_answer_reward,
                                                "action_similarity": get_action_reward}
