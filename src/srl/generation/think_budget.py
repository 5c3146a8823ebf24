"""Generation helpers shared by the trainer and the measurement scripts.

`generate_with_think_budget` closes a monologue that is still open after N tokens: it appends `</think>`
(forced tokens, which the trainer masks out of the loss) and lets the model write its action in the remaining
tokens. Small models otherwise spend their whole completion budget thinking and never write an action.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

# generate(prompt_ids, max_new_tokens) -> (completion ids per prompt, token log-probs per prompt or None)
GenerateFn = Callable[[list[list[int]], int], tuple[list[list[int]], list[list[float]] | None]]


@dataclass
class BudgetedCompletions:
    completion_ids: list[list[int]]
    model_mask: list[list[int]]  # 1 for tokens the model wrote, 0 for forced ones
    logprobs: list[list[float]] | None
    forced: int  # how many completions had `</think>` forced


def generate_with_think_budget(generate: GenerateFn, prompt_ids: Sequence[list[int]], *, budget: int,
                               max_new_tokens: int, close_ids: list[int], is_closed: Callable[[list[int]], bool],
                               eos_ids: Sequence[int]) -> BudgetedCompletions:
    """Generate `budget` tokens; every completion that has not ended then continues, after `close_ids` when its
    monologue is still open (`is_closed(ids)` is False), for up to `max_new_tokens` tokens in all."""
    first, first_logprobs = generate(list(prompt_ids), budget)
    eos = set(eos_ids)
    forced, todo = {}, []
    for i, ids in enumerate(first):
        if ids and ids[-1] in eos:
            continue
        forced[i] = [] if is_closed(ids) else list(close_ids)
        todo.append(i)
    second, second_logprobs = [], None
    if todo:
        remaining = max(max_new_tokens - budget - len(close_ids), 1)
        second, second_logprobs = generate([list(prompt_ids[i]) + first[i] + forced[i] for i in todo], remaining)
    rest = dict(zip(todo, second))
    n = len(first)
    completions = [first[i] + forced.get(i, []) + rest.get(i, []) for i in range(n)]
    mask = [[1] * len(first[i]) + [0] * len(forced.get(i, [])) + [1] * len(rest.get(i, [])) for i in range(n)]
    logprobs = None
    if first_logprobs is not None and (second_logprobs is not None or not todo):
        later = dict(zip(todo, second_logprobs or []))
        logprobs = [first_logprobs[i] + [0.0] * len(forced.get(i, [])) + later.get(i, []) for i in range(n)]
    return BudgetedCompletions(completions, mask, logprobs, sum(1 for f in forced.values() if f))
