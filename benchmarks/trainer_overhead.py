"""Overhead of `SRLTrainer` over TRL's plain `GRPOTrainer`, and what dynamic sampling buys, on CPU.

Run from the repository root (after `make install`, or `.venv/bin/pip install -e .`):

    .venv/bin/python benchmarks/trainer_overhead.py      # the documented run: 3.5 min on 2 cores (7 min under load)
    .venv/bin/python benchmarks/trainer_overhead.py --repeats 1 --steps 4 --warmup 1   # a quick smoke run

Both trainers get the same model, data, seed and settings; only the trainer class (and, in (b), SRL's
`dynamic_sampling`) differs:

- model: `srl.tiny`'s local byte-level BPE tokenizer and a randomly initialised Llama, here with hidden size 256
  and 4 layers (~2.5M parameters; `--hidden`/`--layers`) so that generation is not trivially small, first warmed
  up for 20 supervised steps (`srl.tiny.warm_up`, not RL) so that it writes step-shaped text; every run starts
  from a copy of the same warmed-up weights;
- data: step-wise instances of `srl.tiny.synthetic_trajectories(64)` with `think="off"`;
- settings: 16 completions per step = 4 prompts x G=4, at most 16 completion tokens, lr 1e-5, beta 0,
  temperature 1, no gradient checkpointing, seed 0, fp32 on CPU, one torch thread, a log every step. The
  script checks that every `GRPOConfig` field of the two trainers' configs is equal but the output folder.

Noise control: the two trainers of a comparison train *at the same time, in two threads that take strict turns*
(one optimizer step each; the other thread waits), so both see the same load of a shared machine, and each
thread's RNG state is saved and restored at its turns, so each trainer draws exactly what it would alone. A
step's time is the wall time of its turn: generation, scoring, loss, optimizer step, logging and fetching the
next batch. The first `--warmup` steps are not counted. The comparison is repeated `--repeats` times, the
trainer that goes first alternating.

(a) Overhead: `SRLTrainer(dynamic_sampling=False)` vs `trl.GRPOTrainer`, SRL's step reward
    (`srl.rewards.get_step_reward(OutputFormat(think="off"))`). With the same seed both generate the same
    completions and take the same optimizer steps (checked), so each step does the same work in both, and the
    ratio SRL/GRPO is the median over steps of (SRL's step time / GRPO's step time of the same step).
(b) Dynamic sampling: the step similarity thresholded to 1 if >= 0.5 else 0 (-1 for a format error, as in the
    step reward), under which ~40 % of the groups have all G rewards equal. Reported: informative groups
    (reward std > 0) trained per second. For GRPO these are the groups of its batches whose rewards vary (it
    also trains on the others, whose advantages are 0); for `SRLTrainer(dynamic_sampling=True)` they are the
    groups of the batch it hands to the loss that are not masked out (all of them unless
    `max_generation_rounds` is hit).

Prints a markdown table on stdout (progress on stderr; `--json PATH` also writes the raw numbers).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import PrinterCallback, TrainerCallback, set_seed  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402
from trl import GRPOConfig, GRPOTrainer  # noqa: E402

from srl.training.config import SRLConfig  # noqa: E402
from srl.data.instances import InstanceOptions, to_dataset, trajectory_instances  # noqa: E402
from srl.rewards.format import OutputFormat  # noqa: E402
from srl.rewards import get_step_reward  # noqa: E402
from srl.training.sampling import informative_groups  # noqa: E402
from srl.tiny import synthetic_trajectories, tiny_model, tiny_tokenizer, warm_up  # noqa: E402
from srl.training.trainer import SRLTrainer  # noqa: E402

hf_logging.set_verbosity_error()
FMT = OutputFormat(think="off")
EPS = 1e-6  # SRLConfig's default dynamic_sampling_eps; the same threshold counts GRPO's informative groups
SEED = 0


# --- rewards ----------------------------------------------------------------------------------------------
class RecordingReward:
    """A TRL reward function that remembers the rewards of its last call (one call = one generation batch)."""

    def __init__(self, fn, name):
        self.fn, self.__name__, self.last = fn, name, None

    def __call__(self, completions, **kwargs):
        values = self.fn(completions=completions, **kwargs)
        self.last = torch.tensor(values, dtype=torch.float64)
        return values


def step_reward():
    return RecordingReward(get_step_reward(FMT), "step_similarity")


def thresholded_step_reward():
    base = get_step_reward(FMT)

    def thresholded(completions, **kwargs):
        return [v if v < 0 else float(v >= 0.5) for v in base(completions=completions, **kwargs)]

    return RecordingReward(thresholded, "step_similarity_ge_half")


# --- counting what each trainer trains on -------------------------------------------------------------------
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


class CountingSRL(CountingMixin, SRLTrainer):
    pass


class CountingGRPO(CountingMixin, GRPOTrainer):
    pass


# --- two trainers taking turns ------------------------------------------------------------------------------
class Baton:
    """Two threads take strict turns; a thread that has finished no longer holds the other one up."""

    def __init__(self, first: int):
        self.cond = threading.Condition()
        self.turn, self.done = first, [False, False]

    def acquire(self, i: int) -> None:
        with self.cond:
            if not self.cond.wait_for(lambda: self.turn == i or self.done[1 - i], timeout=1800):
                raise TimeoutError("the other trainer did not hand over its turn")

    def release(self, i: int, finished: bool = False) -> None:
        with self.cond:
            self.done[i] = self.done[i] or finished
            self.turn = 1 - i
            self.cond.notify_all()


class TakeTurns(TrainerCallback):
    """One optimizer step per turn. A turn runs from a step's `on_step_begin` to the next one's (or the end of
    training), so it covers the step, its logging and fetching the next batch. Each trainer's RNG states are
    kept across turns, so the other trainer's draws do not change what it samples."""

    def __init__(self, baton: Baton, index: int):
        self.baton, self.index = baton, index
        self.holding, self.start, self.rng, self.times = False, 0.0, None, []

    def _end_turn(self, finished: bool = False) -> None:
        if self.holding:
            self.times.append(time.perf_counter() - self.start)
            self.rng = (torch.get_rng_state(), random.getstate(), np.random.get_state())
            self.holding = False
        self.baton.release(self.index, finished)

    def on_step_begin(self, args, state, control, **kwargs):
        self._end_turn()
        self.baton.acquire(self.index)
        if self.rng is None:
            set_seed(SEED)  # both start from the same RNG state, whatever the other thread drew meanwhile
        else:
            torch.set_rng_state(self.rng[0])
            random.setstate(self.rng[1])
            np.random.set_state(self.rng[2])
        self.holding, self.start = True, time.perf_counter()

    def on_train_end(self, args, state, control, **kwargs):
        self._end_turn(finished=True)


