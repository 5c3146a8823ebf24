"""A training run never overwrites a user's files (issue 24 item 2): a non-empty --output_dir that no srl run
wrote is refused in one line, unless --overwrite_output_dir."""

import pytest

from srl.cli import main
from srl.training.presets import stage_arguments
from srl.training.stages import is_run_folder, prepare_output_dir

TINY = ["--model", "tiny", "--use_cpu", "true", "--bf16", "false"]


def test_a_user_folder_is_refused_and_left_as_it_was(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "README.md").write_text("my notes")
    (mine / "metrics.jsonl").write_text('{"mine": 1}\n')
    code = main(["train", "--stage", "srl", *TINY, "--output_dir", str(mine)])
    err = capsys.readouterr().err
    assert code == 2 and "--overwrite_output_dir" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in mine.iterdir()) == ["README.md", "metrics.jsonl"]
    assert (mine / "README.md").read_text() == "my notes"


def test_overwrite_output_dir_and_our_own_run_folders_pass(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("x")
    run, cfg = stage_arguments("srl", [*TINY, "--output_dir", str(mine), "--overwrite_output_dir", "true"])
    assert prepare_output_dir(cfg, run) is None
    ours = tmp_path / "ours"
    ours.mkdir()
    (ours / "config_srl.json").write_text("{}")
    (ours / "metrics.jsonl").write_text("")
    assert is_run_folder(str(ours)) and is_run_folder(str(tmp_path / "missing"))
    run, cfg = stage_arguments("srl", [*TINY, "--output_dir", str(ours)])
    assert prepare_output_dir(cfg, run) is None


@pytest.mark.slow  # a one-step training run
def test_a_kl_penalty_with_the_tiny_model_trains(tmp_path):
    """Issue 24 item 7: `--beta 0.04` with a model built here (no name_or_path to load a reference from) gave a
    traceback; the reference is now the model as training starts, saved in the run folder."""
    out = tmp_path / "run"
    assert main(["train", "--stage", "srl", *TINY, "--beta", "0.04", "--max_steps", "1",
                 "--per_device_train_batch_size", "4", "--num_generations", "4", "--max_completion_length", "8",
                 "--tiny_warm_up_steps", "1", "--output_dir", str(out)]) == 0
    assert (out / "reference_model" / "config.json").exists() and (out / "final" / "config.json").exists()


def test_demo_max_steps_0_builds_the_data_and_trains_nothing(tmp_path, capsys):
    assert main(["demo", "--model", "tiny", "--max_steps", "0", "--output_dir", str(tmp_path / "d")]) == 0
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["instances.jsonl"]
    assert "nothing trained" in capsys.readouterr().out
