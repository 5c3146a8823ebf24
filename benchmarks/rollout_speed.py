"""Rollout throughput of each generation backend (`hf`, `vllm`) on the same prompts (issue 6).

Run from the repository root (after `make install`):

    .venv/bin/python benchmarks/rollout_speed.py                        # all cores of this process
    .venv/bin/python benchmarks/rollout_speed.py --cores 1              # pinned to core 1 (1-core numbers)
    .venv/bin/python benchmarks/rollout_speed.py --cores 0-1 --json /tmp/rollouts.json

Two workloads, both sampled at temperature 1.0 (top-p 1, top-k off: the trainer's defaults), exactly
--new-tokens tokens per sequence (the end token is ignored, so every backend does the same work):

- `chat`: a short chat prompt, --sequences total (64/128/256), as 1/8 as many prompts x G=8 (GRPO's shape);
- `srl`: SRL-length prompts (system prompt + problem + earlier steps, from the bundled GSM8K sample's
  step-wise instances, the longest ones), 8 prompts x G=8 = 64 sequences.

The vLLM prefix cache is emptied before every call: what
it shares is the G rollouts of one prompt (as in a training step, whose prompts are new), not earlier calls.
Tokens/s = sampled tokens / wall time of the call (prefill included, as in a rollout); median of --repeats calls
after a short warm-up call (8 tokens, before the first cell). Each backend runs in its own process (vLLM binds its OpenMP threads to the cores it
is given, which would also bind the other backend's). --cores sets the process's CPU affinity (`taskset`-style
list); torch and vLLM then use one thread per core. Start-up (model load + engine start, with
compilation for `vllm-compile`) is reported separately.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

CHAT = [{"role": "user", "content": "Name three colours of the rainbow and say one thing about each."}]
G = 8


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m-instruct", help="model name or folder (default: SmolLM2)")
    p.add_argument("--backends", default="hf,vllm,vllm-compile",
                   help="comma list of hf, vllm (eager, as the trainer's default), vllm-compile (torch.compile; "
                        "minutes of start-up) (default: all three)")
    p.add_argument("--sequences", default="64,128,256", help="chat workload: comma list of sequence counts")
    p.add_argument("--workloads", default="chat,srl", help="comma list of chat, srl (default both)")
    p.add_argument("--new-tokens", type=int, default=128, help="sampled tokens per sequence (default 128)")
    p.add_argument("--repeats", type=int, default=3, help="timed calls per cell after a warm-up (median; default 3)")
    p.add_argument("--cores", default=None, help="CPU cores to run on, e.g. 1 or 0-1 (default: this process's)")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                   help="weights' dtype for both backends (default float32: bf16 is slow without native bf16)")
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--worker", help=argparse.SUPPRESS)  # internal: run one backend and print JSON
    return p.parse_args(argv)


def parse_cores(spec: str) -> set[int]:
    cores: set[int] = set()
    for part in spec.split(","):
        a, _, b = part.partition("-")
        cores.update(range(int(a), int(b or a) + 1))
    return cores


def srl_prompts(tokenizer, n: int) -> list[list[int]]:
    """The n longest step-wise SRL prompts of the bundled GSM8K sample (token ids, assistant turn opened)."""
    from srl.training.config import RunArguments
    from srl.training.rows import srl_rows

    rows = srl_rows(RunArguments(think="optional"))
    ids = [tokenizer.apply_chat_template(r["prompt"], add_generation_prompt=True, tokenize=False) for r in rows]
    ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in ids]
    return sorted(ids, key=len, reverse=True)[:n]


def workloads(tokenizer, args) -> list[tuple[str, list[list[int]]]]:
    """(name, distinct prompts); each prompt is sampled G times."""
    chat = tokenizer(tokenizer.apply_chat_template(CHAT, add_generation_prompt=True, tokenize=False),
                     add_special_tokens=False)["input_ids"]
    out = []
    if "chat" in args.workloads:
        out += [(f"chat x{n}", [chat] * (n // G)) for n in map(int, args.sequences.split(","))]
    if "srl" in args.workloads:
        out.append((f"srl x{8 * G}", srl_prompts(tokenizer, 8)))
    return out


# --- one backend, in its own process ------------------------------------------------------------------------
def hf_generate(model, tokenizer, prompts: list[list[int]], new_tokens: int) -> int:
    """TRL's transformers path: every prompt repeated G times, left-padded, `generate` with sampling."""
    import torch

    rows = [p for p in prompts for _ in range(G)]
    width = max(map(len, rows))
    pad = tokenizer.pad_token_id
    ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=mask, do_sample=True, temperature=1.0, top_p=1.0,
                             top_k=0, max_new_tokens=new_tokens, min_new_tokens=new_tokens, pad_token_id=pad)
    return (out.shape[1] - width) * len(rows)


