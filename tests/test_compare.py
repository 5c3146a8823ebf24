"""`srl compare` (srl.experiments): the comparison end to end on the tiny model and real GSM8K rows, its record
reused by a rerun and refused under other settings, `--report_only`, the statistics of pairs of methods, and
the budget callback."""

import json
import os
import signal
import subprocess
import sys
import time
import types

import pytest

from srl.cli import main
from srl.cli.compare import config_from_argv
from srl.data import BUNDLED_GSM8K
from srl.errors import InputError
from srl.experiments import CompareConfig, compare
from srl.experiments.report import compare_pair
from srl.training.budget import Budget

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TINY = {
    "model": "tiny", "train_data": BUNDLED_GSM8K, "data_format": "gsm8k", "methods": ["base", "srl"], "seeds": [0],
    "budget": 2, "validation_problems": 4, "validation_limit": 4,
    "evaluations": [{"name": "gsm8k", "data": BUNDLED_GSM8K, "limit": 6}],
    "eval_options": {"max_new_tokens": 12, "batch_size": 8, "threads": 1},
    "step_eval": {"limit": 6, "max_new_tokens": 8},
    "stage_options": {
        "shared": {"think": "off", "use_cpu": True, "bf16": False, "dataloader_pin_memory": False,
                   "tiny_warm_up_steps": 3, "learning_rate": 1e-3, "torch_threads": 1, "report_to": "none"},
        "srl": {"per_device_train_batch_size": 8, "num_generations": 4, "max_completion_length": 8,
                "max_generation_rounds": 2},
        "rlvr": {"per_device_train_batch_size": 8, "num_generations": 4, "max_completion_length": 12,
                 "max_generation_rounds": 2},
        "sft": {"max_steps": 2, "per_device_train_batch_size": 4}},
    "isolate": False,
}


def write_config(path, **changes) -> str:
    import yaml

    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump({**TINY, **changes}, f)
    return str(path)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """base and SRL on the tiny model, one seed, in-process: the record of a finished comparison."""
    folder = tmp_path_factory.mktemp("compare")
    results = compare(CompareConfig(**{**TINY, "output_dir": str(folder / "work"), "record": str(folder / "record")}))
    return folder, results


def test_compare_end_to_end_writes_record_table_and_figures(finished):
    folder, results = finished
    record = folder / "record"
    assert sorted(os.listdir(record / "runs")) == ["base.json", "srl-s0.json"]
    srl = json.loads((record / "runs" / "srl-s0.json").read_text())
    # the SRL run: one stage at the budget (2 optimizer steps of 2 prompts x G=4), candidates at half and end,
    # each scored on the 4 validation problems, the chosen one evaluated on the same 6 problems as the base model
    assert [s["stage"] for s in srl["stages"]] == ["srl"] and srl["stages"][0]["steps"] == 2
    assert srl["rollouts"] >= 16 and srl["generated_tokens"] > 0
    assert set(srl["candidates"]) == {"0.5", "1"} and set(srl["validation"]) == {"0.5", "1"}
    assert srl["chosen"] in srl["candidates"] and srl["model"] == srl["candidates"][srl["chosen"]]
    base = json.loads((record / "runs" / "base.json").read_text())
    assert base["model"] == "tiny" and base["stages"] == [] and base["seed"] is None
    assert set(srl["evaluations"]["gsm8k"]["items"]) == set(base["evaluations"]["gsm8k"]["items"])
    assert len(srl["evaluations"]["gsm8k"]["items"]) == 6
    assert srl["step_objective"]["n"] == 5 and len(srl["step_objective"]["rewards"]) == 5  # 6 asked, 5 instances exist
    # held-out data: the validation problems never train
    train = (folder / "work" / "data" / "train.jsonl").read_text().splitlines()
    validation = (folder / "work" / "data" / "validation.jsonl").read_text().splitlines()
    assert len(validation) == 4 and not set(train) & set(validation) and len(train) + 4 == 256
    on_disk = json.loads((record / "results.json").read_text())
    assert list(on_disk["methods"]) == ["base", "srl"] and on_disk["pairs"][0]["a"] == "base"
    assert on_disk["pairs"][0]["evaluations"]["gsm8k"]["n"] == 6 and "step_reward" in on_disk["pairs"][0]
    table = (record / "table.md").read_text()
    assert "| base (no training) | 1 |" in table and "| SRL | 1 |" in table and "McNemar" in table
    for png in results["figures"]:
        with open(png, "rb") as f:
            assert f.read(8) == PNG_MAGIC


