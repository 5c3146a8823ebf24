"""Two CPU processes (gloo): dynamic sampling keeps the global batch right when one prompt's G rollouts are
spread over both processes."""

import json
import os
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # two processes train under torchrun

HERE = os.path.dirname(__file__)


def test_two_processes_keep_the_global_batch_right(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                             "--master_port", "29533", os.path.join(HERE, "ddp_dynamic_sampling.py"), str(tmp_path)],
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.load(open(tmp_path / f"rank{r}.json")) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    steps = len(ranks[0]["records"])
    assert steps == 3 and len(ranks[1]["records"]) == 3
    for step in range(steps):
        r0, r1 = ranks[0]["records"][step], ranks[1]["records"][step]
        assert len(r0["prompts"]) == 6 and len(r1["prompts"]) == 6  # each process keeps its share: 6 rows
        prompts = r0["prompts"] + r1["prompts"]  # the global batch: 3 prompts x G=4, in order
        advantages = r0["advantages"] + r1["advantages"]
        for g in range(3):
            group = prompts[4 * g:4 * g + 4]
            assert len(set(group)) == 1, "a group's rows were not kept together"
            start = int(re.search(r"Start at (\d+)", group[0]).group(1))
            assert start % 2 == 1, "a zero-std (even-start) group was trained on"
            assert any(abs(a) > 0 for a in advantages[4 * g:4 * g + 4])
        # the loss normaliser is the global token count, identical on both processes
        assert r0["num_items_in_batch"] == r1["num_items_in_batch"] == r0["tokens"] + r1["tokens"]
    logs = [h for h in ranks[0]["logs"] if h]
    assert any(h["dynamic_sampling/filtered_fraction"] > 0 for h in logs)
    assert all(h["dynamic_sampling/cap_hit"] == 0 for h in logs)


def test_two_processes_shared_prefix_gradients_equal_trl_s_layout(tmp_path):
    """A group straddles the two processes (6 rows each, G=4): the all-reduced gradients of the shared-prefix
    route equal TRL's layout's, and training through it runs under DDP."""
    import torch

    from test_shared_prefix import assert_same_gradients

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                             "--master_port", "29534", os.path.join(HERE, "ddp_shared_prefix.py"), str(tmp_path)],
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    assert sorted(e - s for s, e in ranks[0]["runs"]) == [2, 4] == sorted(e - s for s, e in ranks[1]["runs"])
    for r in ranks:
        assert_same_gradients(r["grads"][False], r["grads"][True])
    for name, g in ranks[0]["grads"][True].items():  # DDP averaged them: the same on both processes
        assert torch.allclose(g, ranks[1]["grads"][True][name], atol=1e-7), name
