"""Shared prefixes (issue 11): SRLTrainer's log-probs with each distinct prompt forwarded once equal TRL's layout
(every row forwarding its own copy of the prompt): the loss, every parameter's gradient, the logged metrics (entropy,
clip ratios, KL, the top-entropy mask), the reference and old log-probs; on tiny Llama and Qwen2 models built
locally, with left-padded prompts of different lengths, completions that stop early, TRL's `tool_mask`, LoRA and
full fine-tuning; and a whole training step (gradient accumulation, dynamic sampling over several rounds, the
group shuffle) gives the same gradients with --shared_prefix true and false."""

import logging
import os
import re

import pytest
import torch
from transformers import TrainerCallback

from srl.data.instances import InstanceOptions, to_dataset, trajectory_instances
from srl.rewards.format import OutputFormat
from srl.tiny import synthetic_trajectories, tiny_model, tiny_tokenizer
from srl.training.config import SRLConfig
from srl.generation.shared_prefill import prompt_runs
from srl.training.trainer import SRLTrainer

FMT = OutputFormat(think="off")
LOGP_ATOL = 5e-6
GRAD_RTOL = 2e-5  # per parameter, relative to the norm of TRL's gradient


def rows(n=24):
    return [r for t in synthetic_trajectories(n) for r in trajectory_instances(t, InstanceOptions(think="off"))]


def tiny_qwen2(tokenizer, hidden_size=64, seed=0):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False,
                         max_position_embeddings=2048, pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.eos_token_id, bos_token_id=None)
    return Qwen2ForCausalLM(config)


def constant_reward(completions, **kwargs):
    return [0.0] * len(completions)


def make_trainer(tmp_path, arch="llama", peft=False, reward=constant_reward, trainer_class=SRLTrainer, **overrides):
    tok = tiny_tokenizer()
    model = tiny_model(tok) if arch == "llama" else tiny_qwen2(tok)
    settings = dict(output_dir=str(tmp_path), use_cpu=True, bf16=False, per_device_train_batch_size=8,
                    num_generations=4, max_completion_length=8, max_steps=1, learning_rate=1e-3, save_strategy="no",
                    seed=0, dataloader_pin_memory=False, disable_tqdm=True, report_to="none", temperature=0.7,
                    beta=0.04, top_entropy_quantile=0.5)
    settings.update(overrides)
    if not peft and settings["beta"]:  # TRL loads the reference model from the model's name: save it there
        model.save_pretrained(os.path.join(tmp_path, "model"))
        model.config._name_or_path = os.path.join(tmp_path, "model")
    peft_config = None
    if peft:
        from peft import LoraConfig

        peft_config = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM",
                                 init_lora_weights=False)  # B != 0: every adapter matrix gets a gradient
    return trainer_class(model=model, reward_funcs=[reward], args=SRLConfig(**settings),
                         train_dataset=to_dataset(rows()), processing_class=tok, peft_config=peft_config,
                         output_format=FMT)


def batch(trainer, seed=0, groups=(4, 4, 1, 3), prompt_lengths=(9, 17, 5, 12), width=8):
    """A batch as TRL's loss receives it: runs of rows sharing a left-padded prompt (different lengths), right-
    padded completions that stop early, a tool mask with forced tokens, advantages, old and reference log-probs."""
    g = torch.Generator().manual_seed(seed)
    vocab, pad = len(trainer.processing_class), trainer.processing_class.pad_token_id
    P, B = max(prompt_lengths), sum(groups)
    prompt_ids, prompt_mask = torch.full((B, P), pad), torch.zeros(B, P, dtype=torch.long)
    row = 0
    for n, length in zip(groups, prompt_lengths):
        prompt = torch.randint(3, vocab, (length,), generator=g)
        for _ in range(n):
            prompt_ids[row, P - length:], prompt_mask[row, P - length:] = prompt, 1
            row += 1
    completion_ids = torch.randint(3, vocab, (B, width), generator=g)
    completion_mask = torch.ones(B, width, dtype=torch.long)
    for r in range(B):
        stop = int(torch.randint(1, width + 1, (1,), generator=g))
        completion_mask[r, stop:], completion_ids[r, stop:] = 0, pad
    tool_mask = torch.ones_like(completion_mask)
    tool_mask[1, 1:3] = 0  # think-budget tokens: in context, out of the loss
    with torch.no_grad():
        trainer.args.shared_prefix = False
        ids, mask = torch.cat([prompt_ids, completion_ids], 1), torch.cat([prompt_mask, completion_mask], 1)
        logps, _, _ = trainer._get_per_token_logps_and_entropies(trainer.model, ids, mask, width)
    noise = 0.05 * torch.randn(B, width, generator=g)
    return {"prompt_ids": prompt_ids, "prompt_mask": prompt_mask, "completion_ids": completion_ids,
            "completion_mask": completion_mask, "tool_mask": tool_mask,
            "advantages": torch.randn(B, generator=g), "old_per_token_logps": logps + noise,
            "ref_per_token_logps": logps - noise, "num_items_in_batch": (completion_mask * tool_mask).sum()}


