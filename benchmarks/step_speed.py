"""Whole SRL steps through `SRLTrainer` with `--shared_prefix false` (TRL's layout) and `true` (issue 11).

Run from the repository root (after `make install`):

    .venv/bin/python benchmarks/step_speed.py --workload a --steps 1 --threads 1
    .venv/bin/python benchmarks/step_speed.py --workload a,b --repeats 2 --json /tmp/steps.json

Workloads (the `hf` backend, dynamic sampling off so that a step is one generation round, the same seed):

- `a`: SmolLM2-135M-Instruct (fp32), 4 real GSM8K step instances (prompts with earlier expert steps, drawn
  with a fixed seed from the bundled GSM8K sample) x G=8 x 64 new tokens: one generation batch of 32 rows, the
  loss in 4 micro-batches of 8 (gradient accumulation 4: TRL's layout needed more than 15 GB at 16 rows per
  micro-batch and was killed by the OOM killer on this 23 GB machine, shared with another job).
- `b`: the `cpu-small` preset (SmolLM2, 4 prompts x G=4, 48 tokens, 16 rows per step).

Every completion is exactly max_completion_length tokens (`min_new_tokens`: the end token is suppressed), so both
layouts do the same work; the prompts, model and seed are the same. The sampled tokens differ (TRL's `generate`
draws with `torch.multinomial`, the shared prefill by inverse CDF: the same distribution, another stream).

Each (layout, repeat) runs in its own process, taking turns (false, true, false, true, ...), so that peak RSS
(`ru_maxrss`) is the layout's own. Per step: the whole step (callback to callback), generation (the `hf`
rollouts), log-probs + backward (the loss's forward and backward, plus any reference/old log-prob pass), the
optimizer step, the tokens the loss forwards (padded positions count: they are computed), and the physical
bound: the FLOPs of the step's distinct tokens (each prompt once) / this CPU's measured fp32 matmul rate.
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
from cpu_bound import bound_seconds, matmul_gflops  # noqa: E402

MODEL = "smollm2-135m-instruct"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workload", default="a,b", help="comma list of a, b (default both)")
    p.add_argument("--steps", type=int, default=1, help="timed steps per process (default 1)")
    p.add_argument("--repeats", type=int, default=1, help="processes per layout, taking turns (default 1)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: srl.training.threads)")
    p.add_argument("--model", default=MODEL)
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--sampler", action="store_true", help="only time the two samplers (per decoding step)")
    p.add_argument("--worker", help=argparse.SUPPRESS)  # internal: "<workload>,<shared>"
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


def worker(workload: str, shared: bool, steps: int, threads: int | None, model_name: str) -> dict:
    import logging

    import datasets
    import torch
    from transformers import TrainerCallback

    from srl.models import load_model_and_tokenizer
    from srl.generation.shared_prefill import prompt_runs
    from srl.rewards.stage import output_format, reward_funcs
    from srl.training.presets import stage_arguments
    from srl.training.rows import srl_rows
    from srl.training.threads import set_torch_threads
    from srl.training.trainer import SRLTrainer

    flags = workload_flags(workload, model_name) + [
        "--output_dir", tempfile.mkdtemp(prefix="step_speed-"), "--shared_prefix", str(shared).lower(),
        "--max_steps", str(steps), "--dynamic_sampling", "false", "--save_strategy", "no", "--report_to", "none",
        "--seed", "0", "--logging_steps", "1", "--disable_tqdm", "true"]
    run, cfg = stage_arguments("srl", flags)
    threads_line = set_torch_threads(threads)
    width = cfg.max_completion_length
    cfg.generation_kwargs = {"min_new_tokens": width}  # every completion is `width` tokens in both layouts
    rows = step_instances(srl_rows(run)) if workload == "a" else srl_rows(run)
    model, tokenizer = load_model_and_tokenizer(run.model, bf16=False, seed=cfg.seed)
    times: dict[str, list[float]] = {"generation": [], "loss": [], "optimizer": [], "step": [], "prepare": []}
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
            self.step = time.perf_counter()

        def on_pre_optimizer_step(self, args, state, control, **kwargs):
            self.opt = time.perf_counter()

        def on_optimizer_step(self, args, state, control, **kwargs):
            times["optimizer"][-1] = time.perf_counter() - self.opt

        def on_step_end(self, args, state, control, **kwargs):
            times["step"][-1] = time.perf_counter() - self.step

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
    return {"workload": workload, "shared_prefix": shared, "times": times, "tokens": step_tokens,
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, "threads": threads_line,
            "torch_threads": torch.get_num_threads(), "params": sum(p.numel() for p in model.parameters()),
            "hidden": c.hidden_size, "layers": c.num_hidden_layers, "vocab": c.vocab_size, "width": width,
            "fallbacks": sorted(fallbacks)}


# --- the comparison ---------------------------------------------------------------------------------------------
def run_worker(workload: str, shared: bool, args) -> dict:
    cmd = [sys.executable, __file__, "--worker", f"{workload},{shared}", "--steps", str(args.steps),
           "--model", args.model] + (["--threads", str(args.threads)] if args.threads else [])
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:  # reported in the table; the other cells still run
        print(f"worker {workload} shared_prefix={shared} failed (exit status {done.returncode}; -9: killed, e.g. "
              f"by the OOM killer):\n{done.stderr[-2000:]}", file=sys.stderr)
        return {"workload": workload, "shared_prefix": shared, "failed": done.returncode}
    return json.loads(done.stdout.strip().splitlines()[-1])


def median(values):
    return statistics.median(values) if values else float("nan")


def table(results: list[dict], rate: float) -> str:
    lines = ["| workload | layout | step (s) | generation (s) | log-probs + backward (s) | optimizer (s) | "
             "loss tokens forwarded | peak RSS (GB) | physical bound (s) | bound / step |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for workload in sorted({r["workload"] for r in results}):
        for shared in (False, True):
            mine = [r for r in results if r["workload"] == workload and r["shared_prefix"] == shared]
            name = "shared prefix" if shared else "TRL layout"
            if any("failed" in r for r in mine):
                lines.append(f"| {workload} | {name} | failed: exit status {mine[0]['failed']} (-9: killed) |")
                continue
            if not mine:
                continue
            t = {k: median([x for r in mine for x in r["times"][k]]) for k in ("step", "generation", "loss",
                                                                              "optimizer")}
            tok = mine[0]["tokens"]  # the first step's micro-batches
            forwarded = tok["shared"] if shared else tok["trl_layout"]
            bound = bound_seconds(mine[0], rate)
            lines.append(f"| {workload} | {name} | {t['step']:.1f} | "
                         f"{t['generation']:.1f} | {t['loss']:.1f} | {t['optimizer']:.2f} | {forwarded:,} | "
                         f"{max(r['peak_rss_gb'] for r in mine):.2f} | {bound:.1f} | {bound / t['step']:.0%} |")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    if args.sampler:  # the same as benchmarks/cpu_bound.py
        import cpu_bound

        return cpu_bound.main(["--threads", str(args.threads)] if args.threads else [])
    if args.worker:
        workload, shared = args.worker.split(",")
        print(json.dumps(worker(workload, shared == "True", args.steps, args.threads, args.model)))
        return
    load = os.getloadavg()
    results = []
    for workload in args.workload.split(","):
        for repeat in range(args.repeats):
            for shared in (False, True):
                started = time.perf_counter()
                results.append(run_worker(workload, shared, args))
                print(f"# {workload} shared_prefix={shared} repeat {repeat + 1}: {time.perf_counter() - started:.0f} s"
                      f" ({results[-1].get('threads', 'failed')})", flush=True)
    rate = matmul_gflops(args.threads)
    print(f"\nfp32 matmul rate: {rate:.1f} GFLOP/s; load average before: {load[0]:.2f}, after: "
          f"{os.getloadavg()[0]:.2f}\n")
    print(table(results, rate))
    for workload in sorted({r["workload"] for r in results}):
        mine = [r for r in results if r["workload"] == workload and "failed" not in r]
        if len({r["shared_prefix"] for r in mine}) < 2:
            continue
        steps = {s: median([x for r in mine if r["shared_prefix"] == s for x in r["times"]["step"]])
                 for s in (False, True)}
        tok = mine[0]["tokens"]
        n = len(tok["prompt_lengths"])
        print(f"\n{workload}: whole step {steps[False] / steps[True]:.2f}x faster with shared prefixes; "
              f"{n} prompts of {tok['prompt_lengths']} tokens x {tok['rows'] // n} rows x "
              f"{tok['completion_width']} tokens; fallbacks: {sorted({f for r in mine for f in r['fallbacks']})}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": results, "matmul_gflops": rate, "load": [load, os.getloadavg()]}, f, indent=1)


if __name__ == "__main__":
    main()
