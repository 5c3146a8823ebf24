"""Step-wise inference (`srl eval --stepwise`): the policy solves a problem one step at a time under the SRL prompt,
as an agent acts, instead of writing the whole solution under the evaluation prompt.

Round k shows the model exactly what a step-wise training instance for step k shows (`srl.data.instances`): the
SRL system prompt of the `--think` mode and the user turn `PromptTemplate.user_turn(problem, previous actions,
step_number=k)`, where the previous actions are the model's own, in order. The response is parsed with the
training's output format (`srl.rewards.format.parse_response`): its action is appended to the context, the
monologue is not. A rollout stops when

- an action gives a final answer (a `\\boxed{}` or a `#### n` line): `stop = "answer"`;
- a response breaks the format (no action: e.g. no `</think>` under `--think required`): `stop = "format_error"`;
- it has written `--max_steps` actions: `stop = "step_limit"`.

The actions joined by newlines are then scored like a whole solution (`score_response`, same `--answer_mode`), so
greedy accuracy, avg@k and pass@k mean what they mean for `srl eval`. Each problem's record keeps the trajectory:
`steps` (response, action, tokens, truncated, format error of every round), `stop` and `num_steps`.

All rollouts still running advance together, one generation batch per round (sorted by prompt length).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from srl.data.answers import extract_boxed, extract_gsm8k
from srl.data.prompts import PromptTemplate
from srl.data.benchmarks import Problem
from srl.evaluation.metrics import score_response, use_number_fallback
from srl.rewards.format import OutputFormat, parse_response

STOP_REASONS = ("answer", "format_error", "step_limit")


@dataclass
class Rollout:
    """One step-wise attempt at a problem: `sample` -1 is the greedy one."""

    problem: int
    sample: int
    actions: list[str] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    stop: str | None = None


def step_messages(problem: str, actions: list[str], think: str, template: PromptTemplate) -> list[dict]:
    """The chat of round len(actions)+1: what a step-wise instance of that step shows, with `actions` as the
    previous steps."""
    return [{"role": "system", "content": template.system_prompt(think)},
            {"role": "user", "content": template.user_turn(problem, actions, step_number=len(actions) + 1)}]


def gives_answer(action: str) -> bool:
    """Whether an action states a final answer (`\\boxed{}` or `#### n`), which ends the rollout."""
    return extract_boxed(action) is not None or extract_gsm8k(action) is not None


def advance_rollouts(rollouts: list[Rollout], problems: list[Problem], generate, model, tokenizer, *,
                     output_format: OutputFormat, template: PromptTemplate, max_steps: int, batch_size: int,
                     generation: dict[str, Any], prompt_ids: Callable[[Any, list[dict]], list[int]]) -> int:
    """Run `rollouts` to their end, one round (one step of every unfinished rollout) at a time; returns the
    tokens generated. `generation`: max_new_tokens, do_sample and the sampling options of `generate`."""
    prefill = (tokenizer(output_format.think_open + "\n", add_special_tokens=False)["input_ids"]
               if output_format.think_prefilled else [])
    tokens = 0
    while True:
        active = [r for r in rollouts if r.stop is None]
        if not active:
            return tokens
        ids = {id(r): prompt_ids(tokenizer, step_messages(problems[r.problem].problem, r.actions,
                                                           output_format.think, template)) + prefill
               for r in active}
        active.sort(key=lambda r: -len(ids[id(r)]))
        for start in range(0, len(active), batch_size):
            chunk = active[start:start + batch_size]
            for r, gen in zip(chunk, generate(model, tokenizer, [ids[id(r)] for r in chunk], **generation)):
                parsed = parse_response(gen.text, output_format)
                r.steps.append({"response": gen.text, "action": parsed.action, "think": parsed.think,
                                "tokens": gen.tokens, "truncated": gen.truncated, "format_error": parsed.error})
                tokens += gen.tokens
                if not parsed.ok:
                    r.stop = "format_error"
                    continue
                r.actions.append(parsed.action)
                if gives_answer(parsed.action):
                    r.stop = "answer"
                elif len(r.actions) >= max_steps:
                    r.stop = "step_limit"


def rollout_row(r: Rollout, problem: Problem, *, answer_mode: str, number_fallback: str,
                timeout: float) -> dict[str, Any]:
    """A finished rollout scored like a whole solution, as a problems.jsonl row."""
    solution = "\n".join(r.actions)
    scored = score_response(solution, problem.gold, answer_mode=answer_mode,
                            number_fallback=use_number_fallback(number_fallback, problem.gold_kind), timeout=timeout)
    return {"answer": scored.answer, "correct": scored.correct, "response": solution,
            "tokens": sum(s["tokens"] for s in r.steps), "truncated": any(s["truncated"] for s in r.steps),
            "stop": r.stop, "num_steps": len(r.actions), "steps": r.steps}


def stepwise_generate_and_score(cfg, problems: list[Problem], generate, model, tokenizer, batch_size: int,
                                advance: Callable[[int], None], prompt_ids) -> tuple[list, list, dict[str, float]]:
    """`srl eval --stepwise`: the greedy pass and the k samples per problem (as `cfg` asks), each rolled out step
    by step. Returns (greedy rows, sample rows per problem, stats) as the whole-solution run does."""
    import torch

    template = PromptTemplate.from_file(cfg.template) if cfg.template else PromptTemplate()
    output_format = OutputFormat(think=cfg.think, think_prefilled=cfg.think_prefill and cfg.think != "off")
    greedy: list[dict | None] = [None] * len(problems)
    samples: list[list[dict | None]] = [[None] * cfg.k for _ in problems]
    stats = {"tokens": 0, "generate": 0.0, "score": 0.0}
    passes = ([(False, [Rollout(i, -1) for i in range(len(problems))])] if cfg.greedy else []) + (
        [(True, [Rollout(i, s) for i in range(len(problems)) for s in range(cfg.k)])] if cfg.k else [])
    for sampling, rollouts in passes:
        generation: dict[str, Any] = dict(max_new_tokens=cfg.max_new_tokens, do_sample=sampling)
        if sampling:
            torch.manual_seed(cfg.seed)
            generation.update(temperature=cfg.temperature, top_p=cfg.top_p, top_k=cfg.top_k)
        t0 = time.time()
        stats["tokens"] += advance_rollouts(rollouts, problems, generate, model, tokenizer,
                                            output_format=output_format, template=template, max_steps=cfg.max_steps,
                                            batch_size=batch_size, generation=generation, prompt_ids=prompt_ids)
        t1 = time.time()
        for r in rollouts:
            row = rollout_row(r, problems[r.problem], answer_mode=cfg.answer_mode,
                              number_fallback=cfg.number_fallback, timeout=cfg.timeout)
            if r.sample < 0:
                greedy[r.problem] = row
            else:
                samples[r.problem][r.sample] = row
        advance(len(rollouts))
        stats["generate"] += t1 - t0
        stats["score"] += time.time() - t1
    return greedy, samples, stats


def stepwise_summary(records: list[dict[str, Any]], cfg) -> dict[str, Any]:
    """How the step-wise rollouts went: their settings, stop reasons, steps per rollout, monologue use."""
    rows = ([r["greedy"] for r in records] if cfg.greedy else []) + [s for r in records for s in r.get("samples", [])]
    steps = [s for row in rows for s in row["steps"]]
    thought = [s for s in steps if s.get("think")]
    stops = Counter(row["stop"] for row in rows)
    return {"think": cfg.think, "think_prefill": cfg.think_prefill, "max_steps": cfg.max_steps,
            "template": cfg.template, "rollouts": len(rows),
            "stop": {reason: stops.get(reason, 0) / len(rows) if rows else 0.0 for reason in STOP_REASONS},
            "mean_steps": sum(row["num_steps"] for row in rows) / len(rows) if rows else 0.0,
            "format_error_rate": sum(s["format_error"] is not None for s in steps) / len(steps) if steps else 0.0,
            "think_rate": len(thought) / len(steps) if steps else 0.0,
            "mean_think_chars": sum(len(s["think"]) for s in thought) / len(thought) if thought else 0.0}
