"""Checkpoints: a run killed with SIGKILL resumes from its last complete checkpoint, with the same data order
and optimizer state (its final weights equal an uninterrupted run's), and a half-written checkpoint is never
taken for a complete one."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from srl.data.instances import InstanceOptions, trajectory_instances, write_rows
from srl.tiny import synthetic_trajectories
from srl.training.checkpoints import COMPLETE_MARKER, last_complete_checkpoint

STEPS = 8


def command(data, out, *extra):
    return [sys.executable, "-m", "srl.cli", "train", "--stage", "srl", "--model", "tiny", "--train_data", data,
            "--think", "off", "--use_cpu", "true", "--bf16", "false", "--per_device_train_batch_size", "8",
            "--num_generations", "4", "--max_completion_length", "8", "--max_steps", str(STEPS), "--save_steps", "2",
            "--learning_rate", "1e-3", "--dataloader_pin_memory", "false", "--seed", "0", "--tiny_warm_up_steps", "5",
            "--output_dir", out, *extra]


def env():
    # one thread each: the reference and the killed run train side by side on a 2-core machine
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}


@pytest.mark.slow  # three training runs, one killed
def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path):
    data = str(tmp_path / "instances.jsonl")
    write_rows([r for t in synthetic_trajectories(32) for r in trajectory_instances(t, InstanceOptions(think="off"))],
               data)
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    reference = subprocess.Popen(command(data, a), env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    killed = subprocess.Popen(command(data, b), env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marker = os.path.join(b, "checkpoint-4", COMPLETE_MARKER)
    deadline = time.time() + 1800  # only against a hang: a busy machine can take minutes to get there
    while time.time() < deadline and not os.path.exists(marker):
        assert killed.poll() is None, "the run ended before it could be killed"
        time.sleep(0.05)
    assert os.path.exists(marker), "checkpoint-4 was not written in 30 minutes"
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert reference.wait(timeout=1800) == 0, reference.stderr.read().decode()[-2000:]

    ckpt = last_complete_checkpoint(b)
    assert ckpt is not None and int(ckpt.rsplit("-", 1)[1]) >= 4
    assert not os.path.exists(os.path.join(b, "final"))
    # Without --resume the folder is refused, with one line and exit code 2.
    refused = subprocess.run(command(data, b), env=env(), capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "--resume" in refused.stderr
    resumed = subprocess.run(command(data, b, "--resume"), env=env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]

    steps = [json.loads(line)["step"] for line in open(os.path.join(b, "metrics.jsonl"))
             if "train_runtime" not in line]
    assert steps == list(range(1, STEPS + 1))  # no step logged twice, none missing
    wa = load_file(os.path.join(a, "final", "model.safetensors"))
    wb = load_file(os.path.join(b, "final", "model.safetensors"))
    assert wa.keys() == wb.keys()
    for name in wa:
        torch.testing.assert_close(wa[name], wb[name], rtol=1e-5, atol=1e-6, msg=name)


def test_half_written_checkpoint_is_ignored(tmp_path):
    for step, complete in ((2, True), (4, True), (6, False)):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"")
        if complete:
            (folder / COMPLETE_MARKER).write_text("{}")
    assert last_complete_checkpoint(str(tmp_path)) == str(tmp_path / "checkpoint-4")
    assert last_complete_checkpoint(str(tmp_path / "missing")) is None


@pytest.mark.slow  # one training run
def test_killed_while_writing_final_then_resume_trains_no_more(tmp_path):
    """Issue 24 item 1: final/ written without its marker (a kill during the save), then --resume: final/ is
    finished from the checkpoint saved when training ended, with no step trained again (it trained step 4 of
    --max_steps 3 before)."""
    data = str(tmp_path / "instances.jsonl")
    write_rows([r for t in synthetic_trajectories(16) for r in trajectory_instances(t, InstanceOptions(think="off"))],
               data)
    out = str(tmp_path / "run")
    argv = [a if a != str(STEPS) else "4" for a in command(data, out)]
    done = subprocess.run(argv, env=env(), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    final = os.path.join(out, "final")
    weights = {k: v.clone() for k, v in load_file(os.path.join(final, "model.safetensors")).items()}  # not mmapped
    assert json.load(open(os.path.join(out, "checkpoint-4", COMPLETE_MARKER)))["training_ended"] is True
    os.remove(os.path.join(final, COMPLETE_MARKER))  # the kill: final/ half-written
    with open(os.path.join(final, "model.safetensors"), "r+b") as f:
        f.truncate(100)
    resumed = subprocess.run(argv + ["--resume"], env=env(), capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    again = load_file(os.path.join(final, "model.safetensors"))
    assert again.keys() == weights.keys()
    assert [k for k in weights if not torch.equal(again[k], weights[k])] == []
    assert json.load(open(os.path.join(final, COMPLETE_MARKER)))["global_step"] == 4
    steps = [json.loads(line)["step"] for line in open(os.path.join(out, "metrics.jsonl")) if "train_runtime" not in line]
    assert max(steps) == 4
