"""Options in TRL's idiom (issue 23 items 8-10): TRL's names accepted, near misses suggested, a run's own
config_<stage>.json runs it again, `--help` grouped (ours first, TRL's after, each option once), `srl data`
lists its commands, and output is not wrapped when it is not a terminal."""

import json
import subprocess
import sys

import pytest

from srl.cli import main
from srl.errors import InputError
from srl.training.presets import stage_arguments, stage_parser

CPU = ["--use_cpu", "true", "--bf16", "false"]


def test_trl_names_are_accepted_in_flags_and_yaml(tmp_path):
    run, _ = stage_arguments("srl", ["--model_name_or_path", "tiny", "--dataset_name", "x.jsonl", *CPU])
    assert (run.model, run.train_data) == ("tiny", "x.jsonl")
    cfg = tmp_path / "trl.yaml"
    cfg.write_text("model_name_or_path: tiny\ndataset_name: y.jsonl\nlearning_rate: 1.0e-6\n")
    run, train = stage_arguments("srl", ["--config", str(cfg), *CPU])
    assert (run.model, run.train_data, train.learning_rate) == ("tiny", "y.jsonl", 1e-6)


def test_near_misses_are_suggested(tmp_path, capsys):
    assert main(["train", "--stage", "srl", "--ouput_dir", "x"]) == 2
    assert "did you mean --output_dir?" in capsys.readouterr().err
    cfg = tmp_path / "typo.yaml"
    cfg.write_text("learning_rat: 1.0e-6\n")
    with pytest.raises(InputError, match="did you mean --learning_rate"):
        stage_arguments("srl", ["--config", str(cfg), *CPU])


def test_a_run_s_own_config_file_runs_it_again(tmp_path):
    run, train = stage_arguments("rlvr", ["--model", "tiny", "--learning_rate", "3e-6", "--num_generations", "4",
                                          "--per_device_train_batch_size", "8", "--steps_per_generation", "2",
                                          "--think", "off", "--output_dir", str(tmp_path / "a"), *CPU])
    import dataclasses

    saved = tmp_path / "config_rlvr.json"
    saved.write_text(json.dumps({"stage": "rlvr", "run": dataclasses.asdict(run), "train": train.to_dict(),
                                 "torch_threads": 1}, default=str))
    run2, train2 = stage_arguments("rlvr", ["--config", str(saved), "--output_dir", str(tmp_path / "b")])
    assert (run2.model, run2.think) == ("tiny", "off")
    assert (train2.learning_rate, train2.num_generations, train2.steps_per_generation) == (3e-6, 4, 2)
    assert train2.output_dir == str(tmp_path / "b")  # flags still win
    with pytest.raises(InputError, match="configuration of a rlvr run"):
        stage_arguments("srl", ["--config", str(saved)])


def test_help_lists_ours_first_each_option_once():
    text = stage_parser("srl").format_help()
    ours, trl = text.index("Model, data and output format"), text.index("Options of TRL and transformers")
    assert ours < text.index("--dynamic_sampling ") < trl < text.index("--gradient_accumulation_steps ")
    assert text.index("--problem_field ") < trl  # the data options (as srl data build) are ours too
    flags = [line.split()[0] for line in text.splitlines() if line.startswith("  --")]
    assert len(flags) == len(set(flags)) and "--no_autojunk" not in flags
    assert len(text.splitlines()) < 700
    assert "(--no_autojunk: false)" in text


def test_srl_data_lists_its_commands(capsys):
    assert main(["data"]) == 0 and main(["data", "--help"]) == 0
    out = capsys.readouterr().out
    assert "data build" in out and "data export" in out and "unknown command" not in out


def test_output_is_not_wrapped_off_a_terminal():
    code = "from srl.console import console; console().print('/very/long/path/' * 20)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    assert len(out.splitlines()) == 1


def test_torch_threads_is_one_name_in_train_and_eval():
    """Issue 23 item 9: `srl eval --threads` and `srl train --torch_threads` named one concept twice; eval's option
    is now --torch_threads, and --threads (its old name) still works, in flags, YAML and Python."""
    from srl.evaluation import EvalConfig
    from srl.options import make_parser, parse

    parser = make_parser("srl eval", "", EvalConfig)
    (cfg,) = parse(parser, ["--model", "tiny", "--data", "x.jsonl", "--torch_threads", "2"])
    assert cfg.torch_threads == 2
    (cfg,) = parse(parser, ["--model", "tiny", "--data", "x.jsonl", "--threads", "3"])
    assert cfg.torch_threads == 3
    assert EvalConfig(model="tiny", data="x.jsonl", threads=4).torch_threads == 4
    run, _ = stage_arguments("srl", ["--model", "tiny", "--threads", "1", *CPU])
    assert run.torch_threads == 1
    assert "--torch_threads" in parser.format_help() and "  --threads" not in parser.format_help()
