"""Whole SRL steps through `SRLTrainer` with `--shared_prefix false` (TRL's layout) and `true` (issue 11).

Run from the repository root (after `make install`):

    .venv/bin/python benchmarks/step_speed.py --workload a --steps 1 --threads 1
    .venv/bin/python benchmarks/step_speed.py --workload a,b --repeats 2 --json /tmp/steps.json
    .venv/bin/python benchmarks/step_speed.py --workload a,b --layouts shared --dtypes fp32,bf16 --threads 1,2
    .venv/bin/python benchmarks/step_speed.py --layouts shared --against /tmp/before/src   # before / after a change

Workloads (the `hf` backend, dynamic sampling off so that a step is one generation round, the same seed):

- `a`: SmolLM2-135M-Instruct (fp32), 4 real GSM8K step instances (prompts with earlier expert steps, drawn
  with a fixed seed from the bundled GSM8K sample) x G=8 x 64 new tokens: one generation batch of 32 rows, the
  loss in 4 micro-batches of 8 (gradient accumulation 4: TRL's layout needed more than 15 GB at 16 rows per
  micro-batch and was killed by the OOM killer on this 23 GB machine, shared with another job).
- `b`: the `cpu-small` preset (SmolLM2, 4 prompts x G=4, 48 tokens, 16 rows per step).

Every completion is exactly max_completion_length tokens (`min_new_tokens`: the end token is suppressed), so both
layouts do the same work; the prompts, model and seed are the same. The sampled tokens differ (TRL's `generate`
draws with `torch.multinomial`, the shared prefill by inverse CDF: the same distribution, another stream).

Each cell (workload x layout x dtype x threads x backend, and with `--against` the other checkout's `srl`) runs in
its own process, the cells taking turns within each repeat, so that they see the same load and peak RSS
(`ru_maxrss`) is the cell's own. `bf16` is the CPU training path of `srl.precision`: fp32 weights (the master copy)
under bf16 autocast (TRL's `--bf16 true`). Per step: the whole step (callback to callback), generation (the `hf`
rollouts), log-probs + backward (the loss's forward and backward, plus any reference/old log-prob pass), the
optimizer step, the tokens the loss forwards (padded positions count: they are computed), the process's CPU
seconds (under load, wall time also counts waiting for a core), and the physical bound of each part
(benchmarks/cpu_bound.py): generation and loss, the FLOPs of the step's distinct tokens (each prompt once) / this
CPU's measured matmul rate in the cell's dtype and threads; the optimizer, AdamW's memory traffic / the measured
copy bandwidth. The table gives each part's bound / time and the whole step's.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cpu_bound import bounds, copy_bandwidth_gbs, matmul_gflops  # noqa: E402

MODEL = "smollm2-135m-instruct"
USER_THP = os.environ.get("THP_MEM_ALLOC_ENABLE")  # before `import srl` sets it in this process


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workload", default="a,b", help="comma list of a, b (default both)")
    p.add_argument("--steps", type=int, default=1, help="timed steps per process (default 1)")
    p.add_argument("--repeats", type=int, default=1, help="processes per layout, taking turns (default 1)")
    p.add_argument("--threads", default=None, help="torch threads, a comma list (default: srl.training.threads)")
    p.add_argument("--layouts", default="trl,shared", help="comma list of trl, shared (default both)")
    p.add_argument("--dtypes", default="fp32", help="comma list of fp32, bf16 (bf16: fp32 weights, bf16 autocast)")
    p.add_argument("--backends", default="hf", help="comma list of hf, vllm (rollouts)")
    p.add_argument("--thp", default=None, help="comma list of 0, 1: THP_MEM_ALLOC_ENABLE for the cell's process "
                                               "(torch's transparent huge pages; default: as srl sets it)")
    p.add_argument("--against", help="also run every cell with srl imported from this folder (another checkout's "
                                     "src/), interleaved: before / after a change")
    p.add_argument("--model", default=MODEL)
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--sampler", action="store_true", help="only time the two samplers (per decoding step)")
    p.add_argument("--worker", help=argparse.SUPPRESS)  # internal: a cell, as JSON
    return p.parse_args(argv)


# --- one layout, in its own process -------------------------------------------------------------------------
def workload_flags(workload: str, model: str) -> list[str]:
    if workload == "a":
        return ["--model", model, "--think", "optional", "--use_cpu", "true", "--bf16", "false",
                "--num_generations", "8", "--per_device_train_batch_size", "8", "--gradient_accumulation_steps", "4",
                "--max_completion_length", "64",
                "--learning_rate", "2e-6", "--dataloader_pin_memory", "false"]
    if workload == "b":
        return ["--preset", "cpu-small", "--model", model]
    raise SystemExit(f"unknown workload {workload}")


def step_instances(rows: list[dict], n: int = 4, seed: int = 0) -> list[dict]:
    """n step instances with earlier expert steps in their prompt, drawn with a fixed seed."""
    later = [r for r in rows if r.get("step_index", 0) >= 2]
    return random.Random(seed).sample(later, n)


def worker(workload: str, shared: bool, steps: int, threads: int | None, model_name: str, dtype: str = "fp32",
           backend: str = "hf") -> dict:
    import logging

    import srl  # noqa: F401  first: it sets torch's huge pages before any allocation, as in `srl train`
    import datasets
    import torch
    from transformers import TrainerCallback

    from srl.models import load_model_and_tokenizer
    from srl.generation.shared_prefill import prompt_runs
    from srl.rewards.stage import output_format, reward_funcs
    from srl.training.presets import stage_arguments
    from srl.training.rows import srl_rows
    from srl.training.threads import set_torch_threads
    try:
        from srl.training.threads import huge_pages_line
    except ImportError:  # an older srl (--against)
        def huge_pages_line():
            return f"huge pages: not reported (THP_MEM_ALLOC_ENABLE={os.environ.get('THP_MEM_ALLOC_ENABLE', 'unset')})"
    from srl.training.trainer import SRLTrainer

    flags = workload_flags(workload, model_name) + [
        "--output_dir", tempfile.mkdtemp(prefix="step_speed-"), "--shared_prefix", str(shared).lower(),
        "--max_steps", str(steps), "--dynamic_sampling", "false", "--save_strategy", "no", "--report_to", "none",
        "--seed", "0", "--logging_steps", "1", "--disable_tqdm", "true", "--bf16", str(dtype == "bf16").lower(),
        "--backend", backend]
    run, cfg = stage_arguments("srl", flags)
    threads_line = f"{set_torch_threads(threads)}; {huge_pages_line()}"
    width = cfg.max_completion_length
    # every completion is `width` tokens in every cell (vLLM's SamplingParams name it min_tokens)
    cfg.generation_kwargs = {"min_tokens" if backend == "vllm" else "min_new_tokens": width}
    rows = step_instances(srl_rows(run)) if workload == "a" else srl_rows(run)
    model, tokenizer = load_model_and_tokenizer(run.model, bf16=False, seed=cfg.seed)  # fp32: the master copy
    times: dict[str, list[float]] = {"generation": [], "loss": [], "optimizer": [], "step": [], "prepare": [],
                                     "cpu": []}
    tokens: list[dict] = []
    fallbacks: set[str] = set()  # the trainer's "shared prefix: <layout>: <reason>" warnings

    class Fallbacks(logging.Handler):
        def emit(self, record):
            if record.getMessage().startswith("shared prefix:"):
                fallbacks.add(record.getMessage())

    def timed(key: str, method):
        def call(self, *a, **k):
            t = time.perf_counter()
            try:
                return method(self, *a, **k)
            finally:
                times[key][-1] += time.perf_counter() - t
        return call

    class Timed(SRLTrainer):
        _generate_single_turn = timed("generation", SRLTrainer._generate_single_turn)
        _prepare_inputs = timed("prepare", SRLTrainer._prepare_inputs)

        def _compute_loss(self, model, inputs):
            ids, mask = inputs["prompt_ids"], inputs["prompt_mask"]
            runs, (rows_, p_width), c_width = prompt_runs(ids, mask), ids.shape, inputs["completion_ids"].size(1)
            lengths = [int(mask[s].sum()) for s, _ in runs]
            unique = {tuple(i[m.bool()].tolist()) for i, m in zip(ids, mask)}
            tokens.append({"step": self.state.global_step, "rows": rows_, "completion_width": c_width,
                           "trl_layout": rows_ * (p_width + c_width),  # every row: its padded prompt + completion
                           "shared": len(runs) * max(lengths) + rows_ * (c_width + 1),  # prompts once per run
                           "prompts": sorted(str(hash(u)) + ":" + str(len(u)) for u in unique)})
            return super()._compute_loss(model, inputs)

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            for key in times:
                times[key].append(0.0)
            self.step, self.cpu = time.perf_counter(), time.process_time()

        def on_pre_optimizer_step(self, args, state, control, **kwargs):
            self.opt = time.perf_counter()

        def on_optimizer_step(self, args, state, control, **kwargs):
            times["optimizer"][-1] = time.perf_counter() - self.opt

        def on_step_end(self, args, state, control, **kwargs):
            times["step"][-1] = time.perf_counter() - self.step
            times["cpu"][-1] = time.process_time() - self.cpu

    logging.getLogger("srl").addHandler(Fallbacks(logging.WARNING))
    Timed(model=model, reward_funcs=reward_funcs("srl", run), args=cfg, train_dataset=datasets.Dataset.from_list(rows),
          processing_class=tokenizer, output_format=output_format(run), callbacks=[Clock()]).train()
    for i in range(len(times["step"])):  # the loss: the step, less generation/scoring and the optimizer
        times["loss"][i] = times["step"][i] - times["prepare"][i] - times["optimizer"][i]
    first = [t for t in tokens if t["step"] == tokens[0]["step"]]  # the first step's micro-batches
    prompts = sorted(set(p for t in first for p in t["prompts"]))
    step_tokens = {"rows": sum(t["rows"] for t in first), "micro_batches": len(first),
                   "completion_width": first[0]["completion_width"],
                   "trl_layout": sum(t["trl_layout"] for t in first), "shared": sum(t["shared"] for t in first),
                   "prompt_lengths": sorted(int(p.split(":")[1]) for p in prompts)}
    c = model.config
    return {"workload": workload, "shared_prefix": shared, "dtype": dtype, "backend": backend,
            "autocast": bool(cfg.bf16), "times": times, "tokens": step_tokens,
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, "threads": threads_line,
            "thp_line": os.environ.get("THP_MEM_ALLOC_ENABLE", "unset"),
            "torch_threads": torch.get_num_threads(), "params": sum(p.numel() for p in model.parameters()),
            "hidden": c.hidden_size, "layers": c.num_hidden_layers, "vocab": c.vocab_size, "width": width,
            "fallbacks": sorted(fallbacks)}


# --- the comparison ---------------------------------------------------------------------------------------------
def cells(args) -> list[dict]:
    """Every combination of the options, in the order the cells take turns."""
    threads = [int(t) for t in args.threads.split(",")] if args.threads else [None]
    sources = [None] + ([os.path.abspath(args.against)] if args.against else [])
    thp = args.thp.split(",") if args.thp else [None]
    return [{"workload": w, "shared": layout == "shared", "dtype": d, "threads": t, "backend": b, "src": src,
             "thp": h}
            for w in args.workload.split(",") for t in threads for d in args.dtypes.split(",")
            for b in args.backends.split(",") for layout in args.layouts.split(",") for h in thp for src in sources]


def cell_name(c: dict) -> str:
    return (f"{c['workload']} {'shared' if c['shared'] else 'trl'} {c['dtype']} {c['backend']} "
            f"threads={c['threads'] or 'auto'}" + (f" THP={c['thp']}" if c.get("thp") else "")
            + (" (against)" if c["src"] else ""))


def run_worker(cell: dict, args) -> dict:
    cmd = [sys.executable, __file__, "--worker", json.dumps(cell), "--steps", str(args.steps), "--model", args.model]
    env = dict(os.environ)
    if cell["src"]:  # the other checkout's srl first on the path
        env["PYTHONPATH"] = cell["src"] + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("THP_MEM_ALLOC_ENABLE", None)  # a cell's srl decides, as in `srl train` (--against: the older srl's)
    if cell.get("thp") or USER_THP is not None:
        env["THP_MEM_ALLOC_ENABLE"] = cell.get("thp") or USER_THP
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    info = {"workload": cell["workload"], "shared_prefix": cell["shared"], "dtype": cell["dtype"],
            "backend": cell["backend"], "requested_threads": cell["threads"], "src": cell["src"],
            "thp": cell.get("thp")}
    if done.returncode != 0:  # reported in the table; the other cells still run
        print(f"worker {cell_name(cell)} failed (exit status {done.returncode}; -9: killed, e.g. by the OOM "
              f"killer):\n{done.stderr[-2000:]}", file=sys.stderr)
        return {**info, "failed": done.returncode}
    return {**info, **json.loads(done.stdout.strip().splitlines()[-1])}


def median(values):
    return statistics.median(values) if values else float("nan")


def key(r: dict) -> tuple:
    return (r["workload"], r["shared_prefix"], r["dtype"], r["backend"], r["requested_threads"], r["src"] or "",
            r.get("thp") or "")


def table(results: list[dict], rates: dict, bandwidth: float) -> str:
    """One row per cell: the medians over its steps, each part's bound and bound / time."""
    lines = ["| workload | layout | dtype | backend | threads | THP | srl | step (s) | CPU s | generation (s) | "
             "log-probs + backward (s) | optimizer (s) | loss tokens forwarded | peak RSS (GB) | bounds: gen / loss / "
             "opt (s) | bound / time: gen, loss, opt | physical bound (s) | bound / step |",
             "|" + "---|" * 18]
    for k in sorted({key(r) for r in results}, key=str):
        mine = [r for r in results if key(r) == k]
        name = "shared prefix" if k[1] else "TRL layout"
        src = "against" if k[5] else "this"
        first = f"| {k[0]} | {name} | {k[2]} | {k[3]} | {k[4] or 'auto'} | {mine[0].get('thp_line', '?')} | {src} |"
        if any("failed" in r for r in mine):
            lines.append(f"{first} failed: exit status {mine[0]['failed']} (-9: killed) |")
            continue
        t = {x: median([v for r in mine for v in r["times"][x]]) for x in ("step", "cpu", "generation", "loss",
                                                                          "optimizer")}
        tok = mine[0]["tokens"]  # the first step's micro-batches
        forwarded = tok["shared"] if k[1] else tok["trl_layout"]
        b = bounds(mine[0], rates[(k[2], mine[0]["torch_threads"])], bandwidth)
        total = sum(b.values())
        lines.append(f"{first} {t['step']:.1f} | {t['cpu']:.1f} | {t['generation']:.1f} | {t['loss']:.1f} | "
                     f"{t['optimizer']:.2f} | {forwarded:,} | {max(r['peak_rss_gb'] for r in mine):.2f} | "
                     f"{b['generation']:.1f} / {b['loss']:.1f} / {b['optimizer']:.2f} | "
                     f"{b['generation'] / t['generation']:.0%}, {b['loss'] / t['loss']:.0%}, "
                     f"{b['optimizer'] / t['optimizer']:.0%} | {total:.1f} | {total / t['step']:.0%} |")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    if args.sampler:  # the same as benchmarks/cpu_bound.py
        import cpu_bound

        return cpu_bound.main(["--threads", args.threads] if args.threads else [])
    if args.worker:
        c = json.loads(args.worker)
        print(json.dumps(worker(c["workload"], c["shared"], args.steps, c["threads"], args.model, c["dtype"],
                                c["backend"])))
        return
    from dtype_matmul import cpu_line

    print(cpu_line(), flush=True)
    load = os.getloadavg()
    from srl.training.threads import choose_threads

    # the matmul rate before and after the cells, the better of the two (another job, or the host's, slows one)
    wanted = {(c["dtype"], c["threads"] or choose_threads()[0]) for c in cells(args)}
    first = {(d, t): matmul_gflops(t, d) for d, t in wanted}
    results = []
    for repeat in range(args.repeats):
        for c in cells(args):
            started = time.perf_counter()
            results.append(run_worker(c, args))
            print(f"# {cell_name(c)} repeat {repeat + 1}: {time.perf_counter() - started:.0f} s "
                  f"({results[-1].get('threads', 'failed')}; load {os.getloadavg()[0]:.2f})", flush=True)
    last = {(d, t): matmul_gflops(t, d) for d, t in {(r["dtype"], r["torch_threads"]) for r in results
                                                       if "failed" not in r}}
    rates = {k: max(v, first.get(k, 0.0)) for k, v in last.items()}
    bandwidth = copy_bandwidth_gbs()
    print(f"\nmatmul rates (GFLOP/s, by dtype and threads; before / after the cells, the bounds use the better): "
          f"{ {f'{d} x{t}': f'{first.get((d, t), 0):.1f} / {v:.1f}' for (d, t), v in last.items()} }; "
          f"copy bandwidth {bandwidth:.1f} GB/s; load average before: {load[0]:.2f}, after: {os.getloadavg()[0]:.2f}\n")
    print(table(results, rates, bandwidth))
    for workload in sorted({r["workload"] for r in results}):
        mine = [r for r in results if r["workload"] == workload and "failed" not in r]
        if mine:
            tok = mine[0]["tokens"]
            n = len(tok["prompt_lengths"])
            print(f"\n{workload}: {n} prompts of {tok['prompt_lengths']} tokens x {tok['rows'] // n} rows x "
                  f"{tok['completion_width']} tokens; fallbacks: "
                  f"{sorted({f for r in mine for f in r['fallbacks']})}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": results, "matmul_gflops": {f"{d} x{t}": v for (d, t), v in rates.items()},
                       "matmul_gflops_before_after": {f"{d} x{t}": [first.get((d, t)), v] for (d, t), v in last.items()},
                       "copy_gbs": bandwidth, "load": [load, os.getloadavg()]}, f, indent=1)


if __name__ == "__main__":
    main()
