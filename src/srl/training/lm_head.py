"""The LM head's per-token log-probs and entropies on a CPU: three matrix products where TRL's kernel does four.

TRL scores completions through a fused LM head (`trl.kernels.ChunkedLogProbFunction`, `fused_lm_head=True`) that
never holds the `(positions, vocabulary)` logits: it projects the hidden states in tiles of 4,096 positions x
32,768 tokens, folds each tile into online log-sum-exp statistics, and in the backward projects them all again to
turn each tile into the logits' gradient. On a GPU that trades one product for memory. On a CPU without Triton
the fold runs as ~20 torch operations, each a pass over a 32,768-wide tile far larger than the caches: profiled
on SmolLM2 (512 positions, one AVX2 thread) the head took 3.0 s forward + backward, of which 1.5 s the four
products and 1.6 s those passes (docs/benchmarks.md, issue 25).

`LogProbHead` computes the same values with the projections in tiles of `VOCAB_TILE` tokens, each small enough
for the cache to hold while it is folded, and keeps the forward's logits (one `(positions, vocabulary)` float32
copy, up to `SAVE_LIMIT_BYTES`; positions past it are projected again in the backward, as TRL does) so that the
backward does two products, not three. The log-probs, the entropies and every gradient match TRL's kernel
(tests/test_lm_head.py).

`cpu_lm_head(mask)` switches TRL's fused head to this one for the forwards inside it, on CPU tensors, without
temperature-independent extras (softcapping, `log_sum_sq_probs`, `mean_logits`, `is_top1`: TRL's kernel runs those);
`mask` (the labels that are not -100) lets it score only the positions with a label, where TRL's CPU path scores
every position. Used by the shared-prefix loss (srl.training.shared_prefix). Scoped to this context: a forward in
another thread keeps TRL's kernel.
"""

from __future__ import annotations

import contextlib
import contextvars

import torch

VOCAB_TILE = 2048  # tokens per projection tile: positions x 2,048 float32 values stay in cache while folded
POSITION_CHUNK = 1024  # positions per pass over the vocabulary
SAVE_LIMIT_BYTES = 1 << 30  # the forward's logits kept for the backward, per call; past it they are recomputed
SUPPORTED_OUTPUTS = {"log_probs", "entropy"}


