"""fp32 against bf16 matrix products on this CPU (issue 25, item 1's first table): the rate of `a @ b` at the
shapes of an SRL step on SmolLM2-135M (hidden 576, MLP 1536) — a loss/prefill-sized batch of rows and one
decode row — with 1 and 2 torch threads, and the bf16/fp32 ratio that `--dtype auto` is to be decided from.

    .venv/bin/python benchmarks/dtype_matmul.py            # prints the CPU's model and bf16 flags, then the table

A rate is 2·m·k·n / seconds (the median of `--reps` products after 3 warm-up ones); compare ratios measured in one
run only (the machines change between sessions).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time

SHAPES = {"rows 2048 (loss, prefill)": (2048, 576, 1536), "rows 256": (256, 576, 1536),
          "rows 32 (decoding 4 prompts x G=8)": (32, 576, 1536), "1 row (decode)": (1, 576, 1536)}


def rate(dtype, threads: int, m: int, k: int, n: int, reps: int) -> float:
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * m * k * n / statistics.median(times) / 1e9


def cpu_line() -> str:
    text = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next((l.split(":", 1)[1].strip() for l in text.splitlines() if l.startswith("Model name")), "?")
    flags = next((l.split(":", 1)[1].split() for l in text.splitlines() if l.startswith("Flags")), [])
    bf16 = [f for f in flags if "bf16" in f or f.startswith("amx")]
    return f"CPU: {model}; bf16-related flags: {' '.join(bf16) or 'none'}"


def main(argv=None) -> int:
    import torch

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=30)
    args = p.parse_args(argv)
    print(cpu_line(), f"| torch {torch.__version__}", flush=True)
    print("| shape (m x k x n) | threads | fp32 GFLOP/s | bf16 GFLOP/s | bf16 / fp32 |\n|---|---|---|---|---|")
    for name, shape in SHAPES.items():
        for threads in (1, 2):
            f32 = rate(torch.float32, threads, *shape, args.reps)
            b16 = rate(torch.bfloat16, threads, *shape, args.reps)
            print(f"| {name}: {'x'.join(map(str, shape))} | {threads} | {f32:.1f} | {b16:.1f} | {b16 / f32:.2f} |",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