def run_worker(args) -> dict:
    from srl.models import load_model_and_tokenizer, resolve_model

    backend = args.worker
    started = time.perf_counter()
    model, tokenizer = load_model_and_tokenizer(args.model, bf16=args.dtype == "bfloat16")
    if backend == "hf":
        import torch

        torch.set_num_threads(len(os.sched_getaffinity(0)))
        model.eval()

        def generate(prompts, new_tokens=args.new_tokens):
            return hf_generate(model, tokenizer, prompts, new_tokens)
    else:
        from srl.generation.vllm import configure_vllm_environment, make_llm

        env = configure_vllm_environment()
        from vllm import SamplingParams

        llm = make_llm(resolve_model(args.model), dtype=args.dtype, enforce_eager=backend != "vllm-compile",
                       max_model_len=2048, max_num_seqs=256)

        def generate(prompts, new_tokens=args.new_tokens):
            params = SamplingParams(n=G, temperature=1.0, top_p=1.0, top_k=0, max_tokens=new_tokens,
                                    ignore_eos=True)
            llm.reset_prefix_cache()  # only the sharing within one call counts (a training step's new prompts)
            outs = llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)
            return sum(len(o.token_ids) for out in outs for o in out.outputs)
    startup = time.perf_counter() - started
    result = {"backend": backend, "startup_s": round(startup, 1), "cells": {}}
    if backend != "hf":
        result["env"] = env
    for i, (name, prompts) in enumerate(workloads(tokenizer, args)):
        if i == 0:
            generate(prompts, 8)  # warm-up: every code path, few tokens
        rates = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            tokens = generate(prompts)
            rates.append(tokens / (time.perf_counter() - t0))
        result["cells"][name] = {"tokens_per_s": round(statistics.median(rates), 1),
                                 "runs": [round(r, 1) for r in rates],
                                 "prompt_tokens": round(statistics.mean(map(len, prompts)))}
        print(f"  {backend} {name}: {result['cells'][name]['tokens_per_s']} tokens/s {result['cells'][name]['runs']}",
              file=sys.stderr, flush=True)
    return result


# --- the driver ---------------------------------------------------------------------------------------------
def main(argv=None) -> int:
    args = parse_args(argv)
    if args.cores:
        os.sched_setaffinity(0, parse_cores(args.cores))
    cores = sorted(os.sched_getaffinity(0))
    if args.worker:
        print(json.dumps(run_worker(args)))
        return 0
    env = dict(os.environ, OMP_NUM_THREADS=str(len(cores)))
    results = {"cores": cores, "model": args.model, "dtype": args.dtype, "new_tokens": args.new_tokens,
               "repeats": args.repeats, "backends": []}
    for backend in args.backends.split(","):
        print(f"{backend} on cores {cores} ...", file=sys.stderr, flush=True)
        cmd = [sys.executable, __file__, *(argv if argv is not None else sys.argv[1:]), "--worker", backend]
        proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            results["backends"].append({"backend": backend, "error": f"exit code {proc.returncode}"})
            continue
        results["backends"].append(json.loads(proc.stdout.strip().splitlines()[-1]))

    names = [n for b in results["backends"] for n in b.get("cells", {})]
    names = list(dict.fromkeys(names))
    hf = next((b for b in results["backends"] if b["backend"] == "hf" and "cells" in b), None)
    print(f"\ntokens/s, {len(cores)} core(s) {cores}, {args.dtype}, {args.new_tokens} sampled tokens/sequence, "
          f"median of {args.repeats}")
    print("| backend | start-up (s) | " + " | ".join(names) + " |")
    print("|---|---|" + "---|" * len(names))
    for b in results["backends"]:
        if "cells" not in b:
            print(f"| {b['backend']} | {b['error']} |")
            continue
        cells = []
        for n in names:
            rate = b["cells"].get(n, {}).get("tokens_per_s")
            ratio = f" ({rate / hf['cells'][n]['tokens_per_s']:.2f}x)" if hf and b is not hf and rate else ""
            cells.append(f"{rate}{ratio}" if rate else "-")
        print(f"| {b['backend']} | {b['startup_s']} | " + " | ".join(cells) + " |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
