"""Torch threads per training process (issue 11, item 3): the cores of the process's CPU affinity divided among
the training processes on the machine, overridable by --torch_threads or $SRL_TORCH_THREADS, and stated."""

import doctest
import os

import pytest
import torch

import srl.training.threads as threads
from srl.errors import InputError
from srl.training.config import RunArguments
from srl.training.threads import ENV, affinity_cores, choose_threads, set_torch_threads


def test_doctests():
    assert doctest.testmod(threads).failed == 0


def test_the_affinity_is_the_process_s_own():
    expected = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert affinity_cores() == expected >= 1


def test_one_thread_per_core_in_all():
    for cores in (1, 2, 4, 16):
        for processes in (1, 2, 3, 4):
            n, why = choose_threads(environ={"LOCAL_WORLD_SIZE": str(processes)}, cores=cores)
            assert n == max(cores // processes, 1)
            assert f"{cores} cores" in why and f"{processes} training process" in why


def test_overrides_come_first():
    assert choose_threads(environ={ENV: "3", "LOCAL_WORLD_SIZE": "2"}, cores=2) == (3, f"${ENV}=3")
    assert choose_threads(5, environ={ENV: "3"}, cores=2)[0] == 5
    for bad in ("0", "-1"):
        with pytest.raises(ValueError):
            choose_threads(environ={ENV: bad}, cores=2)
    with pytest.raises(ValueError):
        choose_threads(0, environ={}, cores=2)
    with pytest.raises(InputError):
        RunArguments(torch_threads=0)


def test_set_torch_threads_sets_and_says(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.setattr(threads, "affinity_cores", lambda: 2)
    try:
        line = set_torch_threads()
        assert torch.get_num_threads() == 2
        assert line == "torch threads: 2 (2 cores in the CPU affinity / 1 training process on this machine)"
        assert set_torch_threads(1) == "torch threads: 1 (--torch_threads 1)" and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("before,expected", [
    ("", "huge pages: on (THP_MEM_ALLOC_ENABLE=1)"),
    ("import torch; torch.zeros(1); ", "huge pages: off (THP_MEM_ALLOC_ENABLE=1 was set after torch's first "
                                      "allocation: set it before)")])
def test_import_srl_gives_torch_huge_pages_and_the_line_says_whether_they_took(before, expected):
    """`import srl` sets THP_MEM_ALLOC_ENABLE=1 (docs/benchmarks.md: a CPU step a few percent faster); torch reads it at
    its first allocation, so a program that allocated first keeps 4 KB pages, and the run's line says so."""
    import subprocess
    import sys

    if not os.path.exists("/proc/self/smaps"):
        pytest.skip("no /proc/self/smaps: the line says 'unknown' (not Linux)")
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    code = before + "import srl; from srl.training.threads import huge_pages_line; print(huge_pages_line())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == expected
    code = "import srl; from srl.training.threads import huge_pages_line; print(huge_pages_line())"
    out = subprocess.run([sys.executable, "-c", code], env={**env, "THP_MEM_ALLOC_ENABLE": "0"},
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "huge pages: off (THP_MEM_ALLOC_ENABLE=0)"  # the user's setting wins
