"""Overhead of `SRLTrainer` over TRL's plain `GRPOTrainer`, and what dynamic sampling buys, on CPU (the setup and
the documented run: docs/benchmarks.md, "SRLTrainer overhead").

    .venv/bin/python benchmarks/trainer_overhead.py      # the documented run: 3.5 min on 2 cores (7 min under load)
    .venv/bin/python benchmarks/trainer_overhead.py --repeats 1 --steps 4 --warmup 1   # a quick smoke run

Both trainers get the same model (`srl.tiny`'s tokenizer and a Llama of `--hidden`/`--layers`, warmed up with
`srl.tiny.warm_up` so that it writes step-shaped text; every run from the same weights), data (step-wise
instances of `srl.tiny.synthetic_trajectories(64)`, `think="off"`), seed and settings (every `GRPOConfig` field
checked equal but the output folder); only the trainer class (and, in (b), `dynamic_sampling`) differs. They
train in strict turns on the same load (`turns.py`); the first `--warmup` steps are not counted; `--repeats`
runs per comparison, the trainer that goes first alternating.

(a) Overhead: `SRLTrainer(dynamic_sampling=False)` vs `trl.GRPOTrainer`, SRL's step reward: the median over steps
    of SRL's step time / GRPO's of the same step (both generate the same completions; checked).
(b) Dynamic sampling: the step similarity thresholded at 0.5 (-1 for a format error; ~40 % of the groups then
    have all G rewards equal): informative groups (reward std > 0) trained per second (GRPO also trains on the
    others, whose advantages are 0).

Prints a markdown table on stdout (progress on stderr; `--json PATH` also writes the raw numbers).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import statistics
import sys
import tempfile
import time
import warnings

for key, value in (("HF_HUB_OFFLINE", "1"), ("TOKENIZERS_PARALLELISM", "false"), ("HF_HUB_DISABLE_TELEMETRY", "1")):
    os.environ.setdefault(key, value)
warnings.filterwarnings("ignore")

import torch  # noqa: E402
from transformers import PrinterCallback  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402
from trl import GRPOConfig, GRPOTrainer  # noqa: E402

from srl.training.config import SRLConfig  # noqa: E402
from srl.data.instances import InstanceOptions, to_dataset, trajectory_instances  # noqa: E402
from srl.rewards.format import OutputFormat  # noqa: E402
from srl.rewards import get_step_reward  # noqa: E402
from srl.training.sampling import informative_groups  # noqa: E402
from srl.tiny import synthetic_trajectories, tiny_model, tiny_tokenizer, warm_up  # noqa: E402
from srl.io import write_json  # noqa: E402
from srl.training.trainer import SRLTrainer  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from turns import median, ratio_summary, train_in_turns  # noqa: E402

log = functools.partial(print, file=sys.stderr, flush=True)  # progress, on stderr

hf_logging.set_verbosity_error()
FMT = OutputFormat(think="off")
EPS = 1e-6  # SRLConfig's default dynamic_sampling_eps; the same threshold counts GRPO's informative groups
SEED = 0


def step_reward(threshold: float | None = None):
    """SRL's step reward, or (with `threshold`) 1 if the similarity is >= threshold else 0 (-1: format error), as
    a TRL reward function that remembers the rewards of its last call (`.last`: one generation batch)."""
    base = get_step_reward(FMT)

    def reward(completions, **kwargs):
        values = base(completions=completions, **kwargs)
        if threshold is not None:
            values = [v if v < 0 else float(v >= threshold) for v in values]
        reward.last = torch.tensor(values, dtype=torch.float64)
        return values

    reward.__name__ = "step_similarity" if threshold is None else f"step_similarity_ge_{threshold:g}"
    reward.last = None
    return reward


class CountingMixin:
    """Counts, per training batch handed to the loss, the informative groups (reward std > EPS) in it."""

    def _generate_and_score_completions(self, inputs):
        out = super()._generate_and_score_completions(inputs)
        if self.model.training:
            G = self.num_generations
            if isinstance(self, SRLTrainer) and self.args.dynamic_sampling:
                # every kept group is informative by construction; fillers (round cap hit) have tool_mask == 0
                mask = out["tool_mask"].reshape(-1, G * out["tool_mask"].size(-1))
                self.informative.append(int(mask.any(dim=1).sum()))
            else:
                self.informative.append(int(informative_groups(self.recording_reward.last, G, EPS).sum()))
        return out


CountingSRL = type("CountingSRL", (CountingMixin, SRLTrainer), {})
CountingGRPO = type("CountingGRPO", (CountingMixin, GRPOTrainer), {})


def settings(opts, output_dir: str) -> dict:
    # max_steps: + 1 because the last turn also holds the end of training; it is not counted
    return dict(output_dir=output_dir, use_cpu=True, bf16=False, per_device_train_batch_size=opts.batch,
                num_generations=opts.G, max_completion_length=opts.max_completion_length,
                max_steps=opts.warmup + opts.steps + 1, learning_rate=1e-5, beta=0.0, temperature=1.0,
                max_grad_norm=1.0, warmup_steps=0, gradient_checkpointing=False, logging_steps=1,
                save_strategy="no", save_steps=500, seed=SEED, dataloader_pin_memory=False, disable_tqdm=True,
                report_to=[], ddp_find_unused_parameters=False)  # SRLConfig's default (TRL's is None; no DDP here)


def make_trainer(kind: str, make_reward, opts, weights, tokenizer, dataset, output_dir: str):
    """kind: 'srl' (dynamic sampling off), 'srl_ds' (on) or 'grpo'."""
    model = tiny_model(tokenizer, hidden_size=opts.hidden, num_layers=opts.layers)
    model.load_state_dict(weights)
    common = settings(opts, output_dir)
    srl_args = SRLConfig(**common, dynamic_sampling=(kind == "srl_ds"))
    grpo_args = GRPOConfig(**common)
    differ = [f.name for f in dataclasses.fields(GRPOConfig) if f.name not in ("output_dir", "logging_dir")
              and getattr(srl_args, f.name) != getattr(grpo_args, f.name)]
    if differ:
        raise SystemExit(f"SRLConfig and GRPOConfig differ in {differ}")
    reward = make_reward()
    cls, args, extra = ((CountingGRPO, grpo_args, {}) if kind == "grpo" else
                        (CountingSRL, srl_args, {"output_format": FMT}))
    trainer = cls(model=model, reward_funcs=[reward], args=args, train_dataset=dataset, processing_class=tokenizer,
                  **extra)
    trainer.remove_callback(PrinterCallback)
    trainer.informative, trainer.recording_reward = [], reward
    return trainer


def run_pair(kinds: tuple[str, str], make_reward, opts, weights, tokenizer, dataset, first: int) -> list[dict]:
    """Train two trainers in turns (kinds[first] takes the first step); per-trainer results."""
    with tempfile.TemporaryDirectory() as tmp:
        trainers = [make_trainer(k, make_reward, opts, weights, tokenizer, dataset, os.path.join(tmp, str(i)))
                    for i, k in enumerate(kinds)]
        times = train_in_turns(trainers, first, SEED)
    results = []
    for kind, trainer, turns in zip(kinds, trainers, times):
        logs = [h for h in trainer.state.log_history if "loss" in h]
        keep = slice(opts.warmup, opts.warmup + opts.steps)
        results.append({
            "kind": kind, "first": kinds[first], "step_times": turns[keep],
            "informative": trainer.informative[keep],
            "trl_step_time": [h.get("step_time") for h in logs[keep]],
            "rounds": [h.get("dynamic_sampling/rounds", 1.0) for h in logs[keep]],
            # share of the generated groups whose rewards are all equal (SRL's own count when it filters)
            "zero_std": [h.get("dynamic_sampling/filtered_fraction", h.get("frac_reward_zero_std"))
                         if kind == "srl_ds" else h.get("frac_reward_zero_std") for h in logs[keep]],
            "completion_length": [h.get("completions/mean_length") for h in logs],
            "loss": [h.get("loss") for h in logs],
        })
    return results


def prepare(opts):
    tokenizer = tiny_tokenizer()
    rows = [r for t in synthetic_trajectories(64) for r in trajectory_instances(t, InstanceOptions(think="off"))]
    model = tiny_model(tokenizer, hidden_size=opts.hidden, num_layers=opts.layers)
    losses = warm_up(model, tokenizer, rows, steps=opts.warm_up_steps, lr=opts.warm_up_lr, seed=SEED) \
        if opts.warm_up_steps else [float("nan")]
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    return tokenizer, weights, to_dataset(rows), sum(p.numel() for p in model.parameters()), losses


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--batch", type=int, default=16, help="completions per step (= prompts x G)")
    p.add_argument("--G", type=int, default=4)
    p.add_argument("--max_completion_length", type=int, default=16)
    p.add_argument("--warmup", type=int, default=3, help="steps not counted at the start of every run")
    p.add_argument("--steps", type=int, default=12, help="counted steps per run")
    p.add_argument("--repeats", type=int, default=2, help="runs per comparison (who goes first alternates)")
    p.add_argument("--warm_up_steps", type=int, default=20, help="supervised warm-up of the model (0: none)")
    p.add_argument("--warm_up_lr", type=float, default=2e-3)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (1: steadier timings on a shared machine, where OpenMP threads contend)")
    p.add_argument("--skip", choices=["a", "b"], default=None, help="skip one part")
    p.add_argument("--json", default=None, help="also write the raw numbers here")
    opts = p.parse_args(argv)

    torch.set_num_threads(opts.threads)
    t0 = time.perf_counter()
    tokenizer, weights, dataset, n_params, losses = prepare(opts)
    log(f"model: hidden {opts.hidden}, {opts.layers} layers, {n_params / 1e6:.2f}M parameters; supervised warm-up "
        f"{opts.warm_up_steps} steps (loss {losses[0]:.2f} -> {losses[-1]:.2f})  [{time.perf_counter() - t0:.0f}s]")
    results = {"a": [], "b": []}
    for part, kinds, make_reward in (("a", ("srl", "grpo"), step_reward),
                                     ("b", ("srl_ds", "grpo"), lambda: step_reward(threshold=0.5))):
        if opts.skip == part:
            continue
        for rep in range(opts.repeats):
            pair = run_pair(kinds, make_reward, opts, weights, tokenizer, dataset, first=rep % 2)
            results[part].append(pair)
            for r in pair:
                log(f"({part}) run {rep} ({r['first']} first) {r['kind']:6s}: median step "
                    f"{median(r['step_times']):.3f}s, informative groups/step {statistics.mean(r['informative']):.2f}, "
                    f"generation rounds/step {statistics.mean(r['rounds']):.2f}  [{time.perf_counter() - t0:.0f}s]")
    print(table(results, opts, n_params))
    log(f"total time {time.perf_counter() - t0:.0f}s")
    if opts.json:
        write_json(opts.json, {"options": vars(opts), "n_params": n_params, "results": results})
    return 0


def table(results, opts, n_params) -> str:
    P = opts.batch // opts.G
    lines = [f"Model: `srl.tiny` Llama, hidden {opts.hidden}, {opts.layers} layers ({n_params / 1e6:.1f}M "
             f"parameters); {opts.batch} completions per step = {P} prompts x G={opts.G}; at most "
             f"{opts.max_completion_length} completion tokens; {opts.steps} counted steps after {opts.warmup}, "
             f"x{opts.repeats} runs per comparison; {opts.threads} torch thread(s).", ""]
    if results["a"]:
        srl = [r for pair in results["a"] for r in pair if r["kind"] == "srl"]
        grpo = [r for pair in results["a"] for r in pair if r["kind"] == "grpo"]
        rs = ratio_summary([a["step_times"] for a in srl], [b["step_times"] for b in grpo], SEED)
        same = all(a["completion_length"] == b["completion_length"] and a["loss"] == b["loss"]
                   for a, b in zip(srl, grpo))
        lines += [f"**(a) Overhead**: step reward, dynamic sampling off; same completions and losses in both: "
                  f"{'yes' if same else 'NO'}.", "",
                  "| trainer | median step time (s) | median TRL `step_time` (s) | "
                  "SRL/GRPO: median of per-step ratios [95% CI] |",
                  "|---|---:|---:|---:|",
                  f"| `trl.GRPOTrainer` | {median([t for r in grpo for t in r['step_times']]):.3f} | "
                  f"{median([t for r in grpo for t in r['trl_step_time']]):.3f} | 1 |",
                  f"| `SRLTrainer(dynamic_sampling=False)` | {median([t for x in srl for t in x['step_times']]):.3f} | "
                  f"{median([t for x in srl for t in x['trl_step_time']]):.3f} | **{rs['median']:.3f}** "
                  f"[{rs['ci95'][0]:.3f}, {rs['ci95'][1]:.3f}] (per-step IQR {rs['iqr'][0]:.3f}-{rs['iqr'][1]:.3f}; "
                  f"per run {', '.join(f'{x:.3f}' for x in rs['per_run'])}) |", ""]
    if results["b"]:
        lines += ["**(b) Dynamic sampling**: step similarity thresholded at 0.5 (1 if >= 0.5 else 0; -1 format error).",
                  "", "| trainer | median step time (s) | generation rounds / step | groups with reward std = 0 "
                  "(generated) | informative groups trained / step (of " f"{P}) | informative groups trained / s |",
                  "|---|---:|---:|---:|---:|---:|"]
        rate = {}
        for kind, name in (("grpo", "`trl.GRPOTrainer`"), ("srl_ds", "`SRLTrainer(dynamic_sampling=True)`")):
            runs = [r for pair in results["b"] for r in pair if r["kind"] == kind]
            every = {key: [x for r in runs for x in r[key] if x is not None] 
                     for key in ("informative", "step_times", "rounds", "zero_std")}
            rate[kind] = sum(every["informative"]) / sum(every["step_times"])
            lines.append(f"| {name} | {median(every['step_times']):.3f} | {statistics.mean(every['rounds']):.2f} | "
                         f"{statistics.mean(every['zero_std']):.0%} | {statistics.mean(every['informative']):.2f} | "
                         f"{rate[kind]:.3f} |")
        ratio = rate["srl_ds"] / rate["grpo"] if rate["grpo"] else float("inf")  # GRPO trained no informative group
        lines += ["", f"Informative groups trained per second, SRL/GRPO: **{ratio:.2f}x**"]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