def test_rerun_reuses_the_record_and_refuses_other_settings(finished, tmp_path, monkeypatch):
    folder, _ = finished
    from srl.experiments import runs

    def no_training(*a, **k):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(runs, "run_method", no_training)
    again = compare(CompareConfig(**{**TINY, "output_dir": str(tmp_path / "elsewhere"),
                                     "record": str(folder / "record")}))
    assert list(again["methods"]) == ["base", "srl"]
    with pytest.raises(InputError, match="other settings.*plan"):
        compare(CompareConfig(**{**TINY, "budget": 3, "output_dir": str(tmp_path / "elsewhere"),
                                 "record": str(folder / "record")}))


def test_report_only_redraws_from_the_record(finished, tmp_path, capsys):
    folder, _ = finished
    code = main(["compare", "--report_only", "true", "--record", str(folder / "record"), "--figures",
                 str(tmp_path / "figs"), "--methods", "[srl, base]"])
    assert code == 0
    out = capsys.readouterr().out
    assert out.index("| SRL |") < out.index("| base (no training) |")  # the order asked for
    assert sorted(os.listdir(tmp_path / "figs")) == ["record.png", "record_curves.png"]


def test_config_file_flags_and_stage_flags(tmp_path):
    path = write_config(tmp_path / "c.yaml")
    cfg = config_from_argv(["--config", path, "--budget", "5", "--srl.learning_rate", "2e-3", "--seeds", "[0, 1]",
                            "--methods", "[base, srl_rlvr]"])
    assert cfg.budget == 5 and cfg.seeds == [0, 1] and cfg.stage_options["srl"]["learning_rate"] == 2e-3
    assert cfg.stage_options["srl"]["num_generations"] == 4  # merged with the file's section
    plan = cfg.plan("srl_rlvr")
    assert [(p["stage"], p["budget"]["amount"]) for p in plan] == [("srl", 2), ("rlvr", 2)]  # the budget split
    assert plan[0]["options"]["learning_rate"] == 2e-3 and plan[1]["options"]["learning_rate"] == 1e-3
    assert plan[0]["options"]["lr_scheduler_type"] == "constant"