class LogProbHead(torch.autograd.Function):
    """`(log p(target), entropy)` of `softmax(scale * (hidden @ weight.T + bias))` per position.

    hidden (N, H), weight (V, H), bias (V) or None, targets (N) token ids, `scale` = logit scale / temperature.
    Under autocast the forward's products run in its dtype; the softmax and the backward's products (which
    accumulate the gradients) in float32, as TRL's kernel on a CPU."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, scale: float, compute_entropy: bool):
        ctx.set_materialize_grads(False)
        device = hidden.device
        dtype = torch.get_autocast_dtype(device.type) if torch.is_autocast_enabled(device.type) else hidden.dtype
        n = hidden.size(0)
        log_z = torch.empty(n, dtype=torch.float32, device=device)
        logps = torch.empty(n, dtype=torch.float32, device=device)
        entropy = torch.empty(n, dtype=torch.float32, device=device) if compute_entropy else None
        saved, budget = [], SAVE_LIMIT_BYTES
        for a in range(0, n, POSITION_CHUNK):
            b = min(a + POSITION_CHUNK, n)
            keep = budget >= (b - a) * weight.size(0) * 4
            budget -= (b - a) * weight.size(0) * 4 if keep else 0
            tiles = []
            m = torch.full((b - a,), float("-inf"), dtype=torch.float32, device=device)
            s = torch.zeros(b - a, dtype=torch.float32, device=device)
            zs = torch.zeros(b - a, dtype=torch.float32, device=device)
            target_logit = torch.zeros(b - a, dtype=torch.float32, device=device)
            for v0, z in _tiles(hidden[a:b], weight, bias, scale, dtype):
                new_m = torch.maximum(m, z.amax(dim=1))
                rescale = torch.exp(m - new_m)
                e = torch.sub(z, new_m.unsqueeze(1)).exp_()
                s.mul_(rescale).add_(e.sum(dim=1))
                if compute_entropy:
                    zs.mul_(rescale).add_(torch.linalg.vecdot(e, z))
                m = new_m
                rows, cols = _targets_in(targets[a:b], v0, z.size(1))
                target_logit[rows] = z[rows, cols]
                if keep:
                    tiles.append(z)
            log_z[a:b] = m + torch.log(s)
            logps[a:b] = target_logit - log_z[a:b]
            if compute_entropy:
                entropy[a:b] = log_z[a:b] - zs / s
            saved.append(tiles if keep else None)
        ctx.save_for_backward(hidden, weight, bias, targets, log_z, entropy if compute_entropy else log_z)
        ctx.logits, ctx.scale, ctx.dtype = saved, scale, dtype
        return logps, entropy

    @staticmethod
    def backward(ctx, grad_logps, grad_entropy):
        from trl.trainer.utils import maybe_gather_lm_head_ctx

        hidden, weight, bias, targets, log_z, entropy = ctx.saved_tensors
        if ctx.logits is None:
            raise RuntimeError("LogProbHead frees its saved logits in its first backward: a second backward through "
                               "the same graph is not supported")
        need_hidden, need_weight, need_bias = ctx.needs_input_grad[:3]
        grad_hidden = torch.zeros(hidden.shape, dtype=torch.float32, device=hidden.device) if need_hidden else None
        grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_weight else None
        grad_bias = torch.zeros(bias.shape, dtype=torch.float32, device=bias.device) if need_bias else None
        g = grad_logps.float() if grad_logps is not None else None
        ge = grad_entropy.float() if grad_entropy is not None else None
        with maybe_gather_lm_head_ctx(weight, bias):
            for i, a in enumerate(range(0, hidden.size(0), POSITION_CHUNK)):
                b = min(a + POSITION_CHUNK, hidden.size(0))
                h = hidden[a:b].float()
                tiles = ctx.logits[i]
                tiles = ((k * VOCAB_TILE, z) for k, z in enumerate(tiles)) if tiles is not None else \
                    _tiles(hidden[a:b], weight, bias, ctx.scale, ctx.dtype)
                for v0, z in tiles:
                    v1 = v0 + z.size(1)
                    log_p = torch.sub(z, log_z[a:b].unsqueeze(1))
                    grad = torch.exp(log_p)  # p, turned into the logits' gradient in place
                    if ge is not None:  # d entropy / dz_j = -p_j (log p_j + entropy)
                        log_p.add_(entropy[a:b].unsqueeze(1)).mul_(grad).mul_(-ge[a:b].unsqueeze(1))
                    if g is not None:  # d log p(t) / dz_j = 1[j = t] - p_j
                        grad.mul_(-g[a:b].unsqueeze(1) * ctx.scale)
                        rows, cols = _targets_in(targets[a:b], v0, z.size(1))
                        grad[rows, cols] += g[a:b][rows] * ctx.scale
                    else:
                        grad.zero_()
                    if ge is not None:
                        grad.add_(log_p, alpha=ctx.scale)
                    if grad_hidden is not None:  # accumulated in float32, as TRL's kernel does
                        grad_hidden[a:b].addmm_(grad, weight[v0:v1].float())
                    if grad_weight is not None:
                        grad_weight[v0:v1].addmm_(grad.t(), h)
                    if grad_bias is not None:
                        grad_bias[v0:v1] += grad.sum(dim=0, dtype=torch.float32)
        ctx.logits = None  # the saved logits are freed with the graph's first backward
        return (grad_hidden.to(hidden.dtype) if grad_hidden is not None else None,
                grad_weight.to(weight.dtype) if grad_weight is not None else None,
                grad_bias.to(bias.dtype) if grad_bias is not None else None, None, None, None)


def _tiles(hidden, weight, bias, scale, dtype):
    """(first token id, float32 logits tile (positions, <= VOCAB_TILE)) over the vocabulary."""
    h = hidden.to(dtype)
    for v0 in range(0, weight.size(0), VOCAB_TILE):
        w = weight[v0:v0 + VOCAB_TILE].to(dtype)
        z = torch.mm(h, w.t()) if bias is None else torch.addmm(bias[v0:v0 + VOCAB_TILE].to(dtype), h, w.t())
        z = z.float()
        if scale != 1.0:
            z.mul_(scale)
        yield v0, z


def _targets_in(targets, v0, width):
    """(positions, columns) of the targets that fall in the tile of tokens [v0, v0 + width)."""
    rows = ((targets >= v0) & (targets < v0 + width)).nonzero().squeeze(1)
    return rows, targets[rows] - v0


# --- the switch in TRL's fused head ---------------------------------------------------------------------------
_MASK = contextvars.ContextVar("srl_cpu_lm_head", default=None)  # None: TRL's kernel


@contextlib.contextmanager
def cpu_lm_head(mask: torch.Tensor):
    """Inside, TRL's fused LM head (`fused_lm_head=True`) on CPU tensors runs `LogProbHead`, scoring only the
    positions where `mask` (the shifted labels != -100, (rows, positions)) is true. Elsewhere (a GPU, another
    thread, softcapping, other outputs) TRL's kernel runs."""
    if mask.device.type != "cpu":
        yield
        return
    _install_switch()
    token = _MASK.set(mask.reshape(-1))
    try:
        yield
    finally:
        _MASK.reset(token)


def _install_switch() -> None:
    """Wrap TRL's `_ChunkedLogProbFunction` (what its fused forward calls) once with a class whose `apply` defers to
    `LogProbHead` inside `cpu_lm_head`."""
    from trl.trainer import utils as trl_utils

    original = trl_utils._ChunkedLogProbFunction
    if getattr(original, "srl_switch", False):
        return

    class Switch:
        srl_switch = True

        @staticmethod
        def apply(hidden, weight, bias, targets, temperature, chunk_size, final_logit_softcapping=None,
                  logit_scale=1.0, outputs=("log_probs",)):
            mask = _MASK.get()
            if (mask is None or hidden.device.type != "cpu" or final_logit_softcapping is not None
                    or not set(outputs) <= SUPPORTED_OUTPUTS or mask.numel() != hidden.size(0)):
                return original.apply(hidden, weight, bias, targets, temperature, chunk_size,
                                      final_logit_softcapping, logit_scale, outputs)
            logps, entropy = LogProbHead.apply(hidden[mask], weight, bias, targets[mask], logit_scale / temperature,
                                               "entropy" in outputs)
            expand = lambda x: None if x is None else x.new_zeros(mask.shape).masked_scatter(mask, x)  # noqa: E731
            return expand(logps), expand(entropy), None, None, None

    trl_utils._ChunkedLogProbFunction = Switch
