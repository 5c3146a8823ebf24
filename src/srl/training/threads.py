"""Torch threads per training process (one thread per core in all), and whether its tensors get huge pages.

torch sizes its thread pool from the machine's cores, whatever the process's CPU affinity (a container or `taskset`
limit) and however many training processes share the cores: two DDP processes on a 2-core machine then run 2
threads each, which mostly wait for each other. Here each process gets `cores in its affinity // processes on this
machine` threads (at least 1). `--torch_threads N` or the environment variable `SRL_TORCH_THREADS=N` overrides it.

Huge pages: `import srl` sets `THP_MEM_ALLOC_ENABLE=1` (unless set), which makes torch's CPU allocator ask for
transparent huge pages for tensors of 2 MB and more. A training step allocates gigabytes of fresh memory
(activations, gradients, the optimizer's state, the KV cache), and on the virtual machines measured here a page
fault per 4 KB made that slow (600 MB first touched in 1.2-2.3 s, 0.2 s with huge pages; a whole SRL step 2-4%
faster measured on a quiet machine, docs/benchmarks.md). torch reads the variable once, at its first allocation:
a program that allocated a CPU tensor before importing srl keeps 4 KB pages, and `huge_pages_line` says so.
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


def huge_pages_line() -> str:
    """Whether torch's CPU allocator asks for huge pages in this process, from what it did: with
    THP_MEM_ALLOC_ENABLE in effect, the mapping of a 4 MB tensor is marked for huge pages (`hg` among its
    VmFlags in /proc/self/smaps; Linux)."""
    import torch

    setting = os.environ.get("THP_MEM_ALLOC_ENABLE", "unset")
    probe = torch.empty(1 << 20)  # 4 MB
    marked = _marked_for_huge_pages(probe.data_ptr())
    if marked is None:
        return f"huge pages: unknown (THP_MEM_ALLOC_ENABLE={setting}; no /proc/self/smaps)"
    if marked:
        return f"huge pages: on (THP_MEM_ALLOC_ENABLE={setting})"
    if setting == "1":
        return "huge pages: off (THP_MEM_ALLOC_ENABLE=1 was set after torch's first allocation: set it before)"
    return f"huge pages: off (THP_MEM_ALLOC_ENABLE={setting})"


def _marked_for_huge_pages(address: int) -> bool | None:
    """Whether the memory mapping holding `address` has MADV_HUGEPAGE (None where the OS does not say)."""
    try:
        with open("/proc/self/smaps") as f:
            inside = False
            for line in f:
                head = line.split(maxsplit=1)[0]
                if line[0] in "0123456789abcdef" and "-" in head:  # a mapping's first line: start-end perms ...
                    start, _, end = head.partition("-")
                    inside = int(start, 16) <= address < int(end, 16)
                elif inside and head == "VmFlags:":
                    return "hg" in line.split()[1:]
    except (OSError, ValueError):
        return None
    return None
