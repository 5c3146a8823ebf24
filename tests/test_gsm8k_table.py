"""The GSM8K table (benchmarks/gsm8k_table.py + recipes/compare_gsm8k.yaml): its training problems and its
`srl compare` settings, which are those of docs/results/gsm8k_table_b (issue 13 B); both recipes' stage options
and evaluations parse as `srl train` and `srl eval` options."""

import json
import os
import random
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUNDLED = os.path.join(ROOT, "src", "srl", "data", "gsm8k_train_sample.jsonl")
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import gsm8k_table  # noqa: E402

from srl.cli.compare import config_from_argv  # noqa: E402


def recipe(name):
    return config_from_argv(["--config", os.path.join(ROOT, "recipes", f"compare_{name}.yaml")])


def test_training_problems_are_the_old_tables_seeded_subset(tmp_path):
    path = gsm8k_table.training_problems(BUNDLED, str(tmp_path / "a.jsonl"), problems=25, seed=3)
    with open(BUNDLED, encoding="utf-8") as f:
        lines = [json.loads(line) for line in f if line.strip()]
    order = list(range(len(lines)))
    random.Random(3).shuffle(order)  # the old script's split: validation order[:v], train order[v:v + n]
    rows = [json.loads(line) for line in open(path, encoding="utf-8")]
    assert rows == [lines[i] for i in order[:25]]
    again = gsm8k_table.training_problems(BUNDLED, str(tmp_path / "b.jsonl"), problems=25, seed=3)
    assert open(again, encoding="utf-8").read() == open(path, encoding="utf-8").read()


def test_recipe_has_the_settings_of_table_b():
    old = json.load(open(os.path.join(ROOT, "docs", "results", "gsm8k_table_b", "source", "results.json"),
                         encoding="utf-8"))["settings"]
    cfg = recipe("gsm8k")
    assert cfg.methods == old["rows"].split(",") and cfg.seeds == [old["seed"]]
    assert (cfg.budget_unit, cfg.budget, cfg.sft_budget_unit, cfg.sft_budget) == ("steps", old["rl_steps"], "steps",
                                                                                   old["sft_steps"])
    assert (cfg.validation_problems, cfg.validation_limit) == (old["validation_problems"],
                                                               old["validation_eval_problems"])
    srl, rlvr = cfg.plan("srl_rlvr")
    assert (srl["budget"]["amount"], rlvr["budget"]["amount"]) == (20, 20)
    for stage in (srl, rlvr):
        o = stage["options"]
        assert o["learning_rate"] == old[f"{stage['stage']}_lr"] and o["num_generations"] == old["G"]
        rollouts = o["per_device_train_batch_size"] * o.get("gradient_accumulation_steps", 1)
        assert rollouts == old["G"] * old["prompts_per_step"] and o["backend"] == old["backend"]
    assert srl["options"]["max_completion_length"] == old["srl_max_completion_length"]
    assert srl["options"]["think"] == old["think"]
    assert rlvr["options"]["max_completion_length"] == old["max_new_tokens"]
    assert rlvr["options"]["steps_per_generation"] == old["micro_batches"]
    assert cfg.plan("sft")[0]["options"]["learning_rate"] == old["sft_lr"]
    evals = {e["name"]: e for e in cfg.evaluations}
    assert evals["gsm8k"]["limit"] == old["test_problems"]
    assert (evals["gsm8k_avg4"]["limit"], evals["gsm8k_avg4"]["k"], evals["gsm8k_avg4"]["temperature"]) == \
        (old["k_problems"], old["k"], old["temperature"])
    assert (evals["math500"]["limit"], evals["math500"]["max_new_tokens"]) == (old["math_problems"],
                                                                                old["math_max_new_tokens"])
    assert cfg.eval_options["max_new_tokens"] == old["max_new_tokens"]
    assert (cfg.step_eval["data"], cfg.step_eval["limit"], cfg.step_eval["max_new_tokens"]) == \
        ("gsm8k", old["step_problems"], old["srl_max_completion_length"])


@pytest.mark.parametrize("name", ["gsm8k", "mechanism"])
def test_recipe_options_parse_as_srl_train_and_srl_eval(name, tmp_path):
    from srl.evaluation import EvalConfig
    from srl.training.presets import stage_arguments

    cfg = recipe(name)
    for method in cfg.methods:
        for p in cfg.plan(method):
            values = {**p["options"], "model": "tiny", "train_data": BUNDLED, "output_dir": str(tmp_path)}
            run, stage = stage_arguments(p["stage"], values=values)
            assert stage.learning_rate == p["options"]["learning_rate"]
    for e in cfg.evaluations:
        EvalConfig(**{**cfg.eval_options, **{k: v for k, v in e.items() if k != "name"}}, model="tiny")