def loss_gradients_metrics(trainer, inputs, shared: bool):
    trainer.args.shared_prefix = shared
    trainer.model.zero_grad()
    trainer._metrics["train"].clear()
    loss = trainer._compute_loss(trainer.model, inputs)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    metrics = {k: list(v) for k, v in trainer._metrics["train"].items()}
    return loss.detach(), grads, metrics


def assert_same_gradients(theirs: dict, ours: dict):
    assert theirs.keys() == ours.keys() and theirs
    for name, g in theirs.items():
        assert g.norm() > 0, f"{name}: no gradient in TRL's layout; the test would prove nothing"
        assert (ours[name] - g).norm() <= GRAD_RTOL * g.norm(), \
            f"{name}: relative gradient error {float((ours[name] - g).norm() / g.norm()):.2e}"


@pytest.mark.parametrize("arch,peft", [("llama", False), ("llama", True), ("qwen2", False), ("qwen2", True)])
def test_loss_gradients_and_metrics_equal_trl_s_layout(tmp_path, arch, peft):
    trainer = make_trainer(tmp_path, arch=arch, peft=peft)
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1  # set by transformers' training loop, read by TRL's loss
    inputs = batch(trainer)
    loss_t, grads_t, metrics_t = loss_gradients_metrics(trainer, inputs, shared=False)
    loss_s, grads_s, metrics_s = loss_gradients_metrics(trainer, inputs, shared=True)
    assert torch.allclose(loss_s, loss_t, rtol=1e-5, atol=1e-7), (float(loss_s), float(loss_t))
    assert_same_gradients(grads_t, grads_s)
    assert metrics_t.keys() == metrics_s.keys() and {"entropy", "kl"} <= metrics_t.keys()
    assert any(k.startswith("clip_ratio") for k in metrics_t)
    for key in metrics_t:
        assert metrics_s[key] == pytest.approx(metrics_t[key], rel=1e-4, abs=1e-6), key


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_the_loss_attends_to_grouped_query_heads_without_copying_the_cache(tmp_path, monkeypatch, arch):
    """Both tiny models have 4 query heads over 2 key/value heads: TRL's layout copies every layer's K and V to 4
    heads (transformers' `repeat_kv`, with a mask); the shared-prefix loss hands the grouped heads to torch (on a
    CPU), forward and backward, with the values and gradients the test above checks."""
    from transformers.integrations import sdpa_attention

    trainer = make_trainer(tmp_path, arch=arch)
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1
    inputs = batch(trainer)
    copies = []
    original = sdpa_attention.repeat_kv
    monkeypatch.setattr(sdpa_attention, "repeat_kv", lambda h, n: copies.append(n) or original(h, n))
    loss_gradients_metrics(trainer, inputs, shared=False)
    assert copies and set(copies) == {2}  # TRL's layout: one copy of K and one of V per layer and forward
    copies.clear()
    loss_gradients_metrics(trainer, inputs, shared=True)
    assert copies == []


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_reference_and_old_log_probs_equal_trl_s_layout_in_chunks(tmp_path, arch):
    """Without gradient, in chunks of `batch_size` rows (a run of 4 rows cut in 3 + 1), as TRL computes the old
    log-probs and the reference model's (here LoRA's base model, adapters off) for a generation batch."""
    trainer = make_trainer(tmp_path, arch=arch, peft=True)
    inputs = batch(trainer, seed=1)
    ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], 1)
    mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], 1)
    width = inputs["completion_ids"].size(1)
    out = {}
    for shared in (False, True):
        trainer.args.shared_prefix = shared
        with torch.no_grad(), trainer.model.disable_adapter():
            ref = trainer._get_per_token_logps_and_entropies(trainer.model, ids, mask, width, batch_size=3)[0]
        with torch.no_grad():
            old, entropy, _ = trainer._get_per_token_logps_and_entropies(trainer.model, ids, mask, width,
                                                                         batch_size=3, compute_entropy=True)
        out[shared] = (ref, old, entropy)
    for theirs, ours in zip(out[False], out[True]):
        assert theirs.shape == ours.shape
        assert torch.allclose(ours, theirs, atol=LOGP_ATOL, rtol=0), float((ours - theirs).abs().max())
        assert bool((ours[inputs["completion_mask"] == 0] == 0).all())  # zero on padding, as TRL's


