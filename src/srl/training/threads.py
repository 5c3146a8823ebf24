"""Torch threads per training process: one thread per core in all.

torch sizes its thread pool from the machine's cores, whatever the process's CPU affinity (a container or `taskset`
limit) and however many training processes share the cores: two DDP processes on a 2-core machine then run 2
threads each, which mostly wait for each other. Here each process gets `cores in its affinity // processes on this
machine` threads (at least 1). `--torch_threads N` or the environment variable `SRL_TORCH_THREADS=N` overrides it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

ENV = "SRL_TORCH_THREADS"


def affinity_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS reports one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # no sched_getaffinity (macOS, Windows)
        return os.cpu_count() or 1


def choose_threads(requested: int | None = None, environ: Mapping[str, str] | None = None,
                   cores: int | None = None) -> tuple[int, str]:
    """(threads, why): `requested` (--torch_threads) first, then $SRL_TORCH_THREADS, else the cores of this
    process's affinity divided among the processes on this machine ($LOCAL_WORLD_SIZE, set by torchrun and
    accelerate).

    >>> choose_threads(environ={}, cores=2)
    (2, '2 cores in the CPU affinity / 1 training process on this machine')
    >>> [choose_threads(environ={"LOCAL_WORLD_SIZE": str(n)}, cores=4)[0] for n in (1, 2, 3, 8)]
    [4, 2, 1, 1]
    >>> choose_threads(3, environ={ENV: "1"}, cores=2)
    (3, '--torch_threads 3')
    """
    environ = os.environ if environ is None else environ
    if requested is not None:
        if requested < 1:
            raise ValueError("torch_threads must be >= 1")
        return requested, f"--torch_threads {requested}"
    if environ.get(ENV):
        value = int(environ[ENV])
        if value < 1:
            raise ValueError(f"{ENV} must be >= 1")
        return value, f"${ENV}={value}"
    cores = affinity_cores() if cores is None else cores
    processes = max(int(environ.get("LOCAL_WORLD_SIZE", "1") or 1), 1)
    plural = "es" if processes > 1 else ""
    return max(cores // processes, 1), (f"{cores} cores in the CPU affinity / {processes} training "
                                        f"process{plural} on this machine")


def set_torch_threads(requested: int | None = None) -> str:
    """Set torch's intra-op threads as `choose_threads` says; returns the line for the run's log."""
    import torch

    threads, why = choose_threads(requested)
    torch.set_num_threads(threads)
    return f"torch threads: {threads} ({why})"
