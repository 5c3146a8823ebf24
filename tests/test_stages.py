"""The training stages end to end, in-process through `srl.cli.main`, on the tiny local model: what each stage
writes into its run folder (metrics, plots, completions, checkpoints, final model, config), RLVR and SFT on
GSM8K-format solutions, and `srl pipeline` (SRL then RLVR from the SRL model, one folder, resumable).

Every run is 2 optimizer steps of a 2-layer model; torch runs on one thread (on a busy 2-core machine two
threads per process only fight each other)."""

import json
import os

import pytest
import torch

from srl.cli import main
from srl.data import BUNDLED_GSM8K
from srl.data.instances import InstanceOptions, trajectory_instances, write_rows
from srl.tiny import synthetic_trajectories
from srl.training.checkpoints import COMPLETE_MARKER

pytestmark = pytest.mark.slow  # every stage trains the tiny model end to end (minutes in all)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# The settings of tests/test_resume.py, shortened: 2 steps, few warm-up steps, at most 2 generation rounds.
TINY = ["--model", "tiny", "--think", "off", "--use_cpu", "true", "--bf16", "false",
        "--per_device_train_batch_size", "8", "--num_generations", "4", "--max_completion_length", "8",
        "--learning_rate", "1e-3", "--dataloader_pin_memory", "false", "--seed", "0", "--save_steps", "2",
        "--tiny_warm_up_steps", "3"]
RL = ["--max_generation_rounds", "2"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="module")
def instances_file(data_dir):
    path = str(data_dir / "instances.jsonl")
    write_rows([r for t in synthetic_trajectories(8) for r in trajectory_instances(t, InstanceOptions(think="off"))],
               path)
    return path


@pytest.fixture(scope="module")
def gsm8k_file(data_dir):
    """16 GSM8K train rows (question, answer with `#### n`), copied from the bundled sample."""
    path = data_dir / "gsm8k16.jsonl"
    with open(BUNDLED_GSM8K, encoding="utf-8") as f:
        lines = [next(f) for _ in range(16)]
    path.write_text("".join(lines), encoding="utf-8")
    return str(path)


