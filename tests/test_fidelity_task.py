"""The fidelity experiment (issue 21): its task generator (benchmarks/fidelity_task.py), the base model's training
rows (benchmarks/fidelity_base.py) and, marked slow, base + precondition measurement end to end at a tiny size."""

from __future__ import annotations

import json
import os
import re
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))

import fidelity_base as base  # noqa: E402
import fidelity_task as task  # noqa: E402

from srl.data.answers import extract_boxed  # noqa: E402
from srl.evaluation.metrics import score_response  # noqa: E402
from srl.rewards.format import OutputFormat, parse_response  # noqa: E402

SIZES = {"pretrain": 400, "train": 120, "validation": 30, "test": 60, "hard": 40}


@pytest.fixture(scope="module")
def splits():
    return task.make_splits(SIZES, seed=3)


def test_expert_steps_fold_their_operations_verifiably(splits):
    for rows in splits.values():
        for r in rows:
            task.check_record(r)
    r = splits["train"][0]
    line = r["steps"][0]
    expr, value = line.split(" = ")
    for broken in (f"{expr} = {int(value) + 1}",  # a wrong result
                   f"{expr}+1 = {int(value) + 1}",  # an operation the problem does not state
                   f"{int(value)} = {value}"):  # nothing folded
        with pytest.raises(AssertionError):
            task.check_record({**r, "steps": [broken] + r["steps"][1:]})
    assert task.fold(17, [("", "+", 5), ("", "*", 2), ("", "-", 3)]) == "(17+5)*2-3"
    assert task.fold(17, [("", "*", 2), ("", "+", 5), ("", "*", 2)]) == "(17*2+5)*2"


def test_every_expert_line_folds_two_or_more_operations(splits):
    for split in ("train", "validation", "test", "hard"):
        assert all(len(ops) >= 2 for r in splits[split] for ops in r["stages"])
    assert any(len(ops) == 1 for r in splits["pretrain"] for ops in r["stages"])


def test_answers_are_checkable_by_srl_eval(splits):
    for split in ("train", "test", "hard"):
        for r in splits[split][:3]:  # math-verify is slow-ish: a few per split
            assert task.solve(r["problem"]) == int(r["answer"])
            assert extract_boxed(r["steps"][-1]) == r["answer"]
            for solution in ("\n".join(r["steps"]), task.student_solution(r)):
                assert score_response(solution, r["answer"], answer_mode="boxed").correct
                wrong = solution.replace(f"{{{r['answer']}}}", f"{{{int(r['answer']) + 1}}}")
                assert not score_response(wrong, r["answer"], answer_mode="boxed").correct


def test_splits_are_disjoint_and_the_pretrain_split_easier(splits):
    seen = {}
    for name, rows in splits.items():
        for r in rows:
            assert r["problem"] not in seen, f"{r['problem']!r} in {seen.get(r['problem'])} and {name}"
            seen[r["problem"]] = name
    assert len({r["id"] for rows in splits.values() for r in rows}) == sum(map(len, splits.values()))
    stages = {s: [r["num_stages"] for r in rows] for s, rows in splits.items()}
    ops = {s: [r["num_ops"] for r in rows] for s, rows in splits.items()}
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    assert mean(stages["pretrain"]) < min(stages["train"])  # shorter chains
    assert mean(ops["pretrain"]) < min(ops["train"]) and mean(ops["pretrain"]) < mean(ops["train"]) / 1.5
    for s in ("pretrain", "train", "validation", "test"):  # the hard split is longer than any other problem
        assert min(stages["hard"]) > max(stages[s]) and min(ops["hard"]) > max(ops[s])
    assert len(task.make_splits({"train": 1000}, seed=0)["train"]) == 1000  # the expert data's limit is drawable
    other = task.make_splits({"pretrain": 200, "test": 50, "hard": 50}, task.levels((3, 7), (6, 7)), seed=1)
    assert {r["num_stages"] for r in other["test"]} == {6, 7} and max(r["num_stages"] for r in other["pretrain"]) == 7
    assert min(r["num_ops"] for r in other["hard"]) > 3 * 7 and min(r["num_stages"] for r in other["hard"]) == 8


def test_the_student_unfolds_what_the_expert_folds(splits):
    r = splits["test"][0]
    responses = task.student_steps(r)
    assert len(responses) == len(r["steps"])
    for i, (response, expert, ops) in enumerate(zip(responses, r["steps"], r["stages"] + [[]]), 1):
        parsed = parse_response(response, OutputFormat(think="required"))
        assert parsed.ok and parsed.action == expert  # the same action, after a scratchpad
        if ops:
            words, work = parsed.think.removeprefix(f"Step {task.label(i)}: ").split(". ")
            assert f"Step {task.label(i)}: {words}." in r["problem"]  # the stage copied from the problem first
            entries = work.rstrip(".").split(", ")
            assert len(entries) == len(ops) and all(re.fullmatch(r"\d+[+\-*]\d+=\d+", e) for e in entries)
            assert all(eval(e.split("=")[0]) == int(e.split("=")[1]) for e in entries)  # noqa: S307
    whole = task.student_solution(r)
    assert whole.count("<think>") == len(r["stages"]) and whole.endswith(r["steps"][-1])


