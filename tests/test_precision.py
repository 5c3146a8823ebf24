"""`srl.precision` (issue 25): which dtype a run computes in, decided from the measured table in
docs/benchmarks.md, and the CPU bf16 training path (fp32 weights under bf16 autocast) within a stated tolerance of
fp32, on a tiny model built locally."""

import pytest
import torch

from srl.precision import MEASURED, choose, cpu_bf16_units, training_line, training_weights_bf16
from test_shared_prefix import FixedRollouts, GradientsBeforeTheStep, make_trainer, parity_reward

# bf16 autocast against fp32, one training step of the tiny Llama. Observed (2026-12-06): the whole gradient 3.3e-3
# relative, the worst parameter 6.5e-3. The loss's value does not depend on the log-probs at TRL's first iteration
# (ratio exp(logp - logp.detach()) = 1): it is equal; its gradient carries the difference.
LOSS_RTOL = 1e-3
GRAD_RTOL = 0.015  # of the whole gradient's norm
PARAM_GRAD_RTOL = 0.03  # of each parameter's gradient norm


@pytest.mark.parametrize("flags,units,bf16", [
    ({"avx2", "amx_bf16", "amx_tile", "avx512_bf16"}, "amx", True),
    ({"avx2", "avx512f", "avx512_bf16"}, "avx512_bf16", True),
    ({"avx2", "avx512f"}, None, False),
    ({"avx2", "fma"}, None, False),
])
def test_auto_picks_bf16_only_on_cpus_with_native_bf16_matrix_units(flags, units, bf16):
    assert cpu_bf16_units(flags) == units
    chosen = choose("auto", cuda=False, flags=flags)
    assert chosen.bf16 is bf16
    assert MEASURED[units] in chosen.reason and "measured" in chosen.reason  # the reason cites the measurement
    assert chosen.line().startswith(f"dtype: {'bf16' if bf16 else 'fp32'} (")


def test_an_explicit_dtype_wins_and_training_on_a_cpu_keeps_fp32_weights():
    assert choose("float32", flags={"amx_bf16"}).bf16 is False
    assert choose("bfloat16", flags={"avx2"}).bf16 is True
    assert training_weights_bf16(True, on_cpu=True) is False  # the master copy stays fp32; autocast computes
    assert training_weights_bf16(True, on_cpu=False) is True  # a GPU: as TRL's bf16 runs
    assert training_weights_bf16(False, on_cpu=False) is False
    auto = choose("auto", cuda=False)
    assert training_line(auto.bf16, on_cpu=True) == auto.line() + ("; fp32 weights under bf16 autocast"
                                                                    if auto.bf16 else "")
    assert "auto would pick" in training_line(not auto.bf16, on_cpu=True)


class Recorded(FixedRollouts):
    """Records each micro-batch's loss, the parameters' dtypes, and whether the decoder layers ran under autocast
    (in the loss's forwards)."""

    def _compute_loss(self, model, inputs):
        self.in_loss = True
        try:
            loss = super()._compute_loss(model, inputs)
        finally:
            self.in_loss = False
        self.losses.append(float(loss))
        self.dtypes |= {p.dtype for p in model.parameters()}
        return loss


def train_one_step(tmp_path, bf16: bool):
    trainer = make_trainer(tmp_path / str(bf16), reward=parity_reward, trainer_class=Recorded, bf16=bf16,
                           gradient_accumulation_steps=2, max_generation_rounds=6, max_grad_norm=1e9,
                           top_entropy_quantile=1.0, beta=0.0)
    trainer.losses, trainer.autocast, trainer.dtypes, trainer.micro_batches = [], [], set(), []
    trainer.in_loss = False
    layer = trainer.model.model.layers[0]
    layer.register_forward_pre_hook(
        lambda module, args: trainer.autocast.append(torch.is_autocast_enabled("cpu")) if trainer.in_loss else None)
    callback = GradientsBeforeTheStep()
    trainer.add_callback(callback)
    trainer.train()
    return trainer, callback.grads[0]


def test_bf16_training_on_a_cpu_stays_within_tolerance_of_fp32_and_fp32_is_untouched(tmp_path):
    """The same step (same rollouts, same micro-batches) in fp32 and under bf16 autocast: fp32 runs without
    autocast; bf16 computes under autocast with fp32 weights (and so fp32 gradients and optimizer state); its
    loss and gradients are within the tolerances above of fp32's."""
    fp32, grads32 = train_one_step(tmp_path, bf16=False)
    bf16, grads16 = train_one_step(tmp_path, bf16=True)
    assert fp32.autocast and not any(fp32.autocast)  # fp32: exactly the fp32 computation, no autocast anywhere
    assert bf16.autocast and all(bf16.autocast)
    assert fp32.dtypes == bf16.dtypes == {torch.float32}
    assert len(fp32.losses) == len(bf16.losses) == 2
    for a, b in zip(fp32.losses, bf16.losses):
        assert abs(b - a) <= LOSS_RTOL * max(abs(a), 1e-3), (a, b)
    assert grads32.keys() == grads16.keys()
    flat32 = torch.cat([g.flatten() for g in grads32.values()])
    flat16 = torch.cat([grads16[n].flatten() for n in grads32])
    assert flat16.dtype == torch.float32 and flat32.norm() > 0
    assert (flat16 - flat32).norm() <= GRAD_RTOL * flat32.norm(), float((flat16 - flat32).norm() / flat32.norm())
    for name, g in grads32.items():
        assert (grads16[name] - g).norm() <= PARAM_GRAD_RTOL * g.norm(), name
