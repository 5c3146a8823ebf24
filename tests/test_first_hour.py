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
    assert "last-number fallback │ 100.0%" in out and "from a cut response │ 100.0%" in out
    assert "\\boxed{} or ####, complete response │ 0.0%" in out
    assert "100% of the responses were cut at --max_new_tokens 32" in out


# --- items 5 and 6: integrations fail when the options are parsed, in one line ------------------------------------
def train_refusal(argv, tmp_path, capsys):
    from srl.cli import main

    code = main(["train", "--stage", "srl", "--model", "tiny", "--use_cpu", "true", "--bf16", "false",
                 "--output_dir", str(tmp_path / "run"), *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert not (tmp_path / "run").exists()
    return err[0]


def test_report_to_an_integration_that_is_not_installed_is_refused_at_parse_time(tmp_path, capsys, monkeypatch):
    import transformers.integrations

    monkeypatch.setattr(transformers.integrations, "get_available_reporting_integrations", lambda: [])
    err = train_refusal(["--report_to", "tensorboard"], tmp_path, capsys)
    assert "field 'report_to': tensorboard is not installed: pip install 'tensorboard'" in err
    assert "pip install -e '.[tensorboard]'" in err
    assert "unknown integration 'tensorbord'" in train_refusal(["--report_to", "tensorbord"], tmp_path, capsys)


def test_report_to_wandb_without_a_login_is_refused_instead_of_prompting(tmp_path, capsys, monkeypatch):
    import transformers.integrations

    monkeypatch.setattr(transformers.integrations, "get_available_reporting_integrations", lambda: ["wandb"])
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("NETRC", raising=False)
    monkeypatch.setenv("WANDB_MODE", "online")
    assert "run `wandb login`, set WANDB_API_KEY, or set WANDB_MODE=offline" in train_refusal(
        ["--report_to", "wandb"], tmp_path, capsys)
    monkeypatch.setenv("WANDB_MODE", "offline")
    from srl.training.config import SRLConfig

    assert SRLConfig(output_dir=str(tmp_path / "r"), use_cpu=True, bf16=False, report_to="wandb").report_to == ["wandb"]


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="TRL's vLLM flags are refused only without CUDA")
def test_trl_use_vllm_on_a_cpu_is_refused_in_one_line_naming_backend_vllm(tmp_path, capsys):
    err = train_refusal(["--use_vllm", "true"], tmp_path, capsys)
    assert "field 'use_vllm': TRL's vLLM integration needs CUDA GPUs; on this machine use --backend vllm" in err
    err = train_refusal(["--use_vllm", "true", "--vllm_mode", "server"], tmp_path, capsys)
    assert "--backend vllm" in err


# --- item 12: a model card that says what the model is, and --push_to_hub uploads it -----------------------------
def test_model_card_names_base_model_method_data_and_metrics_and_is_pushed(tmp_path, monkeypatch):
    import huggingface_hub

    from srl.training.config import RunArguments, SRLConfig
    from srl.training.model_card import publish_model

    out, final = tmp_path / "run", tmp_path / "run" / "final"
    os.makedirs(final)
    write_jsonl(str(out / "metrics.jsonl"), [{"step": s, "reward": 0.1 * s, "format_error_rate": 0.5,
                                               "completions/clipped_ratio": 1.0, "loss": 0.0} for s in range(1, 11)])
    run = RunArguments(model="smollm2-135m-instruct", train_data="steps.jsonl")
    cfg = SRLConfig(output_dir=str(out), use_cpu=True, bf16=False, push_to_hub=True, hub_model_id="me/srl-smol",
                    num_generations=4, max_completion_length=32)
    uploads = []
    monkeypatch.setattr(huggingface_hub, "upload_folder", lambda **kw: uploads.append(
        (kw["repo_id"], sorted(os.listdir(kw["folder_path"])), open(os.path.join(kw["folder_path"], "README.md")).read())))

    class Trainer:
        hub_model_id = "me/srl-smol"
        state = type("State", (), {"global_step": 10})()
        train_dataset = list(range(123))

        def is_world_process_zero(self):
            return True

    path = publish_model(Trainer(), str(final), "srl", run, cfg)
    card = open(path).read()
    assert card == open(out / "README.md").read() and "[None]" not in card
    front = card.split("\n---", 1)[0]
    assert "base_model: HuggingFaceTB/SmolLM2-135M-Instruct" in front and "- srl" in front
    assert "de-quantised weights, not the original release" in card and "SmolLM2-135M-Instruct.Q4_1.gguf" in card
    assert "**SRL** (Supervised Reinforcement Learning" in card and "arXiv:2510.25992" in card
    assert "`--train_data`: steps.jsonl" in card and "training rows: 123 (step-wise instances)" in card
    assert "| rollouts per prompt (G) | 4 |" in card and "| optimizer steps | 10 |" in card
    assert "| mean reward | 0.150 | 0.950 |" in card  # first and last fifth of 10 steps: (0.1+0.2)/2, (0.9+1.0)/2
    assert "| completions cut at max_completion_length | 1.000 | 1.000 |" in card
    assert 'from_pretrained("me/srl-smol")' in card
    assert uploads == [("me/srl-smol", ["README.md"], card)]


# --- items 5, 11, 12 on real (tiny) training runs ---------------------------------------------------------------
TINY_RUN = ["--model", "tiny", "--think", "off", "--use_cpu", "true", "--bf16", "false",
            "--per_device_train_batch_size", "8", "--num_generations", "4", "--max_completion_length", "8",
            "--learning_rate", "1e-3", "--dataloader_pin_memory", "false", "--seed", "0", "--save_steps", "3",
            "--tiny_warm_up_steps", "3", "--max_generation_rounds", "2", "--max_train_samples", "40"]
PLOTTED = {"reward", "filtered_fraction", "format_errors", "truncated", "completion_length", "entropy", "grad_norm",
           "loss", "reward_by_step"}


@pytest.fixture(scope="module")
def srl_tensorboard_run(tmp_path_factory):
    from srl.cli import main

    out = str(tmp_path_factory.mktemp("fh") / "srl")
    assert main(["train", "--stage", "srl", "--train_data", BUNDLED_GSM8K, *TINY_RUN, "--max_steps", "3",
                 "--report_to", "tensorboard", "--output_dir", out]) == 0
    return out


@pytest.mark.slow
def test_report_to_tensorboard_logs_the_run_for_real(srl_tensorboard_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logs = [os.path.join(root, "") for root, _, files in os.walk(os.path.join(srl_tensorboard_run, "runs"))
            if any(f.startswith("events.out.tfevents") for f in files)]
    assert len(logs) == 1, logs
    events = EventAccumulator(logs[0])
    events.Reload()
    rewards = events.Scalars("train/reward")
    assert [e.step for e in rewards] == [1, 2, 3] and all(-1 <= e.value <= 1 for e in rewards)
    assert {"train/dynamic_sampling/filtered_fraction", "train/completions/clipped_ratio"} <= set(
        events.Tags()["scalars"])


@pytest.mark.slow
def test_run_folder_has_labelled_plots_a_model_card_and_named_completion_columns(srl_tensorboard_run):
    plots = os.path.join(srl_tensorboard_run, "plots")
    assert {f[:-4] for f in os.listdir(plots)} == PLOTTED
    assert all(open(os.path.join(plots, f), "rb").read(8) == b"\x89PNG\r\n\x1a\n" for f in os.listdir(plots))
    card = open(os.path.join(srl_tensorboard_run, "final", "README.md")).read()
    assert "`tiny`: a random 2-layer test model" in card and "[None]" not in card and "| optimizer steps | 3 |" in card
    assert card == open(os.path.join(srl_tensorboard_run, "README.md")).read()
    rows = read_jsonl(os.path.join(srl_tensorboard_run, "completions.jsonl"))
    assert rows and all({"expert_step", "action", "completion", "reward"} <= set(r) for r in rows)


@pytest.mark.slow
def test_rlvr_completions_name_the_gold_answer_and_the_answer_found(tmp_path):
    from srl.cli import main

    out = str(tmp_path / "rlvr")
    assert main(["train", "--stage", "rlvr", "--train_data", BUNDLED_GSM8K, *TINY_RUN, "--max_steps", "1",
                 "--output_dir", out]) == 0
    rows = read_jsonl(os.path.join(out, "completions.jsonl"))
    assert rows and all({"gold_answer", "answer", "completion", "reward"} <= set(r) for r in rows)
    assert not any("expert_step" in r or "action" in r for r in rows)
    gold = {r["answer"].split("####")[-1].strip() for r in read_jsonl(BUNDLED_GSM8K)}
    assert all(r["gold_answer"] in gold for r in rows)


# --- item 13: one documented entry point, a list, every format ------------------------------------------------------
def test_load_trajectories_is_a_list_for_every_format():
    from srl.data.agents import read_agent_trajectories
    from srl.data.build import load_trajectories
    from srl.data.trajectories import Trajectory, read_trajectories

    gsm8k = load_trajectories(BUNDLED_GSM8K, "gsm8k")
    assert isinstance(gsm8k, list) and len(gsm8k) == 256 and isinstance(gsm8k[0], Trajectory)
    first = gsm8k[0]  # looking at one loses none (a generator's next() used to drop it)
    assert len(gsm8k) == 256 and gsm8k[0] is first
    assert [t.id for t in gsm8k] == [t.id for t in read_trajectories(BUNDLED_GSM8K, "gsm8k")]

    swe = os.path.join(DATA, "swe", "nebius_SWE-agent-trajectories.rows.json")
    runs = load_trajectories(swe, "swe-agent")
    expected = [t for t in read_agent_trajectories(swe, "swe-agent") if not isinstance(t, tuple)]
    assert isinstance(runs, list) and runs and [t.id for t in runs] == [t.id for t in expected]
    assert len(load_trajectories(swe, "swe-agent", resolved_only=False)) >= len(runs)
    react = load_trajectories(os.path.join(DATA, "swe", "react_log.jsonl"), "chat",
                              chat_config=os.path.join(DATA, "swe", "react_log.yaml"))
    assert react and all(t.steps for t in react)
    with pytest.raises(InputError, match="field 'solution_field': is for solution formats"):
        load_trajectories(swe, "swe-agent", solution_field="x")
    assert len(load_trajectories(BUNDLED_GSM8K, "gsm8k", limit=3)) == 3


# --- item 7: the documented local-teacher server command is the tested one ---------------------------------------
def test_documented_vllm_serve_command_sizes_its_kv_cache_for_a_24gb_machine():
    """docs/teacher_data.md's serve command, as tests/test_teacher_server.py (slow) reads and starts it."""
    from vllm_server import documented_server_command

    env, argv = documented_server_command()
    assert env == {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}
    assert argv[:3] == ["python", "-m", "vllm.entrypoints.openai.api_server"]
    flags = dict(zip(argv[3::2], argv[4::2]))
    assert flags["--model"] == "~/.cache/srl/models/smollm2-135m-instruct" and flags["--dtype"] == "float32"
    assert flags["--max-model-len"] == "2048" and argv[-1] == "--enforce-eager"


# --- item 14: the vLLM / TRL pair the README documents is the one installed and tested ------------------------------
def test_the_documented_vllm_trl_pair_is_the_installed_one():
    from importlib.metadata import PackageNotFoundError, version

    try:
        vllm = version("vllm-cpu")
    except PackageNotFoundError:
        pytest.skip("vllm-cpu is not installed here (scripts/install.sh installs it only where it can run)")
    readme = " ".join(open(os.path.join(os.path.dirname(DATA), "..", "README.md"), encoding="utf-8").read().split())
    assert f"**vllm-cpu {vllm} with TRL {version('trl')}**" in readme
