"""SRLTrainer on a tiny local model: dynamic sampling (no zero-std group is trained on, refills happen, the
round cap holds), the metrics it logs, and that SRL learns on the synthetic task."""

import logging
import random
import re

import pytest
import torch

from srl.training.config import SRLConfig
from srl.data.instances import InstanceOptions, to_dataset, trajectory_instances
from srl.rewards.format import OutputFormat
from srl.rewards import get_step_reward
from srl.tiny import synthetic_trajectories, tiny_model, tiny_tokenizer, warm_up
from srl.training.trainer import SRLTrainer

FMT = OutputFormat(think="off")


def rows(n=32):
    return [r for t in synthetic_trajectories(n) for r in trajectory_instances(t, InstanceOptions(think="off"))]


class Recording(SRLTrainer):
    """Keeps every training batch that SRLTrainer hands to TRL's loss."""

    def _generate_and_score_completions(self, inputs):
        out = super()._generate_and_score_completions(inputs)
        if self.model.training:
            self.batches.append(out)
        return out


def make_trainer(tmp_path, reward, model=None, tokenizer=None, **overrides):
    tokenizer = tokenizer or tiny_tokenizer()
    model = model or tiny_model(tokenizer)
    settings = dict(output_dir=str(tmp_path), use_cpu=True, bf16=False, per_device_train_batch_size=8,
                    num_generations=4, max_completion_length=8, max_steps=3, learning_rate=1e-3,
                    save_strategy="no", seed=0, dataloader_pin_memory=False, disable_tqdm=True, logging_steps=1)
    settings.update(overrides)
    trainer = Recording(model=model, reward_funcs=[reward], args=SRLConfig(**settings),
                        train_dataset=to_dataset(rows()), processing_class=tokenizer, output_format=FMT)
    trainer.batches = []
    return trainer


def start_value(prompt: str) -> int:
    return int(re.search(r"Start at (\d+)", prompt).group(1))


def parity_reward(completions, prompts, **kwargs):
    """Constant (uninformative) for problems starting at an even number, varying for odd ones."""
    rng = random.Random(len(completions))
    return [0.5 if start_value(p[-1]["content"]) % 2 == 0 else rng.random() for p in prompts]


def logged(trainer, key):
    return [h[key] for h in trainer.state.log_history if key in h]


def test_no_zero_std_group_is_trained_on_and_refills_happen(tmp_path):
    trainer = make_trainer(tmp_path, parity_reward, max_generation_rounds=20, max_steps=4)
    trainer.train()
    tok = trainer.processing_class
    assert len(trainer.batches) == 4
    for batch in trainer.batches:
        assert batch["prompt_ids"].shape[0] == 8  # the batch stays full: 2 prompts x G=4
        prompts = tok.batch_decode(batch["prompt_ids"], skip_special_tokens=True)
        assert all(start_value(p) % 2 == 1 for p in prompts), "a zero-std group reached the loss"
        assert batch["tool_mask"].all()
        assert int(batch["num_items_in_batch"]) == int((batch["completion_mask"] * batch["tool_mask"]).sum())
        for group in batch["advantages"].view(-1, 4):
            assert group.abs().sum() > 0
    assert max(logged(trainer, "dynamic_sampling/rounds")) > 1  # refills happened
    assert max(logged(trainer, "dynamic_sampling/filtered_fraction")) > 0
    assert logged(trainer, "dynamic_sampling/cap_hit") == [0.0] * 4
    assert trainer._refill_drawn > 0


def test_round_cap_holds_and_is_logged(tmp_path, caplog):
    constant = lambda completions, **kw: [0.25] * len(completions)  # noqa: E731
    trainer = make_trainer(tmp_path, constant, max_generation_rounds=2, max_steps=2)
    with caplog.at_level(logging.WARNING, logger="srl"):
        trainer.train()
    assert logged(trainer, "dynamic_sampling/rounds") == [2.0, 2.0]
    assert logged(trainer, "dynamic_sampling/cap_hit") == [1.0, 1.0]
    assert logged(trainer, "dynamic_sampling/filtered_fraction") == [1.0, 1.0]
    assert "only 0 of 2 groups informative after 2 rounds" in caplog.text
    for batch in trainer.batches:
        assert batch["prompt_ids"].shape[0] == 8
        assert not batch["tool_mask"].any() and int(batch["num_items_in_batch"]) == 0  # nothing trained on