def test_the_students_habit_slips_only_where_it_can(splits):
    assert task.slipped(23, 5) == 22 and task.slipped(21, 9) == 28  # the smaller units digit from the larger
    assert task.slips(23, ("", "-", 5)) and not task.slips(13, ("", "-", 5)) and not task.slips(25, ("", "-", 5))
    assert not task.slips(23, ("", "+", 9))
    rows = splits["pretrain"] + splits["train"]
    never = [task.student_steps(r, 0.0) for r in rows]
    assert all(p.rsplit("\n", 1)[1] == e for r, s in zip(rows, never) for p, e in zip(s, r["steps"]))
    struck = 0
    for r in rows:  # always slipping: a stage's action is wrong exactly where an operation can slip
        value = r["start"]
        for i, (response, ops) in enumerate(zip(task.student_steps(r, 1.0), r["stages"]), 1):
            ops = [("", o, d) for o, d in ops]
            can, v = False, value
            for op in ops:
                can, v = can or task.slips(v, op), task.apply(v, op)
            action = response.rsplit("\n", 1)[1]
            assert (action != r["steps"][i - 1]) == can and action.startswith(task.fold(value, ops) + " = ")
            entries = re.findall(r"(\d+)([+\-*])(\d+)=(\d+)", response)  # each entry from the previous result
            assert all(int(a) == int(c) for (_, _, _, c), (a, _, _, _) in zip(entries, entries[1:]))
            struck += can
            value = v
    assert struck > 0
    r = next(r for r in rows if any(task.student_steps(r, 1.0)[i] != task.student_steps(r, 0.0)[i]
                                    for i in range(len(r["stages"]))))
    assert not task.student_solution(r, 1.0).endswith(r["steps"][-1])  # a slip carries to the whole answer
    assert task.student_solution(r, 0.0).endswith(r["steps"][-1])
    assert task.student_steps(r, 0.5) == task.student_steps(r, 0.5)  # a row's draw is fixed by its id


def test_base_rows_are_the_librarys_instances(tmp_path, splits):
    path = str(tmp_path / "test.jsonl")
    from srl.io import write_jsonl

    write_jsonl(path, splits["test"][:5])
    rows = base.step_rows(path)
    assert len(rows) == sum(len(r["steps"]) for r in splits["test"][:5])  # the answer step included
    for row in rows:
        assert row["target"].endswith("\n" + row["expert_step"]) and row["target"].startswith("<think>\n")
        assert f"Write step {row['step_index']} only." in row["prompt"][1]["content"]
    paper = base.step_rows(path, include_last_step=False, think="off")
    assert len(paper) == len(rows) - 5 and all(r["target"] == r["expert_step"] for r in paper)
    whole = base.whole_rows(path)
    assert whole[0]["prompt"][1]["content"] == splits["test"][0]["problem"]


@pytest.mark.slow
def test_base_and_preconditions_end_to_end(tmp_path):
    import fidelity_preconditions as pre

    sizes = {"pretrain": 30, "train": 6, "validation": 2, "test": 4, "hard": 3}
    folder = base.pretrain(str(tmp_path), "tiny", data_sizes=sizes, overrides={"steps": 4}, save_every=2,
                           log=lambda m: None)
    marker = base.read_marker(folder)
    assert marker["whole_rows"] == 30 and os.path.exists(os.path.join(folder, "config.json"))
    assert os.listdir(tmp_path / "checkpoints") == ["step-2"] and marker["slip_rate"] == task.SLIP_RATE
    assert base.pretrain(str(tmp_path), "tiny", data_sizes=sizes) == folder  # reused, not trained again
    pre.SETTINGS.update(eval_max_new_tokens=8, max_completion_length_rlvr=8, max_completion_length_srl=8,
                        stepwise_max_new_tokens=6, stepwise_max_steps=2)
    out = str(tmp_path / "pre.json")
    result = pre.measure(str(tmp_path), out, steps_n=4, zero_spread_problems=2, G=2, batch=4)
    saved = json.load(open(out))
    assert saved["P1"]["n"] == 4 and saved["P2"]["rlvr_start"]["problems"] == 2
    assert set(result["holds"]) == {"P1", "P2", "P3", "P4"} and result["holds"]["P3"] is True
    assert set(result["P1"]["exact_by_slip"]) <= {"can slip", "no slip"}
    screened = pre.screen(str(tmp_path), None, steps_n=3, problems=2, batch=4)
    assert [os.path.basename(r["model"]) for r in screened] == ["step-2", "base"]


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def recipe(work: str, **changes) -> dict:
    """recipes/compare_fidelity.yaml with its paths moved under `work` (runs/fidelity -> work) and the recipes'
    own files found from the repository root."""
    import yaml

    with open(os.path.join(ROOT, "recipes", "compare_fidelity.yaml"), encoding="utf-8") as f:
        text = f.read().replace("runs/fidelity", work).replace("recipes/", os.path.join(ROOT, "recipes") + "/")
    return {**yaml.safe_load(text), **changes}


