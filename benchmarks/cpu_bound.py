"""What this CPU can do, for the step benchmarks to compare against: its fp32 matmul rate, the FLOP bound of an
RL step of a decoder-only model at that rate, and the cost of drawing one token per row (TRL's `generate`
sampler against the shared prefill's).

    .venv/bin/python benchmarks/cpu_bound.py --threads 1     # matmul rate and sampler times
"""

from __future__ import annotations

import argparse
import statistics
import time


def matmul_gflops(threads: int | None) -> float:
    """This CPU's fp32 matmul rate (GFLOP/s) on the model's shapes (576 x 1536), best of a few runs."""
    import torch

    from srl.training.threads import set_torch_threads

    set_torch_threads(threads)
    a, b = torch.randn(2048, 576), torch.randn(576, 1536)
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(10):
            a @ b
        best = min(best, (time.perf_counter() - t) / 10)
    return 2 * 2048 * 576 * 1536 / best / 1e9


def bound_seconds(result: dict, rate_gflops: float) -> float:
    """FLOPs of one step's distinct work / rate: the prompts forwarded once (generation prefill; the loss
    forward + backward = 3 forwards), every completion token decoded once and scored once (LM head included),
    attention over each token's context."""
    d, layers, vocab = result["hidden"], result["layers"], result["vocab"]
    body = result["params"] - vocab * d  # the tied embedding / LM head counted apart
    tok = result["tokens"]
    prompt_tokens = sum(tok["prompt_lengths"])
    completion = tok["rows"] * tok["completion_width"]
    mean_context = (sum(tok["prompt_lengths"]) / len(tok["prompt_lengths"])) + tok["completion_width"] / 2
    per_token = 2 * body + 4 * layers * d * mean_context
    generation = prompt_tokens * per_token + completion * (per_token + 2 * d * vocab)
    loss = 3 * (prompt_tokens * per_token + completion * (per_token + 2 * d * vocab))
    return (generation + loss) / (rate_gflops * 1e9)


def sampler_ms(rows: int, vocab: int = 49152, repeats: int = 30) -> dict[str, float]:
    """Milliseconds per decoding step to draw one token per row from softmax(logits): `generate`'s
    `torch.multinomial` against the shared prefill's inverse CDF (the same distribution), median of `repeats`."""
    import torch

    from srl.generation.shared_prefill import sample

    logits = torch.randn(rows, vocab) * 3
    out = {}
    for name, draw in (("softmax + multinomial", lambda p: torch.multinomial(p, 1)), ("softmax + inverse CDF", sample)):
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            draw(torch.softmax(logits, dim=-1))
            times.append(time.perf_counter() - t)
        out[name] = 1000 * statistics.median(times)
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: srl.training.threads)")
    args = p.parse_args(argv)
    from srl.training.threads import set_torch_threads

    print(set_torch_threads(args.threads))
    print(f"fp32 matmul rate: {matmul_gflops(args.threads):.1f} GFLOP/s")
    for rows in (16, 32, 64):
        print(rows, "rows:", {k: round(v, 1) for k, v in sampler_ms(rows).items()}, "ms per decoding step")


if __name__ == "__main__":
    main()
