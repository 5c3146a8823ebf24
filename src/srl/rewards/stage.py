"""Which reward a training stage scores with, from its options: the one home of that mapping, used by
`srl train` (`srl.training.stages`), `srl compare`, and the verl export (`srl data export --to verl` writes the
same option names into each row's `extra_info`, and its `srl_reward.py` scores through `score`).

- `srl`  the step reward: the similarity of the action to the expert's step (the paper's difflib ratio, or the
         agent-action similarity with `action_structure` / `action_shell`), -1 for a broken format; two
         ablations of the paper: `step_target: remaining` compares with the expert's remaining solution (the
         instance's `remaining` column), `step_reward: outcome` scores the action's final answer (0/1, -1 for a
         broken format) against the instance's `final_answer`;
- `rlvr` the outcome reward: 1 if the final answer is right, else 0.

`options` is an object with the options as attributes (`srl.training.config.RunArguments`) or a mapping (verl's
`extra_info`); a missing option takes its default below (the defaults of `srl train`).

>>> score("srl", "<think>half of 48</think> 48/2 = 24", "48/2 = 24", {"think": "required"})
1.0
>>> score("rlvr", "so \\\\boxed{24}", "24", {})
1.0
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from srl.data.answers import use_number_fallback
from srl.rewards.format import OutputFormat
from srl.rewards.functions import (ANSWER_TIMEOUT, action_reward, get_action_reward, get_answer_reward,
                                   get_step_reward, outcome_reward, srl_reward)

STEP_OPTIONS: dict[str, Any] = {"think": "required", "think_prefill": False, "solution_tags": False,
                                "similarity": "difflib", "autojunk": True, "normalize_whitespace": False,
                                "action_structure": False, "action_shell": False, "step_reward": "similarity",
                                "step_target": "next"}
OUTCOME_OPTIONS: dict[str, Any] = {"answer_mode": "auto", "answer_timeout": ANSWER_TIMEOUT, "number_fallback": "auto"}
STAGE_OPTIONS = {"srl": STEP_OPTIONS, "rlvr": OUTCOME_OPTIONS}


def reward_options(stage: str, options: Any) -> dict[str, Any]:
    """The options the `stage`'s reward reads, taken from `options` (attributes or keys), defaults filled in."""
    if stage not in STAGE_OPTIONS:
        raise ValueError(f"stage {stage!r} has no reward (expected one of {', '.join(STAGE_OPTIONS)})")
    get = options.get if isinstance(options, Mapping) else (lambda k, d: getattr(options, k, d))
    return {name: (default if get(name, None) is None else get(name, None))
            for name, default in STAGE_OPTIONS[stage].items()}


def output_format(options: Any) -> OutputFormat:
    """The response format the step reward checks: `think` mode, `<solution>` tags, a pre-filled `<think>`."""
    o = reward_options("srl", options)
    tags = ("<solution>", "</solution>") if o["solution_tags"] else (None, None)
    return OutputFormat(think=o["think"], solution_open=tags[0], solution_close=tags[1],
                        think_prefilled=bool(o["think_prefill"]) and o["think"] != "off")


def _similarity_options(o: dict[str, Any]) -> dict[str, Any]:
    return dict(method=o["similarity"], autojunk=bool(o["autojunk"]), normalize_whitespace=bool(o["normalize_whitespace"]))


def _is_agent(o: dict[str, Any]) -> bool:
    return bool(o["action_structure"] or o["action_shell"])


def score(stage: str, completion: str | list, target: str, options: Any, gold_kind: str | None = None) -> float:
    """The `stage`'s reward of one response against its target: the expert step (or the remaining solution with
    `step_target: remaining`), or the final answer (rlvr, and srl with `step_reward: outcome`)."""
    o = reward_options(stage, options)
    if stage == "rlvr":
        return outcome_reward(completion, target, mode=o["answer_mode"], timeout=float(o["answer_timeout"]),
                              number_fallback=use_number_fallback(o["number_fallback"], gold_kind))
    if o["step_reward"] == "outcome":  # `target` is then the final answer
        return step_outcome(completion, target, o)
    if _is_agent(o):
        return action_reward(completion, target, output_format=output_format(o), structure=bool(o["action_structure"]),
                             shell=bool(o["action_shell"]), **_similarity_options(o))
    return srl_reward(completion, target, output_format=output_format(o), **_similarity_options(o))


def step_outcome(completion: str | list, final_answer: str | None, options: Any) -> float:
    """The final-answer reward on a step instance: the action's answer against the trajectory's (1/0), -1 for a
    broken format."""
    from srl.rewards.format import completion_text, parse_response
    from srl.rewards.functions import FORMAT_PENALTY

    try:
        action = parse_response(completion_text(completion), output_format(options)).action
    except Exception:  # unreadable: not a well-formed response
        return FORMAT_PENALTY
    if action is None:
        return FORMAT_PENALTY
    o = reward_options("rlvr", options)
    return outcome_reward(action, final_answer, mode=o["answer_mode"], timeout=float(o["answer_timeout"]),
                          number_fallback=use_number_fallback(o["number_fallback"], None))


def reward_funcs(stage: str, options: Any) -> list[Callable]:
    """The TRL reward functions `srl train --stage <stage>` trains with (the same values as `score`)."""
    o = reward_options(stage, options)
    if stage == "srl" and o["step_reward"] == "outcome":
        def step_answer(completions: list, final_answer: list, **kwargs: Any) -> list[float]:
            return [step_outcome(c, a, options) for c, a in zip(completions, final_answer)]

        return [step_answer]
    if stage == "srl" and o["step_target"] == "remaining":
        inner = reward_funcs(stage, {**o, "step_target": "next"})[0]

        def remaining_similarity(completions: list, remaining: list, **kwargs: Any) -> list[float]:
            return inner(completions, expert_step=remaining)

        return [remaining_similarity]
    if stage == "rlvr":
        return [get_answer_reward(mode=o["answer_mode"], timeout=float(o["answer_timeout"]),
                                  number_fallback=o["number_fallback"])]
    if _is_agent(o):
        return [get_action_reward(output_format(o), structure=bool(o["action_structure"]),
                                  shell=bool(o["action_shell"]), **_similarity_options(o))]
    return [get_step_reward(output_format(o), **_similarity_options(o))]
