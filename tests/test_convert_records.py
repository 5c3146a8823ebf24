"""scripts/convert_records.py on the committed records of the old experiment runners: `srl compare`'s report of a
converted record gives the numbers of the old tables (accuracies, intervals, McNemar counts and p-values, step
rewards, training totals), and the committed runs/ are what the converter writes."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil

import pytest

from srl.experiments import recorded_runs
from srl.experiments.report import build, markdown

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "docs", "results")


@pytest.fixture(scope="module")
def convert():
    spec = importlib.util.spec_from_file_location("convert_records", os.path.join(ROOT, "scripts", "convert_records.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def converted(convert, name: str, tmp_path) -> list[dict]:
    folder = tmp_path / name
    shutil.copytree(os.path.join(RESULTS, name, "source"), folder / "source")
    convert.convert(str(folder))
    return recorded_runs(str(folder))


def test_gsm8k_table_b_renders_the_old_numbers(convert, tmp_path):
    old = json.load(open(os.path.join(RESULTS, "gsm8k_table_b", "source", "results.json"), encoding="utf-8"))
    records = converted(convert, "gsm8k_table_b", tmp_path)
    results = build(records, list(old["rows"]))
    for name, row in old["rows"].items():
        m = results["methods"][name]
        assert m["evaluations"]["gsm8k"]["ci95"] == pytest.approx(row["gsm8k_greedy_wilson95"])
        assert m["evaluations"]["math500"]["ci95"] == pytest.approx(row["math500_greedy_wilson95"])
        assert m["evaluations"]["gsm8k_avg4"]["mean"] == row["gsm8k_avg@4"]
        assert m["step_objective"]["ci95"] == row["step_objective"]["mean_reward_ci95"]
        assert m["evaluations"]["gsm8k"]["answer_rate"] == row["gsm8k_answer_rate"]
        training = row["training"] or {"rollouts": None, "generated_tokens": None}
        assert (m["training"]["rollouts"] or None, m["training"]["generated_tokens"] or None) == \
            (training["rollouts"] or None, training["generated_tokens"] or None)
    pairs = {(p["a"], p["b"]): p for p in results["pairs"]}
    assert len(pairs) == len(old["comparisons"]) == 10
    for p in old["comparisons"]:
        new = pairs[(p["a"], p["b"])]
        assert new["evaluations"]["gsm8k"] == p["gsm8k_greedy"]  # McNemar: counts, difference, p
        assert new["step_reward"] == p["step_reward"]
        assert new["evaluations"]["math500"] == {}  # no per-problem values in the old record: no paired test
    table = markdown(results)
    assert "| SFT | RLVR | 15 / 5, +2.0, p=0.0414 |" in table and "3.4 [2.1, 5.4]" in table


def test_mechanism_seeds_render_the_old_t_intervals(convert, tmp_path):
    old = json.load(open(os.path.join(RESULTS, "mechanism", "source", "summary.json"), encoding="utf-8"))["table"]
    records = converted(convert, "mechanism", tmp_path)
    results = build(records, list(old))
    for method, row in old.items():
        m = results["methods"][method]
        for split in ("test", "hard"):
            cell = m["evaluations"][split]
            assert cell["mean"] == pytest.approx(row[split]["mean"])
            if method == "base":
                assert cell["ci95"] == pytest.approx(row[split]["ci95"])  # Wilson
            else:
                assert cell["per_seed"] == row[split]["per_seed"]
                assert cell["ci95"][1] - cell["mean"] == pytest.approx(row[split]["t95_half"])  # t over seeds
            assert cell["answer_rate"] == pytest.approx(row["answer_rate"][split])
        assert m["step_objective"]["mean_reward"] == pytest.approx(row["steps"]["step_reward"])
        assert m["step_objective"]["exact_match"] == row["steps"]["mean"]
        for key in ("rollouts", "generated_tokens", "zero_spread_fraction", "train_seconds"):
            assert (m["training"][key] or None) == pytest.approx(row.get(key) or None), (method, key)
    assert results["methods"]["base"]["step_objective"]["ci95"] is None  # no per-instance step rewards
    pair = next(p for p in results["pairs"] if (p["a"], p["b"]) == ("base", "sft"))["evaluations"]["test"]
    assert "a_only" not in pair and pair["seed_difference"]["mean"] == pytest.approx(0.015 - 0.045)
    assert "no per-problem values; seeds -3.0 [-4.2, -1.8]" in markdown(results)


@pytest.mark.parametrize("name", ["gsm8k_table_b", "mechanism", "mechanism_srl120"])
def test_committed_runs_are_the_converters_output(convert, tmp_path, name):
    fresh = converted(convert, name, tmp_path)
    committed = recorded_runs(os.path.join(RESULTS, name))
    for rec in fresh + committed:
        rec["settings"].pop("converted")
    assert fresh == committed
