"""benchmarks/gsm8k_table.py: the parts that decide what the table means (the split, the budget, the choice of
checkpoint, the table) on real GSM8K rows; the whole script is run end to end on the tiny model."""

import importlib.util
import json
import os
import types

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GSM8K_TRAIN = os.path.join(os.path.dirname(ROOT), "shared", "data", "gsm8k", "train.jsonl")
BUNDLED = os.path.join(ROOT, "src", "srl", "data", "gsm8k_train_sample.jsonl")


@pytest.fixture(scope="module")
def table():
    spec = importlib.util.spec_from_file_location("gsm8k_table", os.path.join(ROOT, "benchmarks", "gsm8k_table.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _lines(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line)["question"] for line in f]


def test_split_holds_out_validation_problems_disjoint_and_seeded(table, tmp_path):
    train, val = table.split_train(BUNDLED, str(tmp_path / "a"), validation=5, train_problems=20, seed=3)
    t, v = _lines(train), _lines(val)
    assert len(v) == 5 and len(t) == 20 and not set(t) & set(v)
    train2, val2 = table.split_train(BUNDLED, str(tmp_path / "b"), validation=5, train_problems=20, seed=3)
    assert _lines(val2) == v and _lines(train2) == t
    _, val3 = table.split_train(BUNDLED, str(tmp_path / "c"), validation=5, train_problems=20, seed=4)
    assert _lines(val3) != v


def test_split_never_contains_test_problems(table, tmp_path):
    test_file = os.path.join(os.path.dirname(GSM8K_TRAIN), "test.jsonl")
    if not os.path.exists(GSM8K_TRAIN):
        pytest.skip(f"the shared GSM8K data is not beside the repository ({GSM8K_TRAIN})")
    train, val = table.split_train(GSM8K_TRAIN, str(tmp_path), validation=60, train_problems=500, seed=0)
    assert not (set(_lines(train)) | set(_lines(val))) & set(_lines(test_file))


def test_time_budget_saves_at_half_and_stops_at_end(table, tmp_path, monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(table.time, "time", lambda: clock[0])
    budget = table.TimeBudget(10.0, str(tmp_path / "marks.json"))
    state = types.SimpleNamespace(global_step=0)
    budget.on_train_begin(None, state, None)
    decisions = []
    for step, now in enumerate([102, 104, 106, 108, 111], start=1):
        clock[0] = now
        state.global_step = step
        control = types.SimpleNamespace(should_save=False, should_training_stop=False)
        budget.on_step_end(None, state, control)
        decisions.append((control.should_save, control.should_training_stop))
    assert decisions == [(False, False), (False, False), (True, False), (False, False), (True, True)]
    with open(tmp_path / "marks.json") as f:
        assert json.load(f) == {"steps": {"half": 3, "end": 5}, "seconds": {"half": 6.0, "end": 11.0}, "saved": {}}


def test_step_budget_run_resumes_its_clock_and_prunes_resume_checkpoints(table, tmp_path, monkeypatch):
    """A step-budget run cut after its step-3 save continues from there: its time counts on from that save, the
    half mark set before the cut stays, and only the marked checkpoints and the newest one are kept."""
    from srl.training.checkpoints import COMPLETE_MARKER

    clock = [0.0]
    monkeypatch.setattr(table.time, "time", lambda: clock[0])
    marks, args = str(tmp_path / "marks.json"), types.SimpleNamespace(output_dir=str(tmp_path))

    def run(budget, steps, start_step, t0):
        state = types.SimpleNamespace(global_step=start_step)
        clock[0] = t0
        budget.on_train_begin(args, state, None)
        for step in steps:
            clock[0] += 10
            state.global_step = step
            control = types.SimpleNamespace(should_save=True, should_training_stop=False)  # save every step
            budget.on_step_end(args, state, control)
            (tmp_path / f"checkpoint-{step}").mkdir()
            (tmp_path / f"checkpoint-{step}" / COMPLETE_MARKER).write_text("")
            budget.on_save(args, state, control)
        return control

    run(table.TimeBudget(1e9, marks, steps=4), [1, 2, 3], 0, 1000.0)  # then the machine goes away
    assert sorted(os.listdir(tmp_path)) == ["checkpoint-2", "checkpoint-3", "marks.json"]  # half (2) + newest
    resumed = table.TimeBudget(1e9, marks, steps=4)
    control = run(resumed, [4], 3, 5000.0)  # an hour later, from checkpoint-3
    assert control.should_training_stop and resumed.marks == {"half": 2, "end": 4}
    assert resumed.times == {"half": 20.0, "end": 40.0}  # the hour between is not training time
    assert sorted(os.listdir(tmp_path)) == ["checkpoint-2", "checkpoint-4", "marks.json"]


def test_choose_prefers_validation_accuracy_then_the_end(table, tmp_path, monkeypatch):
    scores = {}
    monkeypatch.setattr(table, "evaluate_once",
                        lambda folder, model, **kw: {"metrics": {"greedy_accuracy": scores[model]}})
    args = types.SimpleNamespace(max_new_tokens=8, batch_size=2, threads=1, seed=0, validation_eval_problems=None)
    half, end = tmp_path / "checkpoint-3", tmp_path / "checkpoint-5"
    half.mkdir()
    end.mkdir()
    candidates = {"half": str(half), "end": str(end)}
    scores.update({str(half): 0.2, str(end): 0.1})
    assert table.choose(candidates, str(tmp_path), "val.jsonl", args)[0] == "half"
    scores.update({str(half): 0.1, str(end): 0.1})
    assert table.choose(candidates, str(tmp_path), "val.jsonl", args)[0] == "end"


@pytest.mark.slow  # every method of the table, trained and evaluated
def test_whole_table_on_the_tiny_model(table, tmp_path, capfd):
    """Every row trains, is chosen on validation and evaluated; the table and plot are written; a second call
    reuses everything (no training)."""
    if not os.path.exists(GSM8K_TRAIN):
        pytest.skip(f"the shared GSM8K data is not beside the repository ({GSM8K_TRAIN})")
    out = str(tmp_path / "t")
    argv = ["--out", out, "--model", "tiny", "--rows", "base,srl_rlvr", "--rl_minutes", "0.005",
            "--sft_minutes", "0.002", "--test_problems", "2", "--k", "2", "--k_problems", "1", "--math_problems", "1",
            "--max_new_tokens", "6", "--math_max_new_tokens", "6", "--validation_problems", "2",
            "--train_problems", "12", "--srl_lr", "1e-3", "--rlvr_lr", "1e-3", "--sft_lr", "1e-3",
            "--srl_max_completion_length", "6", "--G", "2", "--prompts_per_step", "2", "--step_problems", "3",
            "--record", str(tmp_path / "record")]
    assert table.main(argv) == 0
    with open(tmp_path / "record" / "results.json") as f:
        recorded = json.load(f)
    assert all(r["complete"] and len(r["gsm8k_greedy_flags"]) == 2 and len(r["step_objective"]["rewards"]) == 3
               for r in recorded["rows"].values())
    assert [(p["a"], p["b"]) for p in recorded["comparisons"]] == [("base", "srl_rlvr")]
    assert recorded["comparisons"][0]["gsm8k_greedy"]["n"] == 2 and "step_reward" in recorded["comparisons"][0]
    results = recorded
    assert list(results["rows"]) == ["base", "srl_rlvr"]
    chained = results["rows"]["srl_rlvr"]
    with open(os.path.join(out, "srl", "run.json")) as f:
        srl = json.load(f)
    assert srl["stage"] == "srl" and srl["generated_tokens"] > 0 and 0 <= srl["format_error_rate"] <= 1
    assert chained["stage"] == "rlvr" and chained["generated_tokens"] > 0
    assert chained["start_model"] == srl["checkpoints"]["half"]  # RLVR starts from SRL's half-budget checkpoint
    assert chained["chosen"] in chained["validation_greedy"]
    assert os.path.exists(tmp_path / "record" / "table.png") and os.path.exists(tmp_path / "record" / "table_curves.png")
    parts = chained["training"]["parts"]  # SRL up to its half-budget checkpoint, then RLVR
    assert [p["stage"] for p in parts] == ["srl", "rlvr"] and parts[0]["steps"] == srl["steps"]["half"]
    assert chained["training"]["rollouts"] >= 2 * 2 * (parts[0]["steps"] + parts[1]["steps"])  # G x prompts per step
    with open(tmp_path / "record" / "table.md") as f:
        md = f.read()
    assert md.count("\n| SRL → RLVR |") == 1 and "+ RLVR" in md  # its row, with the two parts of its budget
    assert "| base (no training) | SRL → RLVR |" in md  # the paired comparison
    capfd.readouterr()
    assert table.main(argv) == 0
    assert "[table] train" not in capfd.readouterr().out
    # a new machine: only the record is there; finished rows are reused, nothing trains or evaluates
    import shutil

    shutil.rmtree(out)
    assert table.main(argv) == 0
    printed = capfd.readouterr().out
    assert "[table] train" not in printed and "[table] eval" not in printed and "reused from" in printed
    with pytest.raises(SystemExit, match="other settings"):  # rows measured otherwise are never mixed
        table.main([*argv, "--test_problems", "3"])
    assert "--number_fallback auto" in chained["command"]  # the RLVR reward scores GSM8K as the evaluation
    # a record made before --number_fallback existed was measured with the strict reward: refused with auto
    del recorded["settings"]["number_fallback"]
    with open(tmp_path / "record" / "results.json", "w") as f:
        json.dump(recorded, f)
    with pytest.raises(SystemExit, match="number_fallback"):
        table.main(argv)
    assert table.main([*argv, "--number_fallback", "off"]) == 0


def test_step_budget_marks_half_and_end_by_optimizer_steps(table, tmp_path):
    budget = table.TimeBudget(1e9, str(tmp_path / "marks.json"), steps=5)
    state = types.SimpleNamespace(global_step=0)
    budget.on_train_begin(None, state, None)
    stops = []
    for step in range(1, 6):
        state.global_step = step
        control = types.SimpleNamespace(should_save=False, should_training_stop=False)
        budget.on_step_end(None, state, control)
        stops.append((control.should_save, control.should_training_stop))
    assert stops == [(False, False), (False, False), (True, False), (False, False), (True, True)]
    assert budget.marks == {"half": 3, "end": 5}


def test_comparisons_pair_rows_on_the_same_problems_and_steps(table):
    rows = {"base": {"label": "base", "gsm8k_greedy_flags": {"1": 0, "2": 0, "3": 1, "4": 0},
                     "step_objective": {"rewards": [0.1, 0.2, 0.3]}},
            "srl": {"label": "SRL", "gsm8k_greedy_flags": {"1": 1, "2": 1, "3": 1, "4": 0},
                    "step_objective": {"rewards": [0.3, 0.4, 0.5]}},
            "sft": {"label": "SFT", "gsm8k_greedy_flags": {"1": 0, "2": 0, "3": 0, "4": 1}}}
    pairs = {(p["a"], p["b"]): p for p in table.comparisons(rows)}
    assert set(pairs) == {("base", "srl"), ("base", "sft"), ("srl", "sft")}
    g = pairs[("base", "srl")]["gsm8k_greedy"]
    assert (g["a_only"], g["b_only"], g["difference"], g["p_value"]) == (0, 2, -0.5, 0.5)
    assert abs(pairs[("base", "srl")]["step_reward"]["difference"] + 0.2) < 1e-9
    assert "step_reward" not in pairs[("base", "sft")]  # SFT has no step scores here
    assert pairs[("srl", "sft")]["gsm8k_greedy"]["a_only"] == 3


def test_isolated_call_runs_in_a_child_and_reads_its_result(table, tmp_path):
    """Each model is trained and evaluated in its own process; the parent only reads the result file; a failure
    in the child stops the table with a message instead of running the work again here."""
    expected = (str(tmp_path / "a" / "data" / "train.jsonl"), str(tmp_path / "a" / "data" / "validation.jsonl"))
    assert table.isolated(table.split_train, BUNDLED, str(tmp_path / "a"), 5, 20, 3) == expected
    assert len(_lines(expected[0])) == 20
    with pytest.raises(SystemExit, match="split_train failed in its own process"):
        table.isolated(table.split_train, str(tmp_path / "missing.jsonl"), str(tmp_path / "b"), 5, 20, 3)
    assert not os.path.exists(tmp_path / "b")


def test_record_keeps_rows_another_process_finished(table, tmp_path):
    """Two table processes (one row each, one per core) share a record: neither loses the other's row."""
    path = str(tmp_path / "results.json")
    row = {"complete": True, "gsm8k_greedy_flags": {"1": 1, "2": 0}}
    first = {"settings": {}, "rows": {"base": dict(row), "rlvr": dict(row)}}
    second = {"settings": {}, "rows": {"base": dict(row), "srl_rlvr": {**row, "gsm8k_greedy_flags": {"1": 0, "2": 0}}}}
    table.save_record(path, first)
    table.save_record(path, second)
    with open(path) as f:
        saved = json.load(f)
    assert list(saved["rows"]) == ["base", "rlvr", "srl_rlvr"]  # the paper's order, whoever finished first
    assert {(p["a"], p["b"]) for p in saved["comparisons"]} == {("base", "rlvr"), ("base", "srl_rlvr"),
                                                              ("rlvr", "srl_rlvr")}
    table.save_record(path, {"settings": {}, "rows": {"sft": {"complete": False}}})  # unfinished: never merged in
    with open(path) as f:
        assert "sft" not in [k for k, v in json.load(f)["rows"].items() if v.get("complete")]


def test_training_part_counts_rollouts_and_tokens_up_to_a_step(table, tmp_path):
    """Rollouts drawn = generation rounds x batch (dynamic-sampling refills count); SFT draws none."""
    rows = [{"step": 1, "loss": 0.1, "reward": 0.2, "dynamic_sampling/rounds": 1.0, "generated_tokens": 100},
            {"step": 2, "loss": 0.1, "reward": 0.3, "dynamic_sampling/rounds": 3.0, "generated_tokens": 250},
            {"step": 3, "loss": 0.1, "reward": 0.4, "dynamic_sampling/rounds": 2.0, "generated_tokens": 90},
            {"train_runtime": 5.0}]
    with open(tmp_path / "metrics.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    whole = table.training_part(str(tmp_path), "rlvr", batch=16)
    assert (whole["steps"], whole["rollouts"], whole["generated_tokens"]) == (3, 96, 440)
    assert whole["curves"]["reward"] == [[1, 0.2], [2, 0.3], [3, 0.4]]
    half = table.training_part(str(tmp_path), "srl", batch=16, until=2)
    assert (half["steps"], half["rollouts"], half["generated_tokens"]) == (2, 64, 350)
    assert table.training_part(str(tmp_path), "sft", batch=16)["rollouts"] == 0
    assert table.training_part(str(tmp_path / "gone"), "srl", batch=16) is None


def test_held_out_step_instances_come_from_test_solutions_seeded(table, tmp_path):
    """The SRL objective is measured on step instances cut from GSM8K *test* solutions: a seeded sample, kept in
    the table's folder so that every row is scored on the same ones."""
    test_file = os.path.join(os.path.dirname(GSM8K_TRAIN), "test.jsonl")
    if not os.path.exists(test_file):
        pytest.skip(f"the shared GSM8K data is not beside the repository ({test_file})")
    args = types.SimpleNamespace(step_problems=5, think="optional", seed=0)
    path = table.make_step_instances(str(tmp_path), args)
    with open(path) as f:
        rows = [json.loads(line) for line in f]
    assert len(rows) == 5 and all(r["expert_step"].strip() and r["prompt"] for r in rows)
    questions = set(_lines(test_file))
    assert all(r["problem"] in questions for r in rows)
    os.utime(path, (0, 0))
    assert table.make_step_instances(str(tmp_path), args) == path and os.stat(path).st_mtime == 0  # reused
    assert table.make_step_instances(str(tmp_path / "none"), types.SimpleNamespace(step_problems=0)) is None
