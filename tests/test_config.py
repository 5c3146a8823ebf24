"""Configuration of `srl train` / `srl pipeline`: bad configuration is exit code 2 and one line naming the
problem, found before any model is loaded or anything is written; the recipes parse into their stage's
dataclasses with the paper's numbers; flags override the --config YAML, which overrides the --preset."""

import glob
import json
import os
import subprocess
import sys
import time

import pytest
import torch
import yaml

import srl.models
import srl.tiny
from srl.cli import main
from srl.training.presets import RECIPES, stage_arguments
from srl.errors import InputError

OK = ["--model", "tiny", "--think", "off", "--use_cpu", "true", "--bf16", "false", "--num_generations", "4",
      "--per_device_train_batch_size", "8", "--max_steps", "2"]


@pytest.fixture(scope="module", autouse=True)
def warm_imports():
    """Import what a run imports before it loads a model, so that the timings below measure the checks only."""
    import datasets  # noqa: F401

    import srl.training.reporting  # noqa: F401
    import srl.training.stages  # noqa: F401

    stage_arguments("srl", ["--output_dir", "unused", *OK])


@pytest.fixture
def no_model_loading(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the configuration was checked")

    monkeypatch.setattr(srl.models, "load_model_and_tokenizer", refuse)
    monkeypatch.setattr(srl.tiny, "tiny_model", refuse)
    import datasets

    def too_late(*args, **kwargs):
        raise AssertionError("the training set was built before the configuration was checked")

    monkeypatch.setattr(datasets.Dataset, "from_list", too_late)


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


def bad_case(name, tmp):
    """argv after `train`, and the texts the one error line must contain."""
    if name == "unknown flag":
        return ["--stage", "srl", *OK, "--nope", "1"], ["--nope"]
    if name == "unknown YAML key":
        cfg = write(tmp / "unknown.yaml", "learning_rate: 1.0e-3\nmax_stepz: 3\n")
        return ["--stage", "srl", *OK, "--config", cfg], [cfg, "max_stepz", "unknown"]
    if name == "missing YAML file":
        return ["--stage", "srl", *OK, "--config", str(tmp / "none.yaml")], [str(tmp / "none.yaml"), "no such"]
    if name == "badly typed YAML value":
        return ["--stage", "srl", *OK, "--config", write(tmp / "t.yaml", "seed: many\n")], ["seed", "many"]
    if name == "G = 1":
        return ["--stage", "srl", *OK, "--num_generations", "1"], ["num_generations", ">= 2"]
    if name == "G = 1 (rlvr)":
        return ["--stage", "rlvr", *OK, "--num_generations", "1"], ["num_generations", ">= 2"]
    if name == "negative eps":
        return ["--stage", "srl", *OK, "--dynamic_sampling_eps", "-1"], ["dynamic_sampling_eps", ">= 0"]
    if name == "no generation round":
        return ["--stage", "srl", *OK, "--max_generation_rounds", "0"], ["max_generation_rounds", ">= 1"]
    if name == "instances without expert_step":
        data = write(tmp / "no_expert_step.jsonl", json.dumps(
            {"prompt": [{"role": "user", "content": "Start at 1 and add 2, 3 times."}], "step_index": 1}) + "\n")
        return (["--stage", "srl", *OK, "--train_data", data, "--data_format", "instances"],
                [f"{data}:1", "expert_step", "missing"])
    if name == "missing model folder":
        return ["--stage", "srl", *OK, "--model", "./no/such/model"], ["./no/such/model", "'model'", "no such"]
    if name == "unknown preset":
        return ["--stage", "srl", *OK, "--preset", "nope"], ["preset", "nope"]
    if name == "unknown stage":
        return ["--stage", "nope", *OK], ["stage", "nope", "srl, rlvr, sft"]
    if name == "unknown data format":
        return ["--stage", "srl", *OK, "--data_format", "csv"], ["--data_format", "csv"]
    if name == "bad think flag":
        return ["--stage", "srl", *OK, "--think", "bogus"], ["--think", "bogus"]
    if name == "too many validation problems":
        return ["--stage", "srl", *OK, "--validation_problems", "100000"], ["validation_problems", "100000"]
    raise KeyError(name)


CASES = ["unknown flag", "unknown YAML key", "missing YAML file", "badly typed YAML value", "G = 1", "G = 1 (rlvr)",
         "negative eps", "no generation round", "instances without expert_step", "missing model folder",
         "unknown preset", "unknown stage", "unknown data format", "bad think flag", "too many validation problems"]


def check_refused(argv, expected, out_dir, capsys):
    code = main(["train", *argv, "--output_dir", str(out_dir)])
    stdout, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2, (argv, stdout, err)
    assert len(lines) == 1, err
    assert lines[0].startswith("srl: error: "), err
    for text in expected:
        assert text in lines[0], (text, lines[0])
    assert not out_dir.exists() or not any(out_dir.iterdir()), sorted(os.listdir(out_dir))
    return lines[0]


@pytest.mark.parametrize("case", CASES)
def test_bad_configuration_is_one_line_exit_2_before_loading(case, tmp_path, capsys, no_model_loading):
    argv, expected = bad_case(case, tmp_path)
    check_refused(argv, expected, tmp_path / "out", capsys)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU-only machines")
def test_paper_preset_on_cpu_asks_for_use_cpu(tmp_path, capsys, no_model_loading):
    """bf16 on a machine without a GPU: transformers' check, still one line and exit 2."""
    check_refused(["--stage", "srl", "--preset", "paper"], ["use_cpu"], tmp_path / "out", capsys)


def test_bad_choice_in_yaml_is_refused(tmp_path, capsys, no_model_loading):
    cfg = write(tmp_path / "c.yaml", "think: bogus\n")
    check_refused(["--stage", "srl", *OK, "--config", cfg], ["think", "bogus"], tmp_path / "out", capsys)


def test_think_off_in_yaml_means_off(tmp_path):
    """YAML reads `off` as False; the option's choices turn it back into the word (srl.cli.utils)."""
    cfg = write(tmp_path / "c.yaml", "think: off\n")
    run, _ = stage_arguments("srl", ["--use_cpu", "true", "--bf16", "false", "--config", cfg,
                                 "--output_dir", str(tmp_path / "out")])
    assert run.think == "off"


def test_one_line_on_the_real_stderr(tmp_path):
    """The same error from `python -m srl.cli` in a fresh process: no warning or traceback around it."""
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "srl.cli", "train", "--stage", "srl", "--num_generations", "1",
                             "--output_dir", str(out)], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("srl: error: field 'num_generations': must be >= 2"), lines[0]
    assert not out.exists()