# --- runs ---------------------------------------------------------------------------------------------------
def settings(opts, output_dir: str) -> dict:
    # max_steps: + 1 because the last turn also holds the end of training; it is not counted
    return dict(output_dir=output_dir, use_cpu=True, bf16=False, per_device_train_batch_size=opts.batch,
                num_generations=opts.G, max_completion_length=opts.max_completion_length,
                max_steps=opts.warmup + opts.steps + 1, learning_rate=1e-5, beta=0.0, temperature=1.0,
                max_grad_norm=1.0, warmup_steps=0, gradient_checkpointing=False, logging_steps=1,
                save_strategy="no", save_steps=500, seed=SEED, dataloader_pin_memory=False, disable_tqdm=True,
                report_to=[], ddp_find_unused_parameters=False)  # SRLConfig's default (TRL's is None; no DDP here)


def check_same_settings(srl_args: SRLConfig, grpo_args: GRPOConfig) -> None:
    differ = [f.name for f in dataclasses.fields(GRPOConfig) if f.name not in ("output_dir", "logging_dir")
              and getattr(srl_args, f.name) != getattr(grpo_args, f.name)]
    if differ:
        raise SystemExit(f"SRLConfig and GRPOConfig differ in {differ}")


def make_trainer(kind: str, make_reward, opts, weights, tokenizer, dataset, output_dir: str):
    """kind: 'srl' (dynamic sampling off), 'srl_ds' (on) or 'grpo'."""
    model = tiny_model(tokenizer, hidden_size=opts.hidden, num_layers=opts.layers)
    model.load_state_dict(weights)
    common = settings(opts, output_dir)
    srl_args = SRLConfig(**common, dynamic_sampling=(kind == "srl_ds"))
    grpo_args = GRPOConfig(**common)
    check_same_settings(srl_args, grpo_args)
    reward = make_reward()
    if kind == "grpo":
        trainer = CountingGRPO(model=model, reward_funcs=[reward], args=grpo_args, train_dataset=dataset,
                               processing_class=tokenizer)
    else:
        trainer = CountingSRL(model=model, reward_funcs=[reward], args=srl_args, train_dataset=dataset,
                              processing_class=tokenizer, output_format=FMT)
    trainer.remove_callback(PrinterCallback)
    trainer.informative, trainer.recording_reward = [], reward
    return trainer


