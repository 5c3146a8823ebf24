"""srl.training.lm_head: the CPU LM head gives TRL's kernel's log-probs, entropies and gradients.

The shared-prefix equality tests (tests/test_shared_prefix.py) run it against TRL's layout on tiny models whose
vocabulary fits one tile; here the vocabulary spans several tiles (the last one partial), the positions several
chunks (some kept, some recomputed in the backward), with temperature, logit scale, bias and an entropy gradient.
"""

import pytest
import torch
from trl.kernels import ChunkedLogProbFunction

from srl.training import lm_head
from srl.training.lm_head import LogProbHead, cpu_lm_head

N, H, V = 45, 24, 5000  # 5,000 tokens: tiles of 2,048, 2,048 and 904


def inputs(seed=0, bias=False):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(N, H, generator=g)
    weight = torch.randn(V, H, generator=g) * 0.7  # peaked distributions: log-probs from -30 to ~0
    b = torch.randn(V, generator=g) if bias else None
    targets = torch.randint(0, V, (N,), generator=g)
    targets[:3] = torch.tensor([0, 2047, V - 1])  # first, tile edge, last token
    return hidden, weight, b, targets, torch.randn(N, generator=g), torch.randn(N, generator=g)


def run(kernel, hidden, weight, bias, targets, g, ge, temperature, logit_scale, entropy_grad):
    hidden, weight = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
    bias = bias.clone().requires_grad_() if bias is not None else None
    if kernel == "trl":
        logps, entropy, *_ = ChunkedLogProbFunction.apply(hidden, weight, bias, targets, temperature, 32768, None,
                                                          logit_scale, ("log_probs", "entropy"))
    else:
        logps, entropy = LogProbHead.apply(hidden, weight, bias, targets, logit_scale / temperature, True)
    loss = (logps * g).sum() + ((entropy * ge).sum() if entropy_grad else 0)
    loss.backward()
    return {"log-probs": logps.detach(), "entropy": entropy.detach(), "hidden grad": hidden.grad,
            "weight grad": weight.grad, **({"bias grad": bias.grad} if bias is not None else {})}


@pytest.mark.parametrize("temperature,logit_scale,bias,entropy_grad", [
    (1.0, 1.0, False, False), (0.7, 1.0, False, True), (1.3, 0.5, True, True), (0.7, 2.0, True, False)])
def test_values_and_gradients_equal_trl_s_kernel(monkeypatch, temperature, logit_scale, bias, entropy_grad):
    monkeypatch.setattr(lm_head, "POSITION_CHUNK", 16)  # chunks of 16, 16 and 13 positions
    monkeypatch.setattr(lm_head, "SAVE_LIMIT_BYTES", 20 * V * 4)  # the first chunk's logits kept, the rest recomputed
    x = inputs(bias=bias)
    theirs = run("trl", *x, temperature, logit_scale, entropy_grad)
    ours = run("srl", *x, temperature, logit_scale, entropy_grad)
    assert float(theirs["log-probs"].min()) < -10  # peaked: the test covers very unlikely targets
    for name, t in theirs.items():
        assert t.abs().max() > 0, name
        err = float((ours[name] - t).abs().max() / t.abs().max())
        assert err < 2e-5, f"{name}: {err:.1e}"


def test_bf16_autocast_stays_within_tolerance_of_trl_s_kernel():
    """Under bf16 autocast (the CPU bf16 path) both kernels project in bf16 and accumulate gradients in float32."""
    x = inputs()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        theirs = run("trl", *x, 1.0, 1.0, False)
        ours = run("srl", *x, 1.0, 1.0, False)
    for name, t in theirs.items():
        assert ours[name].dtype == t.dtype, name
        err = float((ours[name].float() - t.float()).norm() / t.float().norm())
        assert err < 1e-2, f"{name}: {err:.1e}"


def test_the_switch_scores_only_labelled_positions_and_leaves_the_rest_to_trl(monkeypatch):
    """Inside `cpu_lm_head(mask)` TRL's fused forward gets the CPU head, fed only the masked positions (zeros
    elsewhere, as TRL's); softcapping and extra outputs go to TRL's kernel; outside, TRL's kernel runs."""
    from trl.trainer import utils as trl_utils

    hidden, weight, _, targets, *_ = inputs()
    mask = torch.ones(N, dtype=torch.bool)
    mask[::3] = False
    seen = []
    real_apply = LogProbHead.apply
    monkeypatch.setattr(LogProbHead, "apply", lambda h, *a: seen.append(h.size(0)) or real_apply(h, *a))
    reference = ChunkedLogProbFunction.apply(hidden, weight, None, targets, 1.0, 32768, None, 1.0,
                                             ("log_probs", "entropy"))
    with cpu_lm_head(mask.view(5, 9)):
        kernel = trl_utils._ChunkedLogProbFunction
        logps, entropy, *rest = kernel.apply(hidden, weight, None, targets, 1.0, 32768, None, 1.0,
                                             ("log_probs", "entropy"))
        assert seen == [int(mask.sum())] and rest == [None, None, None]
        assert torch.allclose(logps[mask], reference[0][mask], atol=1e-5) and (logps[~mask] == 0).all()
        assert torch.allclose(entropy[mask], reference[1][mask], atol=1e-5) and (entropy[~mask] == 0).all()
        kernel.apply(hidden, weight, None, targets, 1.0, 32768, 30.0, 1.0, ("log_probs",))  # softcapping
        kernel.apply(hidden, weight, None, targets, 1.0, 32768, None, 1.0, ("log_probs", "is_top1"))
        assert len(seen) == 1  # both went to TRL's kernel
    kernel.apply(hidden, weight, None, targets, 1.0, 32768, None, 1.0, ("log_probs",))  # outside: TRL's
    assert len(seen) == 1


def test_a_second_backward_through_the_graph_says_why_it_cannot():
    hidden, weight, _, targets, g, _ = inputs()
    hidden.requires_grad_()
    logps, _ = LogProbHead.apply(hidden, weight, None, targets, 1.0, False)
    (logps * g).sum().backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="second backward"):
        (logps * g).sum().backward()
