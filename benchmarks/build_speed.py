"""Speed of building step-wise instances from all 7,473 GSM8K train solutions (`srl data build`).

Run from the repository root (after `make install`, or `.venv/bin/pip install -e .`):

    .venv/bin/python benchmarks/build_speed.py                          # /work/shared/data/gsm8k/train.jsonl
    .venv/bin/python benchmarks/build_speed.py path/to/gsm8k_train.jsonl [--repeats 3]

What is timed (wall clock, median of `--repeats` runs, each into a fresh temporary folder):

1. `srl.data.build.build(DataConfig(input, output=".../instances.jsonl", format="gsm8k"))`: the function behind
   `srl data build`, end to end: read the JSONL, cut every solution into steps, make the N-1 instances per
   solution, write them as JSONL (atomically).
2. The same with a folder as output (`datasets.Dataset.save_to_disk`).
3. Once, `srl data build --input ... --output ...` as a subprocess: includes interpreter start-up, imports and
   the progress bar and summary table.

"seconds" is wall-clock time (the target); "CPU s" is this process's CPU time, which a busy machine inflates
less.

Before timing, one untimed pass splits the work into its parts (read + split, make instances, write JSONL) so a
regression can be located. Target: under 10 s for the whole JSONL build.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

DEFAULT_INPUT = "/work/shared/data/gsm8k/train.jsonl"
TARGET_SECONDS = 10.0


def timed_build(input_path: str, output_name: str) -> tuple[float, float, object, int]:
    """(wall seconds, CPU seconds of this process, BuildSummary, bytes written) of one `srl.data.build.build` into a
    fresh temporary folder."""
    from srl.data.build import DataConfig, build

    tmp = tempfile.mkdtemp(prefix="srl-build-speed-")
    try:
        cfg = DataConfig(input=input_path, output=os.path.join(tmp, output_name), format="gsm8k")
        start, cpu_start = time.perf_counter(), time.process_time()
        summary = build(cfg)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        size = _size(cfg.output)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return seconds, cpu, summary, size


def _size(path: str) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def breakdown(input_path: str) -> list[tuple[str, float]]:
    """Untimed-by-the-median pass through the parts of a build: read + split, instances, write JSONL."""
    from srl.data.instances import InstanceOptions, build_instances, write_rows
    from srl.data.build import load_trajectories

    parts = []
    start = time.perf_counter()
    trajectories = list(load_trajectories(input_path, "gsm8k"))
    parts.append(("read + split into steps", time.perf_counter() - start))
    start = time.perf_counter()
    rows = list(build_instances(trajectories, InstanceOptions()))
    parts.append(("make instances", time.perf_counter() - start))
    tmp = tempfile.mkdtemp(prefix="srl-build-speed-")
    try:
        start = time.perf_counter()
        write_rows(rows, os.path.join(tmp, "instances.jsonl"))
        parts.append(("write JSONL", time.perf_counter() - start))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return parts


def _children_cpu() -> float:
    try:
        import resource
    except ImportError:  # not on POSIX
        return float("nan")
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cli_once(input_path: str) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, exit code) of `srl data build` run as a subprocess."""
    exe = os.path.join(os.path.dirname(sys.executable), "srl")
    if not os.path.exists(exe):
        raise SystemExit(f"build_speed: no `srl` command beside {sys.executable} (install the package: make install)")
    command = [exe]
    tmp = tempfile.mkdtemp(prefix="srl-build-speed-")
    try:
        argv = command + ["data", "build", "--input", input_path, "--format", "gsm8k",
                          "--output", os.path.join(tmp, "instances.jsonl")]
        start, cpu_start = time.perf_counter(), _children_cpu()
        result = subprocess.run(argv, capture_output=True, text=True)
        seconds, cpu = time.perf_counter() - start, _children_cpu() - cpu_start
        if result.returncode != 0:
            print(result.stdout + result.stderr, file=sys.stderr)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return seconds, cpu, result.returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input", nargs="?", default=DEFAULT_INPUT, help=f"GSM8K train JSONL (default {DEFAULT_INPUT})")
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement; the median is reported")
    args = parser.parse_args(argv)
    if not os.path.exists(args.input):
        raise SystemExit(f"no such file: {args.input} (pass the GSM8K train JSONL as the first argument)")

    import srl.data.build  # noqa: F401  (imports are not part of the timed builds)
    import datasets

    datasets.disable_progress_bars()

    print(f"input: {args.input}")
    load = " ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    print(f"python {sys.version.split()[0]} on {platform.machine()}, {os.cpu_count()} CPUs, load average {load}; "
          f"median of {args.repeats}\n")

    print("parts of one build (single pass):")
    for name, seconds in breakdown(args.input):
        print(f"  {name:28s} {seconds:7.2f} s")
    print()

    status = 0
    print(f"  {'output':30s} {'read':>6s} {'kept':>6s} {'instances':>10s} {'seconds':>8s} {'CPU s':>6s} "
          f"{'runs (s)':>16s} {'MB':>6s}")
    for label, name in (("instances.jsonl (JSONL)", "instances.jsonl"), ("instances/ (datasets folder)", "instances")):
        runs = [timed_build(args.input, name) for _ in range(args.repeats)]
        seconds = statistics.median(r[0] for r in runs)
        cpu = statistics.median(r[1] for r in runs)
        summary, size = runs[-1][2], runs[-1][3]
        all_runs = " ".join(f"{r[0]:.2f}" for r in runs)
        print(f"  {label:30s} {summary.read:6d} {summary.kept:6d} {summary.instances:10d} {seconds:8.2f} {cpu:6.2f} "
              f"{all_runs:>16s} {size / 1e6:6.1f}")
        if name.endswith(".jsonl") and seconds >= TARGET_SECONDS:
            print(f"  SLOW: {seconds:.2f} s >= target {TARGET_SECONDS:.0f} s")
            status = 1

    seconds, cpu, code = cli_once(args.input)
    print(f"\n  `srl data build` subprocess (once, incl. start-up): {seconds:.2f} s (CPU {cpu:.2f} s), exit code {code}")
    print(f"\ntarget: JSONL build < {TARGET_SECONDS:.0f} s")
    return status or (1 if code else 0)


if __name__ == "__main__":
    sys.exit(main())