def run_pair(kinds: tuple[str, str], make_reward, opts, weights, tokenizer, dataset, first: int) -> list[dict]:
    """Train two trainers in turns (kinds[first] takes the first step); per-trainer results."""
    baton = Baton(first)
    with tempfile.TemporaryDirectory() as tmp:
        trainers = [make_trainer(k, make_reward, opts, weights, tokenizer, dataset, os.path.join(tmp, str(i)))
                    for i, k in enumerate(kinds)]
        clocks = [TakeTurns(baton, i) for i in range(2)]
        errors = [None, None]
        for trainer, clock in zip(trainers, clocks):
            trainer.add_callback(clock)

        def train(i):
            try:
                trainers[i].train()
            except BaseException as e:  # noqa: BLE001 - re-raised in the main thread
                errors[i] = e
            finally:
                baton.release(i, finished=True)

        threads = [threading.Thread(target=train, args=(i,), name=kinds[i]) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for e in errors:
            if e is not None:
                raise e
    results = []
    for kind, trainer, clock in zip(kinds, trainers, clocks):
        logs = [h for h in trainer.state.log_history if "loss" in h]
        keep = slice(opts.warmup, opts.warmup + opts.steps)
        results.append({
            "kind": kind, "first": kinds[first], "step_times": clock.times[keep],
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
    n_params = sum(p.numel() for p in model.parameters())
    return tokenizer, weights, to_dataset(rows), n_params, losses


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float("nan")


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
                                     ("b", ("srl_ds", "grpo"), thresholded_step_reward)):
        if opts.skip == part:
            continue
        for rep in range(opts.repeats):
            pair = run_pair(kinds, make_reward, opts, weights, tokenizer, dataset, first=rep % 2)
            results[part].append(pair)
            for r in pair:
                log(f"({part}) run {rep} ({r['first']} first) {r['kind']:6s}: median step "
                    f"{median(r['step_times']):.3f}s, "
                    f"informative groups/step {statistics.mean(r['informative']):.2f}, generation rounds/step "
                    f"{statistics.mean(r['rounds']):.2f}  [{time.perf_counter() - t0:.0f}s]")
    print(table(results, opts, n_params))
    log(f"total time {time.perf_counter() - t0:.0f}s")
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump({"options": vars(opts), "n_params": n_params, "results": results}, f, indent=1)
    return 0


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def table(results, opts, n_params) -> str:
    P = opts.batch // opts.G
    lines = [f"Model: `srl.tiny` Llama, hidden {opts.hidden}, {opts.layers} layers ({n_params / 1e6:.1f}M "
             f"parameters); {opts.batch} completions per step = {P} prompts x G={opts.G}; at most "
             f"{opts.max_completion_length} completion tokens; {opts.steps} counted steps after {opts.warmup}, "
             f"x{opts.repeats} runs per comparison; {opts.threads} torch thread(s).", ""]
    if results["a"]:
        srl = [r for pair in results["a"] for r in pair if r["kind"] == "srl"]
        grpo = [r for pair in results["a"] for r in pair if r["kind"] == "grpo"]
        ratios = [s / g for a, b in zip(srl, grpo) for s, g in zip(a["step_times"], b["step_times"])]
        same = all(a["completion_length"] == b["completion_length"] and a["loss"] == b["loss"]
                   for a, b in zip(srl, grpo))
        per_run = ", ".join(f"{median([s / g for s, g in zip(a['step_times'], b['step_times'])]):.3f}"
                            for a, b in zip(srl, grpo))
        q = statistics.quantiles(ratios, n=4) if len(ratios) >= 2 else [float("nan")] * 3
        rng = random.Random(SEED)  # 95% bootstrap interval of the median ratio
        boot = sorted(median(rng.choices(ratios, k=len(ratios))) for _ in range(2000))
        ci = (boot[49], boot[1949])
        lines += [f"**(a) Overhead**: step reward, dynamic sampling off; same completions and losses in both: "
                  f"{'yes' if same else 'NO'}.", "",
                  "| trainer | median step time (s) | median TRL `step_time` (s) | "
                  "SRL/GRPO: median of per-step ratios [95% CI] |",
                  "|---|---:|---:|---:|",
                  f"| `trl.GRPOTrainer` | {median([t for r in grpo for t in r['step_times']]):.3f} | "
                  f"{median([t for r in grpo for t in r['trl_step_time']]):.3f} | 1 |",
                  f"| `SRLTrainer(dynamic_sampling=False)` | {median([t for r in srl for t in r['step_times']]):.3f} | "
                  f"{median([t for r in srl for t in r['trl_step_time']]):.3f} | **{median(ratios):.3f}** "
                  f"[{ci[0]:.3f}, {ci[1]:.3f}] (per-step IQR {q[0]:.3f}-{q[2]:.3f}; per run {per_run}) |", ""]
    if results["b"]:
        lines += ["**(b) Dynamic sampling**: step similarity thresholded at 0.5 (1 if >= 0.5 else 0; -1 format error).",
                  "", "| trainer | median step time (s) | generation rounds / step | groups with reward std = 0 "
                  "(generated) | informative groups trained / step (of " f"{P}) | informative groups trained / s |",
                  "|---|---:|---:|---:|---:|---:|"]
        rate = {}
        for kind, name in (("grpo", "`trl.GRPOTrainer`"), ("srl_ds", "`SRLTrainer(dynamic_sampling=True)`")):
            runs = [r for pair in results["b"] for r in pair if r["kind"] == kind]
            groups = sum(sum(r["informative"]) for r in runs)
            seconds = sum(sum(r["step_times"]) for r in runs)
            steps = sum(len(r["informative"]) for r in runs)
            rate[kind] = groups / seconds
            rounds = statistics.mean(x for r in runs for x in r["rounds"])
            zero = statistics.mean(x for r in runs for x in r["zero_std"] if x is not None)
            lines.append(f"| {name} | {median([t for r in runs for t in r['step_times']]):.3f} | {rounds:.2f} | "
                         f"{zero:.0%} | {groups / steps:.2f} | {rate[kind]:.3f} |")
        lines += ["", f"Informative groups trained per second, SRL/GRPO: **{rate['srl_ds'] / rate['grpo']:.2f}x**"]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