def test_it_falls_back_to_trl_s_layout_and_says_why_once(tmp_path, caplog):
    trainer = make_trainer(tmp_path)
    inputs = batch(trainer, groups=(1, 1, 1, 1))  # no two rows share a prompt: nothing to share
    ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], 1)
    mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], 1)
    trainer.args.shared_prefix = True
    with caplog.at_level(logging.WARNING, logger="srl"), torch.no_grad():
        for _ in range(2):
            trainer._get_per_token_logps_and_entropies(trainer.model, ids, mask, 8)
    said = [r.getMessage() for r in caplog.records if "shared prefix" in r.getMessage()]
    assert len(said) == 1 and "no consecutive rows share a prompt" in said[0], said
    runs = prompt_runs(inputs["prompt_ids"], inputs["prompt_mask"])
    assert "multimodal" in trainer._shared_prefix_unavailable(trainer.model, inputs["prompt_mask"], runs, False,
                                                               {"pixel_values": torch.zeros(1)})
    trainer.model.config.sliding_window = 16  # Mistral-style: a sliding layer's cache would drop early keys
    assert "sliding-window" in trainer._shared_prefix_unavailable(trainer.model, inputs["prompt_mask"], [(0, 2)],
                                                                  False, {})
    trainer.model.config.sliding_window = None
    trainer.model.gradient_checkpointing_enable()
    assert "gradient checkpointing" in trainer._shared_prefix_unavailable(trainer.model, inputs["prompt_mask"],
                                                                          [(0, 2)], False, {})


# ----------------------------------------------------------------------------------------------------------------
# A whole training step: the same rollouts (a deterministic stand-in for generation), both layouts.

def start_value(prompt: str) -> int:
    return int(re.search(r"Start at (\d+)", prompt).group(1))


def parity_reward(completions, prompts, **kwargs):
    """Constant (uninformative: dropped by dynamic sampling) for even starts; varies with the completion else."""
    return [0.5 if start_value(p[-1]["content"]) % 2 == 0 else (len(str(c)) % 7) / 7
            for p, c in zip(prompts, completions)]


class FixedRollouts(SRLTrainer):
    """Deterministic completions (a function of the prompt and the row), so both layouts train on the same
    rollouts; records the micro-batches the loss receives."""

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        eos, vocab, width = self.eos_token_ids[0], len(self.processing_class), self.max_completion_length
        out = []
        for i, ids in enumerate(prompt_ids):
            seed = sum(ids) + 31 * (i % num_generations)
            length = 1 + seed % width
            tokens = [3 + (seed * 7 + 13 * k) % (vocab - 3) for k in range(length)]
            out.append(tokens if length == width else tokens[:-1] + [eos])
        return out, None

    def _compute_loss(self, model, inputs):
        self.micro_batches.append(prompt_runs(inputs["prompt_ids"], inputs["prompt_mask"]))
        return super()._compute_loss(model, inputs)