def test_dynamic_sampling_off_trains_on_everything(tmp_path):
    trainer = make_trainer(tmp_path, parity_reward, dynamic_sampling=False, max_steps=2)
    trainer.train()
    assert logged(trainer, "dynamic_sampling/rounds") == [1.0, 1.0]
    assert "tool_mask" not in trainer.batches[0]  # TRL's own batch, untouched


def test_logs_format_rate_reward_by_step_and_speed(tmp_path):
    trainer = make_trainer(tmp_path, get_step_reward(FMT), max_steps=2)
    trainer.train()
    last = trainer.state.log_history[-2]
    assert 0.0 <= last["format_error_rate"] <= 1.0
    assert last["tokens_per_second"] > 0
    assert any(k.startswith("reward_by_step/") for k in last)
    assert "reward" in last and "reward_std" in last


@pytest.mark.slow  # trains until the reward rises
def test_srl_learns_on_the_synthetic_task(tmp_path):
    """Fixed seed: the mean step reward of the last fifth of a short run exceeds the first fifth's. The tiny
    model is first warmed up for 20 supervised steps so it writes step-shaped text (think="off" format)."""
    tokenizer = tiny_tokenizer()
    model = tiny_model(tokenizer)
    warm_up(model, tokenizer, rows(), steps=20, seed=0)
    steps = 30
    trainer = make_trainer(tmp_path, get_step_reward(FMT), model=model, tokenizer=tokenizer, max_steps=steps,
                           max_completion_length=10, learning_rate=1e-3)
    trainer.train()
    rewards = logged(trainer, "reward")
    assert len(rewards) == steps
    fifth = steps // 5
    first, last = sum(rewards[:fifth]) / fifth, sum(rewards[-fifth:]) / fifth
    print(f"mean step reward: first fifth {first:.3f}, last fifth {last:.3f}")
    assert last > first


def test_think_budget_forces_close_tag_and_masks_it(tmp_path):
    fmt = OutputFormat(think="optional")
    trainer = make_trainer(tmp_path, get_step_reward(fmt), max_steps=1, max_completion_length=12, think_budget=4,
                           dynamic_sampling=False)
    trainer.output_format = fmt
    trainer.train()
    tok = trainer.processing_class
    close = tok.encode("</think>\n", add_special_tokens=False)
    (batch,) = trainer.batches
    forced_rows = 0
    for ids, mask, loss_mask in zip(batch["completion_ids"].tolist(), batch["completion_mask"].tolist(),
                                    batch["tool_mask"].tolist()):
        n = sum(mask)
        if loss_mask[:n].count(0) == 0:  # finished (EOS) within the budget: nothing forced
            assert n <= 4
            continue
        forced_rows += 1
        assert ids[4:4 + len(close)] == close  # forced right after the budget
        assert loss_mask[:n] == [1] * 4 + [0] * len(close) + [1] * (n - 4 - len(close))
        assert n <= 12
    assert forced_rows > 0
    assert logged(trainer, "think_budget/forced_fraction")[0] == forced_rows / 8


def test_think_prefill_appends_the_open_tag_to_prompts(tmp_path):
    fmt = OutputFormat(think="required", think_prefilled=True)
    trainer = make_trainer(tmp_path, get_step_reward(fmt), max_steps=1, dynamic_sampling=False)
    trainer.output_format = fmt
    trainer.train()
    text = trainer.processing_class.decode(trainer.batches[0]["prompt_ids"][0])
    assert text.endswith("<|im_start|>assistant\n<think>\n")