def test_the_recipe_plans_every_method_and_ablation_as_the_paper_states_them(tmp_path):
    from srl.data.prompts import PromptTemplate
    from srl.experiments import CompareConfig

    cfg = CompareConfig(**recipe(str(tmp_path)))
    assert cfg.methods == ["base", "sft", "rlvr", "srl", "srl_rlvr", "srl_nods", "srl_outcome", "srl_whole"]
    assert cfg.seeds == [0, 1, 2, 3, 4] and cfg.budget_unit == "rollouts"
    plans = {m: cfg.plan(m) for m in cfg.methods}
    # the same rollout budget for every RL method (SRL -> RLVR: half each); SFT by its own epochs
    for m in ("rlvr", "srl", "srl_nods", "srl_outcome", "srl_whole"):
        assert [s["budget"] for s in plans[m]] == [{"unit": "rollouts", "amount": cfg.budget}]
    assert [s["budget"]["amount"] for s in plans["srl_rlvr"]] == [cfg.budget / 2] * 2
    options = {m: plans[m][0]["options"] for m in cfg.methods if plans[m]}
    assert all(o["think"] == "required" for o in options.values())  # P4: the paper's format everywhere
    assert options["srl_nods"]["dynamic_sampling"] is False
    assert options["srl_outcome"]["step_reward"] == "outcome" and options["srl_whole"]["step_target"] == "remaining"
    assert options["srl"]["max_completion_length"] == 96 and options["srl_outcome"]["max_completion_length"] == 512
    continue_to_end = PromptTemplate.from_file(options["srl_outcome"]["template"])
    assert "to the end" in continue_to_end.user and "\\boxed{}" in continue_to_end.system_prompt()
    assert any(e.get("stepwise") for e in cfg.evaluations)  # the step-wise evaluation is part of every run


@pytest.mark.slow
def test_the_recipe_end_to_end_at_a_tiny_size(tmp_path):
    """Every method of the recipe (ablations included) on a tiny base from `fidelity_base`, one seed: each run
    is recorded with both evaluations (whole solutions and step-wise) and the SRL objective."""
    from srl.experiments import CompareConfig, compare

    sizes = {"pretrain": 30, "train": 14, "validation": 2, "test": 4, "hard": 3}
    base.pretrain(str(tmp_path), "tiny", data_sizes=sizes, log=lambda m: None)
    small = {"max_completion_length": 8, "num_generations": 2, "per_device_train_batch_size": 4,
             "max_generation_rounds": 2}
    cfg = recipe(str(tmp_path), seeds=[0], budget=8, validation_problems=4, isolate=False,
                 record=str(tmp_path / "record"), figures=str(tmp_path / "figures"))
    cfg["stage_options"]["srl"] = {**cfg["stage_options"]["srl"], **small}
    cfg["stage_options"]["rlvr"] = {**cfg["stage_options"]["rlvr"], **small}
    cfg["stage_options"]["sft"] = {**cfg["stage_options"]["sft"], "max_steps": 2, "per_device_train_batch_size": 4}
    for stages in cfg["method_stages"].values():
        stages[0]["max_completion_length"] = 8
    cfg["eval_options"] = {**cfg["eval_options"], "max_new_tokens": 8, "batch_size": 8}
    for e in cfg["evaluations"]:
        e.update(limit=3, max_new_tokens=6, **({"max_steps": 2} if e.get("stepwise") else {}))
    cfg["step_eval"].update(limit=4, max_new_tokens=6)
    results = compare(CompareConfig(**cfg))
    runs = sorted(os.listdir(tmp_path / "record" / "runs"))
    assert runs == sorted(["base.json"] + [f"{m}-s0.json" for m in cfg["methods"] if m != "base"])
    for name in runs:
        run = json.loads((tmp_path / "record" / "runs" / name).read_text())
        assert set(run["evaluations"]) == {"test", "hard", "test_stepwise"}, name
        assert run["step_objective"]["n"] == 4, name
    assert set(results["methods"]) == set(cfg["methods"])
