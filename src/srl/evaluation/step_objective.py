"""The SRL objective itself, measured: a model's greedy next step on held-out step-wise instances, scored with the
training reward (`srl.rewards.srl_reward`: the similarity of the action to the expert's step, -1 for a broken
format). Does SRL at least learn what it optimises? Compare `mean_reward` of the base model and the trained one
on the same instances with `srl.evaluation.metrics.paired_mean_difference`.

    from srl.evaluation.step_objective import step_objective
    result = step_objective("smollm2-135m-instruct", rows, think="optional", max_new_tokens=64)
    result["mean_reward"], result["rewards"]      # one reward per instance, in the order of `rows`

`rows` are instances as `srl data build` writes them (`prompt` chat messages, `expert_step`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from srl.evaluation.metrics import mean_interval, wilson_interval
from srl.evaluation.runner import prompt_ids
from srl.generation.hf import generate_batch
from srl.rewards import srl_reward
from srl.rewards.format import OutputFormat


def step_objective(model, rows: Sequence[dict], *, think: str = "required", output_format: OutputFormat | None = None,
                   max_new_tokens: int = 64, batch_size: int = 32, tokenizer=None, threads: int = 0) -> dict[str, Any]:
    """Greedy responses of `model` (a name, folder or loaded model with `tokenizer`) to the instances `rows`,
    scored with the SRL reward under the `think` format (or the training run's `output_format`: a pre-filled
    `<think>` is then appended to each prompt, as the trainer does). Returns the mean reward with its 95% interval, the
    format-error rate, the mean similarity of well-formed actions, the exact-match rate (action == expert step)
    with its Wilson interval, and the per-instance `rewards` (for paired comparisons)."""
    import torch

    if tokenizer is None:
        from srl.models import check_model_name, load_model_and_tokenizer

        check_model_name(model)
        model, tokenizer = load_model_and_tokenizer(model)
    if threads:
        torch.set_num_threads(threads)
    model.eval()
    output_format = output_format or OutputFormat(think=think)
    prefill = (tokenizer.encode(output_format.think_open + "\n", add_special_tokens=False)
               if output_format.think_prefilled else [])
    ids = [prompt_ids(tokenizer, list(r["prompt"])) + prefill for r in rows]
    texts: list[str] = []
    tokens = 0
    for start in range(0, len(ids), batch_size):
        for g in generate_batch(model, tokenizer, ids[start:start + batch_size], max_new_tokens=max_new_tokens,
                                do_sample=False):
            texts.append(g.text)
            tokens += g.tokens
    rewards = [srl_reward(t, r["expert_step"], output_format=output_format) for t, r in zip(texts, rows)]
    well_formed = [x for x in rewards if x >= 0]
    exact = sum(x == 1.0 for x in rewards)
    mean, half = mean_interval(rewards)
    return {"n": len(rows), "think": output_format.think, "think_prefilled": output_format.think_prefilled,
            "max_new_tokens": max_new_tokens, "generated_tokens": tokens,
            "mean_reward": mean, "mean_reward_ci95": [mean - half, mean + half],
            "format_error_rate": (len(rewards) - len(well_formed)) / len(rewards) if rewards else 0.0,
            "mean_similarity_well_formed": sum(well_formed) / len(well_formed) if well_formed else None,
            "exact_match": exact / len(rows) if rows else 0.0,
            "exact_match_wilson95": list(wilson_interval(exact, len(rows))),
            "rewards": rewards, "responses": texts}
