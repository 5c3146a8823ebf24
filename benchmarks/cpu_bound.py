"""What this CPU can do, for the step benchmarks to compare against: its matmul rate (fp32 or bf16), its copy
bandwidth, the bound of each part of an RL step of a decoder-only model at those rates (generation and loss: FLOPs;
the optimizer: AdamW's memory traffic), and the cost of drawing one token per row (TRL's `generate` sampler against
the shared prefill's).

    .venv/bin/python benchmarks/cpu_bound.py --threads 1     # matmul rate and sampler times
"""

from __future__ import annotations

import argparse
import statistics
import time


def matmul_gflops(threads: int | None, dtype: str = "fp32") -> float:
    """This CPU's matmul rate (GFLOP/s) in `dtype` (fp32, bf16) on the model's shapes (576 x 1536), best of a few
    runs (fewer where a product takes long: bf16 without native units)."""
    import torch

    from srl.training.threads import set_torch_threads

    set_torch_threads(threads)
    kind = torch.bfloat16 if dtype == "bf16" else torch.float32
    a, b = torch.randn(2048, 576).to(kind), torch.randn(576, 1536).to(kind)
    best, deadline = float("inf"), time.perf_counter() + 20
    for _ in range(5):
        n, t = 0, time.perf_counter()
        while n < 10 and (n == 0 or time.perf_counter() - t < 5):
            a @ b
            n += 1
        best = min(best, (time.perf_counter() - t) / n)
        if time.perf_counter() > deadline:
            break
    return 2 * 2048 * 576 * 1536 / best / 1e9


def copy_bandwidth_gbs() -> float:
    """Memory bandwidth (GB/s read + written) of copying a 256 MB tensor, best of 5."""
    import torch

    a = torch.ones(64 * 2 ** 20)
    b = torch.empty_like(a)
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        b.copy_(a)
        best = min(best, time.perf_counter() - t)
    return 2 * a.numel() * 4 / best / 1e9


# AdamW's traffic per fp32 parameter: read the parameter, its gradient and both moments, write back the parameter
# and the moments (28 bytes), and the gradient read once more for clipping (4).
ADAMW_BYTES_PER_PARAM = 32


def bounds(result: dict, rate_gflops: float, bandwidth_gbs: float) -> dict[str, float]:
    """Seconds that each part of one step cannot go under: generation and the loss, their FLOPs / `rate_gflops`;
    the optimizer, AdamW's memory traffic / `bandwidth_gbs`."""
    generation, loss = step_flops(result)
    return {"generation": generation / (rate_gflops * 1e9), "loss": loss / (rate_gflops * 1e9),
            "optimizer": result["params"] * ADAMW_BYTES_PER_PARAM / (bandwidth_gbs * 1e9)}


def step_flops(result: dict) -> tuple[float, float]:
    """FLOPs of one step's distinct work, (generation, loss): the prompts forwarded once (generation prefill; the
    loss forward + backward = 3 forwards), every completion token decoded once and scored once (LM head included),
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
    return generation, loss


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
    print(f"fp32 matmul rate: {matmul_gflops(args.threads):.1f} GFLOP/s; copy bandwidth {copy_bandwidth_gbs():.1f} GB/s")
    for rows in (16, 32, 64):
        print(rows, "rows:", {k: round(v, 1) for k, v in sampler_ms(rows).items()}, "ms per decoding step")


if __name__ == "__main__":
    main()
