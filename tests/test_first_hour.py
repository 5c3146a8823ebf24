"""A researcher's first hour (issue 23): no silent wrong results, integrations that fail early, a run folder worth
reading. Each test names the item of the issue it checks."""

from __future__ import annotations

import json
import logging
import os
import shutil

import pytest

from srl.errors import InputError

from conftest import BUNDLED_GSM8K, DATA

GSM8K_TEST = os.path.join(DATA, "gsm8k_test_sample.jsonl")


def write_jsonl(path, rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture
def data_root(tmp_path, monkeypatch):
    """A benchmark data root: GSM8K test (the 20 rows of tests/data) and train (the bundled sample), MATH-500
    with a test split only."""
    root = tmp_path / "shared-data"
    os.makedirs(root / "gsm8k")
    shutil.copy(GSM8K_TEST, root / "gsm8k" / "test.jsonl")
    shutil.copy(BUNDLED_GSM8K, root / "gsm8k" / "train.jsonl")
    write_jsonl(str(root / "math500" / "test.jsonl"),
                [{"problem": "What is $1+1$?", "answer": "2", "unique_id": "a"}])
    monkeypatch.setenv("SRL_DATA_DIR", str(root))
    return root


# --- item 1: training data never comes from an evaluation benchmark silently ------------------------------------
def test_generate_reads_a_benchmark_names_train_split_and_refuses_one_without(data_root, tmp_path):
    from srl.teacher.generate import GenerateConfig, load_problem_list

    out = str(tmp_path / "s.jsonl")
    train = load_problem_list(GenerateConfig(input="gsm8k", output=out))
    assert [p.problem for p in train] == [r["question"] for r in read_jsonl(BUNDLED_GSM8K)]
    test = load_problem_list(GenerateConfig(input="gsm8k", output=out, split="test"))
    assert [p.problem for p in test] == [r["question"] for r in read_jsonl(GSM8K_TEST)]
    with pytest.raises(InputError, match=r"'math500' has no train split.*--split test") as e:
        load_problem_list(GenerateConfig(input="math500", output=out))
    assert e.value.field == "input"


def test_building_from_evaluation_problems_warns_once_with_the_count(data_root, tmp_path, caplog):
    from srl.data.build import DataConfig, build

    mixed = str(tmp_path / "mixed.jsonl")
    write_jsonl(mixed, read_jsonl(GSM8K_TEST)[:3] + read_jsonl(BUNDLED_GSM8K)[:2])
    with caplog.at_level(logging.WARNING, logger="srl"):
        build(DataConfig(input=mixed, output=str(tmp_path / "a.jsonl")))
        build(DataConfig(input=mixed, output=str(tmp_path / "b.jsonl")))  # the same source: said once
    warnings = [r.getMessage() for r in caplog.records if "evaluation problems" in r.getMessage()]
    assert len(warnings) == 1 and "3 of its 5 problems" in warnings[0] and "3 in gsm8k (test)" in warnings[0]

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="srl"):  # --exclude takes a benchmark name: its test split
        summary = build(DataConfig(input=BUNDLED_GSM8K, output=str(tmp_path / "c.jsonl"), exclude="gsm8k"))
        excluded = build(DataConfig(input=mixed, output=str(tmp_path / "d.jsonl"), exclude="gsm8k"))
    assert excluded.skipped["in --exclude"] == 3 and summary.skipped.get("in --exclude", 0) == 0
    assert not [r for r in caplog.records if "evaluation problems" in r.getMessage()]


def test_training_on_instances_of_evaluation_problems_warns(data_root, tmp_path, caplog, monkeypatch):
    """srl train on an instances file (not read through `srl data build`) warns too, before the model loads."""
    from srl import models
    from srl.data.build import DataConfig, build
    from srl.training.config import RLVRConfig, RunArguments
    from srl.training.stages import run_stage

    instances = str(tmp_path / "test_instances.jsonl")
    with caplog.at_level(logging.ERROR, logger="srl"):  # (the build's own warning is not the one checked)
        build(DataConfig(input=GSM8K_TEST, output=instances))

    class Stop(Exception):
        pass

    def no_model(*args, **kwargs):
        raise Stop

    monkeypatch.setattr(models, "load_model_and_tokenizer", no_model)
    run = RunArguments(model="tiny", train_data=instances)
    cfg = RLVRConfig(output_dir=str(tmp_path / "run"), use_cpu=True, bf16=False, report_to="none")
    with caplog.at_level(logging.WARNING, logger="srl"), pytest.raises(Stop):
        run_stage("rlvr", run, cfg, progress=False)
    assert any(f"{instances}: 20 of its 20 problems" in r.getMessage() for r in caplog.records)


