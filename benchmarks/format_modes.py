"""How often does a model write a valid SRL response, and how many groups carry signal, under each format mode?

For each mode: the same GSM8K step instances (bundled sample), G samples per prompt at temperature 1.0, the
reward `srl.rewards.srl_reward` with that mode's format, and the share of groups whose reward std > ε (the
groups dynamic sampling keeps). Generation is plain `transformers.generate`; the think budget uses the same
`srl.generation.generate_with_think_budget` as the trainer.

    .venv/bin/python benchmarks/format_modes.py --model smollm2-135m-instruct --prompts 8 --G 8 --max_new_tokens 128
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import torch

from srl.generation.think_budget import generate_with_think_budget
from srl.data.instances import InstanceOptions, trajectory_instances
from srl.models import load_model_and_tokenizer
from srl.rewards.format import OutputFormat, parse_response
from srl.rewards import srl_reward
from srl.training.sampling import informative_groups
from srl.data import BUNDLED_GSM8K
from srl.data.build import load_trajectories

MODES = {
    "required (paper)": dict(think="required"),
    "required + <think> prefill": dict(think="required", prefill=True),
    "required + prefill + budget": dict(think="required", prefill=True, budget=True),
    "optional": dict(think="optional"),
    "optional + budget": dict(think="optional", budget=True),
    "off": dict(think="off"),
}


def make_generate(model, tokenizer, temperature):
    eos = tokenizer.eos_token_id

    @torch.no_grad()
    def generate(prompt_ids, max_new_tokens):
        width = max(len(p) for p in prompt_ids)
        ids = torch.tensor([[tokenizer.pad_token_id] * (width - len(p)) + p for p in prompt_ids])
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompt_ids])
        out = model.generate(input_ids=ids, attention_mask=mask, do_sample=True, temperature=temperature,
                             max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id, eos_token_id=eos,
                             top_k=0, top_p=1.0)
        completions = []
        for row in out[:, width:].tolist():
            if eos in row:
                row = row[:row.index(eos) + 1]
            completions.append(row)
        return completions, None

    return generate


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--prompts", type=int, default=8, help="step instances (prompts) per mode")
    parser.add_argument("--G", type=int, default=8, help="samples per prompt")
    parser.add_argument("--max_new_tokens", type=int, default=128)
    parser.add_argument("--budget", type=int, default=64, help="think budget (tokens) for the budget modes")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated subset of: " + ", ".join(MODES))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(max(torch.get_num_threads(), 1))
    model, tokenizer = load_model_and_tokenizer(args.model)
    model.eval()
    generate = make_generate(model, tokenizer, 1.0)
    trajectories = list(load_trajectories(BUNDLED_GSM8K, "gsm8k"))
    print(f"model {args.model}, {args.prompts} GSM8K step instances x G={args.G}, {args.max_new_tokens} new tokens, "
          f"temperature 1.0, think budget {args.budget}\n")
    print("| mode | valid format | informative groups | mean reward (valid only) | example action | s |")
    print("|---|---|---|---|---|---|")
    for name in args.modes.split(","):
        mode = MODES[name]
        fmt = OutputFormat(think=mode["think"], think_prefilled=mode.get("prefill", False))
        rows = [r for t in trajectories for r in trajectory_instances(t, InstanceOptions(think=fmt.think))]
        rows = random.Random(args.seed).sample(rows, args.prompts)
        torch.manual_seed(args.seed)
        start = time.perf_counter()
        prompt_ids = []
        for row in rows:
            text = tokenizer.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=False)
            if fmt.think_prefilled:
                text += fmt.think_open + "\n"
            prompt_ids += [tokenizer(text, add_special_tokens=False)["input_ids"]] * args.G
        if mode.get("budget"):
            out = generate_with_think_budget(
                generate, prompt_ids, budget=args.budget, max_new_tokens=args.max_new_tokens,
                close_ids=tokenizer.encode(fmt.think_close + "\n", add_special_tokens=False),
                is_closed=lambda ids: fmt.think_close in tokenizer.decode(ids, skip_special_tokens=True),
                eos_ids=[tokenizer.eos_token_id])
            completions = out.completion_ids
        else:
            completions, _ = generate(prompt_ids, args.max_new_tokens)
        texts = tokenizer.batch_decode(completions, skip_special_tokens=True)
        experts = [row["expert_step"] for row in rows for _ in range(args.G)]
        rewards = [srl_reward(t, e, output_format=fmt) for t, e in zip(texts, experts)]
        valid = [r for r in rewards if r != -1.0]
        keep = informative_groups(torch.tensor(rewards), args.G)
        actions = [parse_response(t, fmt).action for t in texts]
        example = next((a for a in actions if a), "")
        example = example.replace("\n", " ").replace("|", "/")[:60]
        print(f"| {name} | {len(valid)}/{len(rewards)} ({len(valid) / len(rewards):.0%}) | "
              f"{int(keep.sum())}/{keep.numel()} | {statistics.fmean(valid) if valid else float('nan'):.3f} | "
              f"{example} | {time.perf_counter() - start:.0f} |", flush=True)


if __name__ == "__main__":
    main()