def run_cli(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def metrics(folder):
    """The per-step rows of metrics.jsonl (without the end-of-training summary row)."""
    with open(os.path.join(folder, "metrics.jsonl"), encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [r for r in rows if "train_runtime" not in r]


def jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def assert_final_model(folder):
    final = os.path.join(folder, "final")
    assert os.path.isfile(os.path.join(final, "config.json"))
    assert os.path.isfile(os.path.join(final, "model.safetensors"))
    assert os.path.isfile(os.path.join(final, "tokenizer.json")) and \
        os.path.isfile(os.path.join(final, "tokenizer_config.json"))


# --- srl train --stage srl -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def srl_run(tmp_path_factory, instances_file):
    out = str(tmp_path_factory.mktemp("srl") / "run")
    code = main(["train", "--stage", "srl", "--train_data", instances_file, *TINY, *RL, "--max_steps", "2",
                 "--output_dir", out])
    assert code == 0
    return out


def test_srl_metrics_one_row_per_step(srl_run):
    rows = metrics(srl_run)
    assert [r["step"] for r in rows] == [1, 2]
    for r in rows:
        assert r["stage"] == "srl"
        assert -1.0 <= r["reward"] <= 1.0
        assert 0.0 <= r["dynamic_sampling/filtered_fraction"] <= 1.0
        assert 0.0 <= r["format_error_rate"] <= 1.0
        assert r["tokens_per_second"] > 0
        by_step = {k: v for k, v in r.items() if k.startswith("reward_by_step/")}
        assert by_step, r
        assert all(k.split("/")[1] in {str(i) for i in range(1, 10)} | {"10+"} for k in by_step), by_step
        assert all(-1.0 <= v <= 1.0 for v in by_step.values())


def test_srl_plots_are_real_pngs(srl_run):
    for name in ("reward", "filtered_fraction", "format_errors", "reward_by_step"):
        path = os.path.join(srl_run, "plots", f"{name}.png")
        assert os.path.isfile(path), name
        with open(path, "rb") as f:
            assert f.read(8) == PNG_MAGIC, name
        assert os.path.getsize(path) > 1024, name
    assert not [p for p in os.listdir(os.path.join(srl_run, "plots")) if ".tmp" in p]  # no half-written plot


def test_srl_completions_table(srl_run, instances_file):
    rows = jsonl(os.path.join(srl_run, "completions.jsonl"))
    assert rows
    targets = {r["expert_step"] for r in jsonl(instances_file)}
    for row in rows:
        assert isinstance(row["prompt_tail"], str) and row["prompt_tail"].strip()
        assert "Start at" in row["prompt_tail"] or "Write step" in row["prompt_tail"]
        assert row["expert_step"] in targets
        assert "action" in row and (row["action"] is None or isinstance(row["action"], str))
        assert isinstance(row["reward"], float) and -1.0 <= row["reward"] <= 1.0
    # at most --completions_to_log (default 4) rows per logging step
    per_step = {}
    for row in rows:
        per_step[row["step"]] = per_step.get(row["step"], 0) + 1
    assert max(per_step.values()) <= 4


def test_srl_completions_steps_match_metrics_steps(srl_run):
    logged = {r["step"] for r in jsonl(os.path.join(srl_run, "completions.jsonl"))}
    assert logged == {r["step"] for r in metrics(srl_run)} == {1, 2}


def test_srl_checkpoint_final_and_config(srl_run, instances_file):
    marker = os.path.join(srl_run, "checkpoint-2", COMPLETE_MARKER)
    assert os.path.isfile(marker)
    assert json.load(open(marker))["global_step"] == 2
    assert_final_model(srl_run)
    config = json.load(open(os.path.join(srl_run, "config_srl.json")))
    assert config["stage"] == "srl"
    assert config["run"]["model"] == "tiny" and config["run"]["train_data"] == instances_file
    assert config["run"]["think"] == "off"
    assert config["train"]["max_steps"] == 2 and config["train"]["num_generations"] == 4
    assert config["train"]["output_dir"] == srl_run
    assert config["train"]["shared_prefix"] is True  # on by default (issue 11)
    assert config["torch_threads"] == "torch threads: 1 ($SRL_TORCH_THREADS=1)"  # conftest.py sets it
    assert config["huge_pages"].startswith("huge pages: ")  # on or off: pytest's process allocated before srl


def test_srl_refuses_a_used_folder_without_resume(srl_run, instances_file, capsys):
    code, _, err = run_cli(["train", "--stage", "srl", "--train_data", instances_file, *TINY, *RL, "--max_steps", "2",
                            "--output_dir", srl_run], capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "--resume" in err and srl_run in err


# --- rlvr and sft on solutions -------------------------------------------------------------------------------
def test_rlvr_on_gsm8k_solutions(tmp_path, gsm8k_file, capsys):
    out = str(tmp_path / "rlvr")
    code, _, err = run_cli(["train", "--stage", "rlvr", "--train_data", gsm8k_file, *TINY, "--max_generation_rounds",
                            "1", "--max_steps", "2", "--output_dir", out], capsys)
    assert code == 0, err
    rows = metrics(out)
    assert [r["step"] for r in rows] == [1, 2]
    for r in rows:
        assert r["stage"] == "rlvr"
        assert 0.0 <= r["rewards/answer/mean"] <= 1.0
    assert_final_model(out)
    config = json.load(open(os.path.join(out, "config_rlvr.json")))
    assert config["stage"] == "rlvr" and config["train"]["max_steps"] == 2
    completions = jsonl(os.path.join(out, "completions.jsonl"))
    answers = {json.loads(line)["answer"].rsplit("####", 1)[1].strip() for line in open(gsm8k_file)}
    assert completions and all(r["gold_answer"] in answers for r in completions)  # the final answer is the target


def test_sft_on_gsm8k_solutions(tmp_path, gsm8k_file, capsys):
    out = str(tmp_path / "sft")
    code, _, err = run_cli(["train", "--stage", "sft", "--train_data", gsm8k_file, "--model", "tiny", "--use_cpu",
                            "true", "--bf16", "false", "--per_device_train_batch_size", "4", "--max_length", "256",
                            "--max_steps", "2", "--save_steps", "2", "--learning_rate", "1e-3",
                            "--dataloader_pin_memory", "false", "--output_dir", out], capsys)
    assert code == 0, err
    assert [r["step"] for r in metrics(out) if "loss" in r] == [1, 2]
    assert_final_model(out)
    assert os.path.isfile(os.path.join(out, "config_sft.json"))
    assert os.path.isfile(os.path.join(out, "plots", "loss.png"))


def test_sft_on_instances_is_refused(tmp_path, instances_file, capsys):
    out = tmp_path / "sft"
    code, _, err = run_cli(["train", "--stage", "sft", "--train_data", instances_file, "--model", "tiny",
                            "--use_cpu", "true", "--bf16", "false", "--max_steps", "2", "--output_dir", str(out)],
                           capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("srl: error: ") and instances_file in lines[0] and "train_data" in lines[0]
    assert not out.exists() or not any(out.iterdir())


# --- srl pipeline --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory, gsm8k_file):
    """One real pipeline on GSM8K-format solutions (SRL builds its instances on the fly)."""
    out = str(tmp_path_factory.mktemp("pipe") / "X")
    argv = ["pipeline", "--output_dir", out, "--train_data", gsm8k_file, "--data_format", "gsm8k",
            "--max_train_samples", "8", *TINY, *RL, "--srl.max_steps=2", "--rlvr.max_steps=2"]
    assert main(argv) == 0
    return out, argv


def test_pipeline_runs_srl_then_rlvr_in_one_folder(pipeline_run, gsm8k_file):
    out, _ = pipeline_run
    assert sorted(p for p in os.listdir(out)) == ["rlvr", "srl"]
    for stage in ("srl", "rlvr"):
        folder = os.path.join(out, stage)
        assert [r["step"] for r in metrics(folder)] == [1, 2], stage
        assert all(r["stage"] == stage for r in metrics(folder))
        assert_final_model(folder)
        config = json.load(open(os.path.join(folder, f"config_{stage}.json")))
        assert config["stage"] == stage and config["train"]["max_steps"] == 2
        assert config["train"]["output_dir"] == folder
        assert config["run"]["train_data"] == gsm8k_file and config["run"]["data_format"] == "gsm8k"
    assert "rewards/answer/mean" in metrics(os.path.join(out, "rlvr"))[0]
    assert "rewards/step_similarity/mean" in metrics(os.path.join(out, "srl"))[0]


def test_pipeline_srl_builds_instances_from_gsm8k(pipeline_run, gsm8k_file):
    """The SRL stage cut the GSM8K solutions into step-wise instances on the fly: every logged row is one of the
    first 8 (--max_train_samples) instances `srl data build` would make from the file."""
    from srl.data.instances import build_instances
    from srl.data.build import load_trajectories

    out, _ = pipeline_run
    built = list(build_instances(list(load_trajectories(gsm8k_file, "gsm8k")), InstanceOptions(think="off")))[:8]
    expected = {(r["prompt"][-1]["content"][-300:], r["expert_step"], r["step_index"]) for r in built}
    rows = jsonl(os.path.join(out, "srl", "completions.jsonl"))
    assert rows
    for row in rows:
        assert (row["prompt_tail"], row["expert_step"], row["step_index"]) in expected, row
        assert "<<" not in row["expert_step"]  # GSM8K calculator notes are removed


def test_pipeline_rlvr_starts_from_the_srl_model(pipeline_run):
    out, _ = pipeline_run
    config = json.load(open(os.path.join(out, "rlvr", "config_rlvr.json")))
    assert config["run"]["model"] == os.path.join(out, "srl", "final")


def test_pipeline_resume_skips_finished_stages(pipeline_run, capsys, monkeypatch):
    import srl.models

    out, argv = pipeline_run
    before = {s: open(os.path.join(out, s, "metrics.jsonl")).read() for s in ("srl", "rlvr")}

    def no_loading(*args, **kwargs):
        raise AssertionError("a finished stage loaded a model")

    monkeypatch.setattr(srl.models, "load_model_and_tokenizer", no_loading)
    code, stdout, err = run_cli(argv + ["--resume"], capsys)
    assert code == 0, err
    text = " ".join(stdout.split())  # rich may wrap long paths
    assert "srl: already finished" in text and "rlvr: already finished" in text
    after = {s: open(os.path.join(out, s, "metrics.jsonl")).read() for s in ("srl", "rlvr")}
    assert after == before


# --- srl pipeline: argument routing (no training: run_stage is replaced by a recorder) ------------------------
@pytest.fixture
def recorded_stages(monkeypatch, tmp_path):
    import srl.training.stages

    calls = []

    def fake_run_stage(stage, run, cfg, **kwargs):
        calls.append((stage, run, cfg))
        return os.path.join(cfg.output_dir, "final")

    monkeypatch.setattr(srl.training.stages, "run_stage", fake_run_stage)
    return calls


def test_pipeline_routes_stage_options_with_equals(recorded_stages, tmp_path, capsys):
    out = str(tmp_path / "X")
    code, _, err = run_cli(["pipeline", "--output_dir", out, *TINY, "--srl.max_steps=3", "--rlvr.max_steps=5",
                            "--rlvr.learning_rate=2e-5"], capsys)
    assert code == 0, err
    (s1, run1, cfg1), (s2, run2, cfg2) = recorded_stages
    assert (s1, s2) == ("srl", "rlvr")
    assert (cfg1.max_steps, cfg2.max_steps) == (3, 5)
    assert (cfg1.learning_rate, cfg2.learning_rate) == (1e-3, 2e-5)
    assert (cfg1.output_dir, cfg2.output_dir) == (os.path.join(out, "srl"), os.path.join(out, "rlvr"))


def test_pipeline_routes_stage_options_with_spaces(recorded_stages, tmp_path, capsys):
    out = str(tmp_path / "X")
    code, _, err = run_cli(["pipeline", "--output_dir", out, *TINY, "--srl.max_steps", "3", "--rlvr.max_steps", "5"],
                           capsys)
    assert code == 0, err
    (_, _, cfg1), (_, _, cfg2) = recorded_stages
    assert (cfg1.max_steps, cfg2.max_steps) == (3, 5)


def test_pipeline_hands_the_srl_model_to_rlvr(recorded_stages, tmp_path, capsys):
    out = str(tmp_path / "X")
    code, _, err = run_cli(["pipeline", "--output_dir", out, *TINY, "--srl.max_steps=3", "--rlvr.max_steps=5"],
                           capsys)
    assert code == 0, err
    (_, run1, _), (_, run2, _) = recorded_stages
    assert run1.model == "tiny"
    assert run2.model == os.path.join(out, "srl", "final")


def test_pipeline_yaml_sections(recorded_stages, tmp_path, capsys):
    out = str(tmp_path / "X")
    cfg = tmp_path / "pipe.yaml"
    cfg.write_text("model: tiny\nthink: 'off'\nuse_cpu: true\nbf16: false\nnum_generations: 4\nper_device_train_batch_size: 8\n"
                   "srl:\n  max_steps: 3\nrlvr:\n  max_steps: 5\n  max_completion_length: 16\n")
    code, _, err = run_cli(["pipeline", "--config", str(cfg), "--output_dir", out, "--rlvr.max_steps=6"], capsys)
    assert code == 0, err
    (_, run1, cfg1), (_, run2, cfg2) = recorded_stages
    assert run1.think == run2.think == "off"
    assert (cfg1.max_steps, cfg2.max_steps) == (3, 6)  # the flag beats the YAML section
    assert cfg2.max_completion_length == 16 and cfg1.num_generations == cfg2.num_generations == 4


def test_srl_with_lora_saves_an_adapter(instances_file, tmp_path, capsys):
    out = tmp_path / "lora"
    code, _, err = run_cli(["train", "--stage", "srl", *TINY, *RL, "--train_data", instances_file, "--max_steps", "1",
                            "--use_peft", "true", "--lora_r", "4", "--lora_alpha", "8", "--output_dir", str(out)],
                           capsys)
    assert code == 0, err
    assert (out / "final" / "adapter_config.json").exists()  # PEFT saved the LoRA adapter, not full weights
    assert json.loads((out / "final" / "adapter_config.json").read_text())["r"] == 4


def test_resume_of_a_finished_run_trains_nothing(srl_run, instances_file, capsys, monkeypatch):
    """Issue 12: `--resume` on a finished run once trained step max_steps + 1 and overwrote final/."""
    import srl.models

    final = os.path.join(srl_run, "final")
    before = {name: open(os.path.join(final, name), "rb").read() for name in os.listdir(final)}
    metrics_before = open(os.path.join(srl_run, "metrics.jsonl")).read()

    def no_loading(*args, **kwargs):
        raise AssertionError("a finished run loaded a model")

    monkeypatch.setattr(srl.models, "load_model_and_tokenizer", no_loading)
    code, _, err = run_cli(["train", "--stage", "srl", "--train_data", instances_file, *TINY, *RL, "--max_steps", "2",
                            "--output_dir", srl_run, "--resume"], capsys)
    assert code == 0, err
    assert {name: open(os.path.join(final, name), "rb").read() for name in os.listdir(final)} == before
    assert open(os.path.join(srl_run, "metrics.jsonl")).read() == metrics_before


def test_a_final_folder_without_its_marker_is_not_finished(tmp_path):
    """A `final/` cut off while being written (no completeness marker, written last) does not count as done."""
    from srl.training.stages import finished_model

    final = tmp_path / "final"
    final.mkdir()
    (final / "config.json").write_text("{}")
    assert finished_model(str(tmp_path)) is None
    (final / COMPLETE_MARKER).write_text("{}")
    assert finished_model(str(tmp_path)) == str(final)