# --- item 2: srl eval never overwrites another model's results ----------------------------------------------------
def test_eval_output_folders_are_unique_per_model_and_never_overwrite_another(tmp_path, monkeypatch):
    from test_evaluation import CharTokenizer, NoModel, answering

    from srl.data.benchmarks import load_problems
    from srl.evaluation import EvalConfig, evaluate

    monkeypatch.chdir(tmp_path)
    for run in ("a", "b"):
        os.makedirs(tmp_path / "runs" / run / "srl" / "final")
    right = {p.problem: f"\\boxed{{{p.gold}}}" for p in load_problems(GSM8K_TEST)}

    def run_eval(model, **kw):
        cfg = EvalConfig(model=model, data=GSM8K_TEST, limit=2, **kw)
        return evaluate(cfg, model=NoModel(), tokenizer=CharTokenizer(), progress=False, print_table=False,
                        generate_fn=answering(right))

    a, b = run_eval("runs/a/srl/final"), run_eval("runs/b/srl/final")
    assert a.output_dir == os.path.join("runs", "eval", "gsm8k_test_sample-a_srl_final")
    assert b.output_dir == os.path.join("runs", "eval", "gsm8k_test_sample-b_srl_final")
    assert run_eval(str(tmp_path / "runs" / "a" / "srl" / "final")).output_dir == a.output_dir  # same model
    assert read_jsonl(os.path.join(a.output_dir, "problems.jsonl")) and a.summary["model_id"] == str(
        tmp_path / "runs" / "a" / "srl" / "final")

    shared = str(tmp_path / "shared")
    run_eval("runs/a/srl/final", output_dir=shared)
    run_eval("runs/a/srl/final", output_dir=shared)  # the same model again: a rerun, allowed
    with pytest.raises(InputError, match=r"holds the results of another model .*runs/a/srl/final.*--overwrite"):
        run_eval("runs/b/srl/final", output_dir=shared)
    assert json.load(open(os.path.join(shared, "summary.json")))["model"] == "runs/a/srl/final"
    assert run_eval("runs/b/srl/final", output_dir=shared, overwrite=True).summary["model"] == "runs/b/srl/final"


# --- item 3: an answer taken from a cut response or by the last-number fallback is reported as such ------------
def test_eval_reports_fallback_and_truncated_answers_separately(tmp_path, capsys):
    from test_evaluation import CharTokenizer, NoModel

    from srl.evaluation import EvalConfig, Generation, evaluate
    from srl.evaluation.runner import print_summary

    def cut_off(model, tokenizer, batch, **kwargs):  # every response cut at the limit, ending in some number
        return [Generation("First she buys 3 apples and then 18", 32, True) for _ in batch]

    cfg = EvalConfig(model="m", data=GSM8K_TEST, limit=4, output_dir=str(tmp_path / "e"), max_new_tokens=32)
    result = evaluate(cfg, model=NoModel(), tokenizer=CharTokenizer(), progress=False, print_table=False,
                      generate_fn=cut_off)
    s = result.summary
    assert s["answer_rate"] == 1.0 and s["truncated_rate"] == 1.0
    assert s["fallback_answer_rate"] == 1.0 and s["truncated_answer_rate"] == 1.0 and s["formatted_answer_rate"] == 0
    assert {r["greedy"]["answer_found_by"] for r in result.records} == {"last_number"}
    print_summary({k: v for k, v in s.items() if k not in ("files", "seconds")})  # (long paths would wrap it)
    out = " ".join(capsys.readouterr().out.split())
    assert "by the last-number fallback (no \\boxed{} or ####) │ 100.0%" in out
    assert "in a complete response, in the asked-for format │ 0.0%" in out
    assert "100% of the responses were cut at --max_new_tokens 32" in out
