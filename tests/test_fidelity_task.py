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
    assert mean(ops["pretrain"]) < min(ops["train"]) and mean(ops["pretrain"]) < mean(ops["train"]) / 1.8
    for s in ("pretrain", "train", "validation", "test"):  # the hard split is longer than any other problem
        assert min(stages["hard"]) > max(stages[s]) and min(ops["hard"]) > max(ops[s])
    assert len(task.make_splits({"train": 1000}, seed=0)["train"]) == 1000  # the expert data's limit is drawable


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
    folder = base.pretrain(str(tmp_path), "tiny", data_sizes=sizes, log=lambda m: None)
    marker = base.read_marker(folder)
    assert marker["whole_rows"] == 30 and os.path.exists(os.path.join(folder, "config.json"))
    assert base.pretrain(str(tmp_path), "tiny", data_sizes=sizes) == folder  # reused, not trained again
    pre.SETTINGS.update(eval_max_new_tokens=8, max_completion_length_rlvr=8, max_completion_length_srl=8,
                        stepwise_max_new_tokens=6, stepwise_max_steps=2)
    out = str(tmp_path / "pre.json")
    result = pre.measure(str(tmp_path), out, steps_n=4, zero_spread_problems=2, G=2, batch=4)
    saved = json.load(open(out))
    assert saved["P1"]["n"] == 4 and saved["P2"]["rlvr_start"]["problems"] == 2
    assert set(result["holds"]) == {"P1", "P2", "P3", "P4"} and result["holds"]["P3"] is True