# --- recipes -------------------------------------------------------------------------------------------------
def recipes():
    found = sorted(glob.glob(os.path.join(RECIPES, "*.yaml")))
    assert found
    return [(os.path.basename(p)[:-5].rsplit("_", 1)) + [p] for p in found]


CPU = [] if torch.cuda.is_available() else ["--use_cpu", "true"]  # the paper's bf16 needs it on CPU-only machines


def parsed_value(run, cfg, key):
    value = getattr(run, key) if hasattr(run, key) else getattr(cfg, key)
    return getattr(value, "value", value)  # enums (lr_scheduler_type) -> their string


@pytest.mark.parametrize("name,stage,path", recipes(), ids=lambda x: x if "/" not in str(x) else None)
def test_every_recipe_parses_into_its_stage(name, stage, path, tmp_path):
    run, cfg = stage_arguments(stage, ["--preset", name, "--output_dir", str(tmp_path), *CPU])
    assert run.preset == name and cfg.output_dir == str(tmp_path)
    values = yaml.safe_load(open(path))
    assert values
    for key, value in values.items():
        assert parsed_value(run, cfg, key) == value, (key, value, parsed_value(run, cfg, key))


def test_paper_values():
    srl_run, srl = stage_arguments("srl", ["--preset", "paper", "--output_dir", "unused", *CPU])
    assert (srl.learning_rate, srl.num_generations, srl.temperature, srl.beta, srl.max_grad_norm,
            srl.generation_batch_size) == (5e-7, 8, 1.0, 0.0, 1.0, 4096)
    assert srl.warmup_steps == 0 and srl.bf16 and srl.dynamic_sampling and srl_run.think == "required"
    _, rlvr = stage_arguments("rlvr", ["--preset", "paper", "--output_dir", "unused", *CPU])
    assert rlvr.generation_batch_size == 1024 and rlvr.num_generations == 8 and rlvr.learning_rate == 5e-7
    _, sft = stage_arguments("sft", ["--preset", "paper", "--output_dir", "unused", *CPU])
    assert sft.learning_rate == 5e-6 and sft.lr_scheduler_type.value == "cosine" and sft.num_train_epochs == 3
    assert sft.per_device_train_batch_size * sft.gradient_accumulation_steps == 64
    # the dataclass defaults are the paper's too
    _, default = stage_arguments("srl", ["--output_dir", "unused", *CPU])
    assert (default.learning_rate, default.num_generations, default.temperature, default.beta,
            default.max_grad_norm) == (5e-7, 8, 1.0, 0.0, 1.0)


def test_flags_override_yaml_override_preset(tmp_path):
    cfg = write(tmp_path / "run.yaml", "learning_rate: 2.0e-3\nmax_steps: 7\nthink: 'off'\nsave_steps: 3\n")
    run, srl = stage_arguments("srl", ["--preset", "cpu-small", "--config", cfg, "--max_steps", "3",
                                   "--output_dir", str(tmp_path / "out")])
    assert srl.max_steps == 3  # flag > YAML > preset (40)
    assert srl.learning_rate == 2e-3 and srl.save_steps == 3 and run.think == "off"  # YAML > preset
    assert srl.num_generations == 4 and srl.max_generation_rounds == 3  # preset > defaults (8, 8)
    assert srl.temperature == 1.0  # untouched default


def test_preset_named_in_yaml(tmp_path):
    cfg = write(tmp_path / "run.yaml", "preset: cpu-small\nmax_steps: 7\n")
    run, srl = stage_arguments("srl", ["--config", cfg, "--output_dir", str(tmp_path / "out")])
    assert run.preset == "cpu-small" and srl.num_generations == 4 and srl.max_steps == 7
    run, srl = stage_arguments("srl", ["--config", cfg, "--preset", "none", "--output_dir", str(tmp_path / "out"), *CPU])
    assert run.preset == "none" and srl.num_generations == 8 and srl.max_steps == 7  # the flag names no preset
