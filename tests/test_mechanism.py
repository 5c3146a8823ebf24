"""The controlled experiment (benchmarks/mechanism.py): its task generator and the script end to end at a tiny
size."""

from __future__ import annotations

import json
import os
import random
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))

import mechanism  # noqa: E402
import mechanism_task as task  # noqa: E402

from srl.data.answers import extract_boxed  # noqa: E402
from srl.rewards import outcome_reward  # noqa: E402


@pytest.fixture(scope="module")
def splits():
    args = type("A", (), {"distractors": 0})()
    sizes = {"pretrain": 300, "train": 100, "validation": 30, "test": 60, "hard": 60}
    return task.make_splits(sizes, mechanism.levels(args), seed=3)


def test_expert_steps_are_exact_and_the_answer_checks(splits):
    for rows in splits.values():
        for i, r in enumerate(rows):
            assert int(r["answer"]) == task.solve(r["problem"])
            assert extract_boxed(r["steps"][-1]) == r["answer"]
            value = None
            for line in r["steps"][:-1]:  # each line is "a<op>b=c" with the running value and a true result
                left, result = line.split("=")
                a = int(left.replace("+", " ").replace("-", " ").replace("*", " ").split()[0])
                assert value is None or a == value
                assert eval(left) == int(result)  # noqa: S307 (digits and one operator)
                value = int(result)
            assert str(value) == r["answer"]
            if i >= 5:  # the library's outcome reward (math-verify, slow-ish) on a few rows per split
                continue
            solution = "\n".join(r["steps"])
            assert outcome_reward(solution, r["answer"]) == 1.0
            assert outcome_reward(solution.replace(f"{{{r['answer']}}}", f"{{{int(r['answer']) + 1}}}"),
                                  r["answer"]) == 0.0


def test_splits_are_disjoint_by_problem(splits):
    seen = {}
    for name, rows in splits.items():
        for r in rows:
            assert r["problem"] not in seen, f"{r['problem']!r} in {seen.get(r['problem'])} and {name}"
            seen[r["problem"]] = name
    assert len({r["id"] for rows in splits.values() for r in rows}) == sum(len(v) for v in splits.values())


def test_harder_split_is_really_harder(splits):
    train_ops = {r["num_ops"] for s in ("pretrain", "train", "validation", "test") for r in splits[s]}
    hard_ops = {r["num_ops"] for r in splits["hard"]}
    assert min(hard_ops) > max(train_ops)
    assert max(r["num_ops"] for r in splits["pretrain"]) < min(r["num_ops"] for r in splits["train"])
    # more operations = more expert steps = longer solutions
    mean = lambda rows: sum(len(r["steps"]) for r in rows) / len(rows)  # noqa: E731
    assert mean(splits["hard"]) > mean(splits["test"]) + 2


def test_distractors_do_not_change_the_answer():
    rng = random.Random(1)
    for _ in range(50):
        r = task.make_problem(task.Level(3, 4, distractors=2), rng)
        assert int(r["answer"]) == task.solve(r["problem"])
        assert len(r["problem"].split(". ")) >= r["num_ops"] + 3  # start + operations + 2 distractors


def test_intervals():
    lo, hi = mechanism.wilson(0, 100)
    assert lo == 0 and 0.03 < hi < 0.04  # the rule of three, roughly
    lo, hi = mechanism.wilson(50, 100)
    assert lo < 0.5 < hi and abs((hi - 0.5) - (0.5 - lo)) < 1e-9
    mean, half = mechanism.t_interval([0.1, 0.2, 0.3])
    assert mean == pytest.approx(0.2) and half == pytest.approx(4.303 * 0.1 / 3 ** 0.5)


def test_script_end_to_end_tiny_and_resumes(tmp_path, capsys):
    out = tmp_path / "mech"
    argv = ["--out", str(out), "--size", "tiny", "--seeds", "1", "--methods", "sft,srl_rlvr"]
    assert mechanism.main(argv) == 0
    results = out / "results"
    for name in ("base", "sft-s0", "srl_rlvr-s0"):
        assert (results / f"{name}.json").exists(), name
    r = json.loads((results / "srl_rlvr-s0.json").read_text())
    assert [p["stage"] for p in r["parts"]] == ["srl", "rlvr"]
    assert all(p["optimizer_steps"] == 1 for p in r["parts"])  # the tiny size's 2 RL steps, split in halves
    assert r["parts"][1]["rollouts"] >= 4  # G x prompts per step, at least one round
    assert r["parts"][1]["metrics"] and "reward" in r["parts"][1]["metrics"][0]
    for split in ("test", "hard"):
        e = r["eval"][split]
        assert e["n"] == 8 and 0 <= e["wilson95"][0] <= e["accuracy"] <= e["wilson95"][1] <= 1
    summary = json.loads((results / "summary.json").read_text())["table"]
    assert set(summary) == {"base", "sft", "srl_rlvr"}
    assert (out / "figures" / "mechanism_accuracy.png").stat().st_size > 0
    assert (out / "figures" / "mechanism_curves.png").stat().st_size > 0

    # a rerun skips every finished (method, seed): nothing is trained again
    before = (results / "sft-s0.json").stat().st_mtime_ns
    capsys.readouterr()
    assert mechanism.main(argv) == 0
    assert "srl train" not in capsys.readouterr().out
    assert (results / "sft-s0.json").stat().st_mtime_ns == before
