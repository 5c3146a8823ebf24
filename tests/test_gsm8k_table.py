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
        assert json.load(f) == {"steps": {"half": 3, "end": 5}, "seconds": {"half": 6.0, "end": 11.0}}


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
def test_whole_table_on_the_tiny_model(table, tmp_path, capsys):
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
    assert os.path.exists(tmp_path / "record" / "table.png")
    with open(tmp_path / "record" / "table.md") as f:
        md = f.read()
    assert md.count("\n| SRL → RLVR |") == 1 and "+ RLVR" in md  # its row, with the two parts of its budget
    assert "| base (no training) | SRL → RLVR |" in md  # the paired comparison
    capsys.readouterr()
    assert table.main(argv) == 0
    assert "[table] train" not in capsys.readouterr().out
    # a new machine: only the record is there; finished rows are reused, nothing trains or evaluates
    import shutil

    shutil.rmtree(out)
    assert table.main(argv) == 0
    printed = capsys.readouterr().out
    assert "[table] train" not in printed and "[table] eval" not in printed and "reused from" in printed
    with pytest.raises(SystemExit, match="other settings"):  # rows measured otherwise are never mixed
        table.main([*argv, "--test_problems", "3"])


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
