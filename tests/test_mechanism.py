"""The controlled experiment (benchmarks/mechanism.py): its task generator, its data and base model, and its
`srl compare` recipe (recipes/compare_mechanism.yaml)."""

from __future__ import annotations

import json
import os
import random
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import compare_recipe  # noqa: E402
import mechanism  # noqa: E402
import mechanism_task as task  # noqa: E402

from srl.data.answers import extract_boxed  # noqa: E402
from srl.rewards import outcome_reward  # noqa: E402


@pytest.fixture(scope="module")
def splits():
    sizes = {"pretrain": 300, "train": 100, "validation": 30, "test": 60, "hard": 60}
    return task.make_splits(sizes, mechanism.levels(), seed=3)


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


def test_data_is_written_once_and_reused(tmp_path):
    paths = mechanism.make_data(str(tmp_path), mechanism.SIZES["tiny"], seed=1)
    rows = {s: [json.loads(line) for line in open(p, encoding="utf-8")] for s, p in paths.items()}
    assert {s: len(r) for s, r in rows.items()} == {s: mechanism.SIZES["tiny"][s] for s in mechanism.SPLITS}
    before = os.stat(paths["train"]).st_mtime_ns
    assert mechanism.make_data(str(tmp_path), mechanism.SIZES["tiny"], seed=1) == paths
    assert os.stat(paths["train"]).st_mtime_ns == before
    # the library reads them as `--data_format steps`: whole solutions and one instance per expert line
    whole, steps = mechanism.stage_rows("sft", paths["train"]), mechanism.stage_rows("srl", paths["train"])
    assert len(whole) == len(rows["train"])
    assert len(steps) == sum(len(r["steps"]) - 1 for r in rows["train"])
    assert whole[0]["expert_step"].startswith("\n".join(rows["train"][0]["steps"]))


def test_recipe_is_the_experiment_and_moves_with_out(tmp_path):
    from srl.cli.compare import config_from_argv

    cfg = config_from_argv(["--config", os.path.join(ROOT, "recipes", "compare_mechanism.yaml")])
    assert cfg.methods == ["base", "sft", "rlvr", "srl", "srl_nods", "srl_rlvr"] and cfg.seeds == [0, 1, 2]
    rl = {m: cfg.plan(m) for m in ("rlvr", "srl", "srl_nods", "srl_rlvr")}
    assert [[p["budget"]["amount"] for p in plan] for plan in rl.values()] == [[40], [40], [40], [20, 20]]
    assert rl["srl_nods"][0]["options"]["dynamic_sampling"] is False
    for plan in rl.values():
        for p in plan:
            o = p["options"]
            assert (o["learning_rate"], o["num_generations"], o["per_device_train_batch_size"], o["think"]) == \
                (5e-4, 8, 32, "off")
            assert o["max_completion_length"] == (24 if p["stage"] == "srl" else 72)
    assert cfg.plan("sft")[0]["options"]["num_train_epochs"] == 3 and cfg.candidates == [1.0]
    assert [e["name"] for e in cfg.evaluations] == ["test", "hard"] and cfg.step_eval["limit"] == 300

    moved = compare_recipe.recipe_values("mechanism", str(tmp_path / "m"))
    assert moved["model"] == str(tmp_path / "m" / "base")
    assert moved["evaluations"][1]["data"] == str(tmp_path / "m" / "data" / "hard.jsonl")
    assert moved["step_eval"]["data"] == str(tmp_path / "m" / "data" / "test.jsonl")
    assert moved["stage_options"] == cfg.stage_options and moved["output_dir"] == str(tmp_path / "m")
    assert compare_recipe.moved("runs/mechanism_x/a", "runs/mechanism", "o") == "runs/mechanism_x/a"


def test_script_makes_data_and_base_model_then_prints_the_command(tmp_path, capsys):
    out = tmp_path / "mech"
    assert mechanism.main(["--out", str(out), "--size", "tiny", "--data_only"]) == 0
    info = json.loads((out / "base" / "pretrain.json").read_text())
    assert info["steps"] == 3 and info["loss_last"] < info["loss_first"]
    command = capsys.readouterr().out.splitlines()[-1]
    assert "srl compare --config recipes/compare_mechanism.yaml" in command and f"--model {out}/base" in command