@pytest.mark.parametrize("argv, fragment", [
    (["--methods", "[base, nosuch]"], "unknown method 'nosuch'"),
    (["--budget_unit", "tokens"], "budget_unit"),
    (["--seeds", "[-1]"], "seeds"),
    (["--nosuch", "1"], "unrecognized arguments"),
    (["--method_stages", "{x: [{stage: rlvr, budget_share: 0.3}, {stage: srl, budget_share: 0.3}]}",
      "--methods", "[x]"], "budget_share"),
])
def test_bad_options_are_one_line_before_any_work(tmp_path, capsys, argv, fragment):
    code = main(["compare", "--config", write_config(tmp_path / "c.yaml"), "--output_dir", str(tmp_path / "o"),
                 *argv])
    err = capsys.readouterr().err
    assert code == 2 and fragment in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_a_bad_stage_option_fails_before_training(tmp_path, capsys):
    code = main(["compare", "--config", write_config(tmp_path / "c.yaml"), "--output_dir", str(tmp_path / "o"),
                 "--methods", "[srl]", "--srl.nosuch_option", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "nosuch_option" in err
    assert not (tmp_path / "o" / "runs").exists()


def _run(method, seed, items, step_rewards=None):
    evals = {"gsm8k": {"metric": "greedy_accuracy", "value": sum(items.values()) / len(items), "n": len(items),
                       "paired": "exact", "items": items}}
    steps = {"rewards": step_rewards, "mean_reward": sum(step_rewards) / len(step_rewards)} if step_rewards else None
    return {"method": method, "seed": seed, "evaluations": evals, "step_objective": steps}


def test_pairs_match_runs_by_seed_and_the_base_with_every_seed():
    base = [_run("base", None, {"1": 0, "2": 0, "3": 1}, [0.1, 0.2])]
    srl = [_run("srl", 0, {"1": 1, "2": 0, "3": 1}, [0.3, 0.2]), _run("srl", 1, {"1": 1, "2": 1, "3": 1}, [0.4, 0.2])]
    sft = [_run("sft", 1, {"1": 0, "2": 0, "3": 0}), _run("sft", 2, {"1": 1, "2": 1, "3": 1})]
    p = compare_pair(base, srl)
    assert p["matched_runs"] == 2
    g = p["evaluations"]["gsm8k"]
    assert (g["n"], g["a_only"], g["b_only"]) == (6, 0, 3)  # problems pooled over the two matched runs
    assert g["p_value"] == pytest.approx(0.25)  # McNemar exact: 3 discordant pairs, all for b
    assert g["seed_difference"]["mean"] == pytest.approx(-0.5)
    assert p["step_reward"]["difference"] == pytest.approx(-0.125)  # (-0.2 + 0 - 0.3 + 0) / 4
    q = compare_pair(srl, sft)  # only seed 1 is shared
    assert q["matched_runs"] == 1 and q["evaluations"]["gsm8k"]["a_only"] == 3
    assert "seed_difference" not in q["evaluations"]["gsm8k"]


def _state(step):
    return types.SimpleNamespace(global_step=step, max_steps=100)


def _control():
    return types.SimpleNamespace(should_save=False, should_training_stop=False)


def test_budget_in_rollouts_counts_refills_and_marks_candidates(tmp_path):
    args = types.SimpleNamespace(logging_steps=1, generation_batch_size=8, output_dir=str(tmp_path))
    budget = Budget("rollouts", 40, candidates=(0.5, 1.0), path=str(tmp_path / "budget.json"))
    budget.on_train_begin(args, _state(0), _control())
    decisions = []
    for step, rounds in enumerate([1, 2, 1, 1], start=1):  # 8, 24, 32, 40 rollouts (a refill round at step 2)
        control = _control()
        budget.on_step_end(args, _state(step), control)
        budget.on_log(args, _state(step), control, logs={"loss": 0.0, "dynamic_sampling/rounds": rounds})
        decisions.append((control.should_save, control.should_training_stop))
    assert decisions == [(False, False), (True, False), (False, False), (True, True)]
    assert budget.marks == {"0.5": 2, "1": 4} and budget.at_mark["1"]["rollouts"] == 40


def test_the_progress_bar_counts_a_rollouts_budget_not_the_max_steps_ceiling(tmp_path):
    """A rollouts budget runs the stage with max_steps 1e6 as a ceiling: the bar must show rollouts of the budget
    (it showed `4/1e+06 ... ~153049m left`)."""
    from srl.training.reporting import ProgressCallback

    args = types.SimpleNamespace(logging_steps=1, generation_batch_size=8, output_dir=str(tmp_path), run_name=None)
    budget = Budget("rollouts", 40, candidates=(1.0,), path=str(tmp_path / "budget.json"))
    bar = ProgressCallback(meter=budget)
    state = _state(0)
    state.max_steps, state.is_world_process_zero = 1_000_000, True
    budget.on_train_begin(args, state, _control())
    bar.on_train_begin(args, state, _control())
    task = bar.progress.tasks[0]  # off a terminal: srl.console.LineProgress, one line every 30 s
    assert task["total"] == 40 and task["description"] == "training (rollouts)"
    budget.on_log(args, _state(1), _control(), logs={"loss": 0.0, "dynamic_sampling/rounds": 2})
    bar.on_step_end(args, _state(1), _control())
    assert bar.progress.tasks[0]["completed"] == 16
    bar.on_train_end(args, state, _control())
    assert Budget("steps", 5, path=str(tmp_path / "b2.json")).progress_of(_state(3)) is None  # max_steps is right


def test_budget_in_steps_resumes_its_counts(tmp_path):
    args = types.SimpleNamespace(logging_steps=1, generation_batch_size=8, output_dir=str(tmp_path))
    path = str(tmp_path / "budget.json")
    budget = Budget("steps", 4, candidates=(0.5,), path=path)
    budget.on_train_begin(args, _state(0), _control())
    for step in (1, 2):
        control = _control()
        budget.on_step_end(args, _state(step), control)
        budget.on_log(args, _state(step), control, logs={"loss": 0.0, "dynamic_sampling/rounds": 1})
        if control.should_save:
            budget.on_save(args, _state(step), control)
    assert budget.marks == {"0.5": 2}
    resumed = Budget("steps", 4, candidates=(0.5,), path=path)  # a new process, resumed from checkpoint-2
    resumed.on_train_begin(args, _state(2), _control())
    assert resumed.rollouts == 16 and resumed.marks == {"0.5": 2}
    control = _control()
    resumed.on_step_end(args, _state(4), control)
    assert control.should_training_stop and resumed.marks["1"] == 4


@pytest.mark.slow
def test_a_killed_comparison_resumes_reusing_finished_runs(tmp_path):
    """SIGKILL once the base model's run is recorded (the SRL run training); the rerun keeps the base run."""
    config = write_config(tmp_path / "c.yaml", isolate=True, output_dir=str(tmp_path / "o"))
    proc = subprocess.Popen([sys.executable, "-m", "srl.cli", "compare", "--config", config],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    base = tmp_path / "o" / "runs" / "base.json"
    deadline = time.time() + 300
    while not base.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
    assert base.exists(), "the base run never finished"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = base.read_text()
    assert main(["compare", "--config", config]) == 0
    assert base.read_text() == before  # reused, not measured again
    assert (tmp_path / "o" / "runs" / "srl-s0.json").exists()


@pytest.mark.slow
def test_the_five_methods_and_the_ablation_in_their_own_processes(tmp_path):
    """The paper's rows (base, SFT, RLVR, SRL, SRL → RLVR) and SRL without dynamic sampling, each trained and
    evaluated in its own process, two seeds (t-intervals over seeds)."""
    config = write_config(tmp_path / "c.yaml", isolate=True, output_dir=str(tmp_path / "o"), seeds=[0, 1],
                          methods=["base", "sft", "rlvr", "srl", "srl_rlvr", "srl_nods"], budget=2)
    assert main(["compare", "--config", config]) == 0
    results = json.loads((tmp_path / "o" / "results.json").read_text())
    assert list(results["methods"]) == ["base", "sft", "rlvr", "srl", "srl_rlvr", "srl_nods"]
    assert results["methods"]["srl"]["runs"] == 2 and results["methods"]["base"]["runs"] == 1
    assert results["methods"]["srl"]["evaluations"]["gsm8k"]["interval"] == "t over seeds"
    assert len(results["pairs"]) == 15
    srl_rlvr = json.loads((tmp_path / "o" / "runs" / "srl_rlvr-s0.json").read_text())
    assert [s["stage"] for s in srl_rlvr["stages"]] == ["srl", "rlvr"]
    assert [s["steps"] for s in srl_rlvr["stages"]] == [1, 1]  # the budget of 2 steps split in halves
    nods = json.loads((tmp_path / "o" / "runs" / "srl_nods-s0.json").read_text())
    assert nods["settings"]["plan"][0]["options"]["dynamic_sampling"] is False


def test_a_work_folder_reused_with_other_data_makes_its_split_again(tmp_path):
    """The data splits of `<output_dir>/data` follow the training data: a second comparison in the same work folder
    with other problems never trains or validates on the first one's split."""
    from srl.experiments.runs import prepare_data

    first = tmp_path / "a.jsonl"
    lines = open(BUNDLED_GSM8K, encoding="utf-8").read().splitlines()
    first.write_text("\n".join(lines[:40]) + "\n")
    cfg = CompareConfig(**{**TINY, "train_data": str(first), "output_dir": str(tmp_path / "work"), "step_eval": None})
    paths = prepare_data(cfg)
    assert len(open(paths["train"]).read().splitlines()) == 36
    second = tmp_path / "b.jsonl"
    second.write_text("\n".join(lines[40:100]) + "\n")
    paths = prepare_data(CompareConfig(**{**TINY, "train_data": str(second), "output_dir": str(tmp_path / "work"),
                                          "step_eval": None}))
    train = open(paths["train"]).read().splitlines()
    assert len(train) == 56 and not set(train) & set(lines[:40])


def test_the_srl_objective_is_scored_in_the_srl_stage_s_format_preset_included(tmp_path):
    """cpu-small's SRL recipe says think: optional; the SRL objective uses it unless the stage options say
    otherwise (it used the reward's default, `required`, before)."""
    from srl.experiments.runs import prepare_data

    options = {k: {o: v for o, v in section.items() if o != "think"} for k, section in TINY["stage_options"].items()}
    paths = prepare_data(CompareConfig(**{**TINY, "stage_options": options, "output_dir": str(tmp_path / "w")}))
    assert paths["step_options"]["think"] == "optional"


def test_the_format_error_panel_draws_srl_stages_only():
    """RLVR and SFT stages have no SRL format errors: their flat zero is not drawn (nor listed in the legend)."""
    from srl.experiments.report import curve

    rlvr = {"stage": "rlvr", "curves": {"format_error_rate": [[1, 0.0]], "loss": [[1, 0.2]]}}
    assert curve(rlvr, "format_error_rate") == [] and curve(rlvr, "loss") == [[1, 0.2]]
    assert curve({"stage": "srl", "curves": {"format_error_rate": [[1, 0.1]]}}, "format_error_rate") == [[1, 0.1]]