class GradientsBeforeTheStep(TrainerCallback):
    def __init__(self):
        self.grads = []

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        self.grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})


def train_one_step(tmp_path, shared: bool, peft: bool):
    trainer = make_trainer(tmp_path / str(shared), peft=peft, reward=parity_reward, trainer_class=FixedRollouts,
                           shared_prefix=shared, gradient_accumulation_steps=2, max_generation_rounds=6,
                           max_grad_norm=1e9, top_entropy_quantile=1.0)  # TRL takes the quantile per micro-batch
    trainer.micro_batches = []
    callback = GradientsBeforeTheStep()
    trainer.add_callback(callback)
    trainer.train()
    rounds = [h["dynamic_sampling/rounds"] for h in trainer.state.log_history if "dynamic_sampling/rounds" in h]
    return callback.grads, trainer.micro_batches, rounds


@pytest.mark.parametrize("peft", [False, True])
def test_a_training_step_gives_trl_s_gradients(tmp_path, peft, monkeypatch):
    """Gradient accumulation over 2 micro-batches of a 16-row generation batch (4 groups of G=4), assembled by
    dynamic sampling from several rounds; with --shared_prefix each micro-batch holds 2 whole groups."""
    import srl.training.trainer as trainer_module

    calls = []
    shared = trainer_module.shared_prefix_logps
    monkeypatch.setattr(trainer_module, "shared_prefix_logps", lambda *a, **k: calls.append(1) or shared(*a, **k))
    grads_t, micro_t, rounds_t = train_one_step(tmp_path, False, peft)
    assert not calls
    grads_s, micro_s, rounds_s = train_one_step(tmp_path, True, peft)
    # the loss of each micro-batch, and the reference model's log-probs in each generation round
    assert len(calls) == 2 + rounds_s[0]
    assert rounds_t == rounds_s and rounds_s[0] > 1, (rounds_t, rounds_s)  # dynamic sampling refilled
    assert len(grads_t) == len(grads_s) == 1
    assert_same_gradients(grads_t[0], grads_s[0])
    assert len(micro_s) == 2 and all(len(runs) == 2 and all(e - s == 4 for s, e in runs) for runs in micro_s), micro_s
    assert any(len(runs) > 2 for runs in micro_t)  # TRL's row shuffle splits groups across micro-batches


@pytest.mark.parametrize("shared", [True, False])
def test_hf_rollouts_prefill_each_prompt_once(tmp_path, monkeypatch, shared):
    """The trainer's hf backend generates through srl.generation.shared_prefill with --shared_prefix (TRL's
    RepeatSampler gives each prompt's G rows consecutively), through `generate` without it."""
    import srl.generation.shared_prefill as module

    calls = []
    generate_shared = module.generate_shared
    monkeypatch.setattr(module, "generate_shared", lambda m, p, *a, **k: calls.append(len(p)) or generate_shared(
        m, p, *a, **k))
    trainer = make_trainer(tmp_path, reward=parity_reward, shared_prefix=shared, beta=0.0, max_generation_rounds=2)
    trainer.train()
    assert calls == ([8] * len(calls) if shared else []) and (calls or not shared)  # 8-row generation batches


def test_on_by_default_in_every_preset_and_stage():
    """`make demo`, the presets and `srl compare` build their configs with stage_arguments: the default
    holds there; `--shared_prefix false` turns it off."""
    from srl.training.presets import stage_arguments

    for stage, flags in [("srl", []), ("srl", ["--preset", "cpu-small"]), ("srl", ["--preset", "paper"]),
                         ("rlvr", ["--preset", "cpu-small"])]:
        assert stage_arguments(stage, flags + ["--use_cpu", "true"])[1].shared_prefix is True, (stage, flags)
    assert stage_arguments("srl", ["--shared_prefix", "false", "--use_cpu", "true"])[1].shared_prefix is False
