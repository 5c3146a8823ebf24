"""Which `generate` settings are fastest for evaluation-length prompts on this CPU (issue 4, item 3).

    .venv/bin/python benchmarks/generation_settings.py                    # batch 32, 64 new tokens
    .venv/bin/python benchmarks/generation_settings.py --batch 64 --new_tokens 128 --threads 2

SmolLM2-135M-Instruct, fp32, greedy, the first --batch GSM8K test problems in the paper's evaluation prompt
(left-padded, as `srl eval` batches them), exactly --new_tokens tokens per row. For each setting: one warm-up
call, then one timed call (prefill included). Settings: the default dynamic KV cache, a static cache
(`cache_implementation="static"`), and eager attention instead of SDPA. Then a profile of three decode steps
(batch --batch, past length --past) by operator, which shows where a step's time goes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--new_tokens", type=int, default=64)
    p.add_argument("--past", type=int, default=200, help="past length of the profiled decode steps")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from srl.data.benchmarks import data_root
    from srl.evaluation.runner import build_messages, prompt_ids, system_prompt_text
    from srl.models import load_model_and_tokenizer

    model, tok = load_model_and_tokenizer(args.model)
    model.eval()
    with open(os.path.join(data_root(), "gsm8k", "test.jsonl"), encoding="utf-8") as f:
        problems = [json.loads(line)["question"] for _, line in zip(range(args.batch), f)]
    ids = [prompt_ids(tok, build_messages(q, system_prompt_text("paper"))) for q in problems]
    width, pad = max(map(len, ids)), tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    x = torch.tensor([[pad] * (width - len(i)) + i for i in ids])
    mask = torch.tensor([[0] * (width - len(i)) + [1] * len(i) for i in ids])
    print(f"{args.model}: batch {args.batch}, prompt width {width} tokens, {args.new_tokens} new tokens, "
          f"{args.threads} thread(s), load average {os.getloadavg()[0]:.1f}")
    for name, attn, extra in (("dynamic cache, sdpa", "sdpa", {}),
                              ("static cache, sdpa", "sdpa", {"cache_implementation": "static"}),
                              ("dynamic cache, eager", "eager", {})):
        model.set_attn_implementation(attn)
        options = dict(do_sample=False, pad_token_id=pad, **extra)
        with torch.inference_mode():
            model.generate(input_ids=x, attention_mask=mask, max_new_tokens=4, **options)
            t = time.perf_counter()
            model.generate(input_ids=x, attention_mask=mask, max_new_tokens=args.new_tokens,
                           min_new_tokens=args.new_tokens, **options)
            dt = time.perf_counter() - t
        print(f"  {name:22s} {args.batch * args.new_tokens / dt:7.1f} tokens/s  ({dt / args.new_tokens * 1000:.0f} ms "
              "per new token, prefill included)")
    model.set_attn_implementation("sdpa")

    from torch.profiler import profile

    past = torch.randint(0, 1000, (args.batch, args.past))
    with torch.inference_mode():
        cache = model(past, use_cache=True).past_key_values
        step = torch.randint(0, 1000, (args.batch, 1))
        with profile() as prof:
            for _ in range(3):
                model(step, past_key_values=cache, use_cache=True)
    total = sum(e.self_cpu_time_total for e in prof.key_averages()) / 1000 / 3
    print(f"decode step, batch {args.batch}, past {args.past}: {total:.0f} ms; by operator (self time per step):")
    for e in sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:5]:
        print(f"  {e.key:52s} {e.self_cpu_time_total / 1000 / 3:7.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
