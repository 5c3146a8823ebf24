"""The paper's comparison, small: SmolLM2-135M-Instruct trained on GSM8K train solutions, five ways, evaluated
on the same GSM8K test subset and a MATH-500 subset.

    .venv/bin/python benchmarks/gsm8k_table.py --out runs/gsm8k_table

Rows (the paper's Table 1 methods, at a size that fits 2 CPU cores):

- base      the model as shipped, no training;
- sft       TRL's SFTTrainer on whole expert solutions (ending in \\boxed{answer});
- rlvr      GRPO with the outcome reward (1 if the final answer is right) and DAPO dynamic sampling;
- srl       SRL: GRPO with the step-similarity reward on step-wise instances, dynamic sampling;
- srl_rlvr  SRL for half the RL budget, then RLVR from that checkpoint for the other half;
- sft_srl   (only with --rows ...,sft_srl) SRL starting from the SFT model: a format warm-up counts only here.

Budget. The RL methods (rlvr, srl, srl_rlvr) get the same wall-clock budget (--rl_minutes) on the same
number of CPU threads, or the same number of optimizer steps (--rl_steps: the same rollouts per method);
srl_rlvr splits it in two halves. Every run also reports the tokens it generated. SFT gets --sft_minutes
(or --sft_steps). Training stops at the first optimizer step past its budget.

Statistics. Each accuracy has its Wilson 95% interval; every pair of rows is compared on the same GSM8K test
problems with McNemar's exact test. The SRL objective itself (does SRL learn what it optimises?) is the greedy
step reward on --step_problems held-out step instances cut from GSM8K *test* solutions, compared between rows
by the paired mean difference (srl.evaluation.step_objective, srl.evaluation.metrics).

Model choice without the test set. A validation split of --validation_problems GSM8K *train* problems is held
out before anything trains (the paper held out 60). Each run saves a checkpoint at half its budget and at the
end; the one with the higher validation greedy accuracy is evaluated on the test subsets (a tie keeps the end).
Hyper-parameters were set once, before looking at any test number, and are printed in the table's notes.

Everything lands in --out: data/ (train and validation splits), <row>/ (run folders: metrics.jsonl, plots,
completions.jsonl, checkpoints), eval/<row>/<name>/ (problems.jsonl, summary.json), results.json,
table.md and table.png (or in --record: keep that folder in the repository). A second call reuses every finished
run and evaluation, and every row finished in the record's results.json (on any machine), so an interrupted
table continues where it stopped (a training run cut in the middle starts again).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import subprocess
import sys
import time

from transformers import TrainerCallback

from srl.evaluation.metrics import paired_exact_test, paired_mean_difference, wilson_interval
from srl.io import atomic_open, file_lock, write_json

ROWS = ("base", "sft", "rlvr", "srl", "srl_rlvr", "sft_srl")
LABELS = {"base": "base (no training)", "sft": "SFT", "rlvr": "RLVR", "srl": "SRL", "srl_rlvr": "SRL → RLVR",
          "sft_srl": "SFT → SRL"}
MARKS_FILE = "budget_marks.json"
# Settings a recorded row was measured with that every other row of the same table must share.
SAME_FOR_EVERY_ROW = ("model", "train_file", "validation_problems", "validation_eval_problems", "train_problems",
                      "rl_minutes", "rl_steps", "sft_minutes", "sft_steps", "think", "G", "prompts_per_step",
                      "srl_max_completion_length", "srl_lr", "rlvr_lr", "sft_lr", "test_problems", "k", "k_problems",
                      "temperature", "math_problems", "step_problems", "max_new_tokens", "math_max_new_tokens",
                      "seed", "number_fallback")
# What a setting added later was before it existed (records made then lack it).
SETTING_BEFORE = {"number_fallback": "off"}
CHILD = "--_child"  # argv[1] of a process running one isolated call (see `isolated`)


# --- one process per model ----------------------------------------------------------------------------------
def isolated(fn, *args, **kwargs):
    """`fn(*args, **kwargs)` run in a fresh Python process, then here. Every function passed here keeps its result
    in a file and only reads it on a second call, so the call here is cheap; the memory a trainer, a model or a
    vLLM engine leaves behind goes away with its process (one process running every row grew to 16.5 GB after three
    rows and was killed). argparse namespaces travel as their fields."""
    encoded = [{"namespace": vars(a)} if isinstance(a, argparse.Namespace) else a for a in args]
    call = json.dumps({"fn": fn.__name__, "args": encoded, "kwargs": kwargs})
    code = subprocess.run([sys.executable, os.path.abspath(__file__), CHILD, call]).returncode
    if code != 0:
        sys.exit(f"gsm8k_table: {fn.__name__} failed in its own process (exit code {code}); rerun to continue")
    return fn(*args, **kwargs)


def _run_child(call: str) -> int:
    call = json.loads(call)
    args = [argparse.Namespace(**a["namespace"]) if isinstance(a, dict) and set(a) == {"namespace"} else a
            for a in call["args"]]
    globals()[call["fn"]](*args, **call["kwargs"])
    return 0


def _call(args, fn, *a, **kw):
    """`fn` in its own process with --isolate (the default), else here (tests that replace `fn`)."""
    return isolated(fn, *a, **kw) if getattr(args, "isolate", False) else fn(*a, **kw)


# --- data ---------------------------------------------------------------------------------------------------
def split_train(train_file: str, out: str, validation: int, train_problems: int, seed: int) -> tuple[str, str]:
    """Hold out `validation` GSM8K train problems, keep `train_problems` others for training (seeded)."""
    folder = os.path.join(out, "data")
    train_path, val_path = os.path.join(folder, "train.jsonl"), os.path.join(folder, "validation.jsonl")
    if os.path.exists(train_path) and os.path.exists(val_path):
        return train_path, val_path
    with open(train_file, encoding="utf-8") as f:
        lines = [line for line in f if line.strip()]
    order = list(range(len(lines)))
    random.Random(seed).shuffle(order)
    held, rest = order[:validation], order[validation:validation + train_problems]
    os.makedirs(folder, exist_ok=True)
    for path, idx in ((val_path, held), (train_path, rest)):
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            f.writelines(lines[i] if lines[i].endswith("\n") else lines[i] + "\n" for i in idx)
        os.replace(path + ".tmp", path)
    with open(os.path.join(folder, "SOURCE.md"), "w", encoding="utf-8") as f:
        f.write(f"Split of {train_file} (GSM8K train) with seed {seed}: validation = {validation} problems, "
                f"train = {len(rest)} other problems. Test problems never appear here.\n")
    return train_path, val_path


# --- training -----------------------------------------------------------------------------------------------
class TimeBudget(TrainerCallback):
    """Save a checkpoint at the first step past half the budget, and stop (saving) at the first step past it.
    The budget is wall-clock `seconds`, or optimizer `steps` when given (the same rollouts for every RL method).
    The steps are recorded in `marks_path` so the table knows which checkpoint is which, with the training time at
    every save: a step-budget run resumed from a checkpoint keeps counting its time from there. Checkpoints saved
    only to resume from are pruned to the newest one."""

    def __init__(self, seconds: float, marks_path: str, steps: int | None = None):
        self.seconds, self.steps, self.marks_path = seconds, steps, marks_path
        self.start = time.time()
        self.marks: dict[str, int] = {}  # half/end -> optimizer step
        self.times: dict[str, float] = {}  # half/end -> seconds since the start of training
        self.saved: dict[str, float] = {}  # optimizer step of each save -> seconds since the start of training
        if os.path.exists(marks_path):  # a run resumed from one of its checkpoints
            with open(marks_path, encoding="utf-8") as f:
                before = json.load(f)
            self.marks, self.times, self.saved = before["steps"], before["seconds"], before.get("saved", {})

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.time() - self.saved.get(str(state.global_step), 0.0)

    def _past(self, fraction: float, step: int, elapsed: float) -> bool:
        if self.steps:
            return step >= max(1, math.ceil(self.steps * fraction))
        return elapsed >= self.seconds * fraction

    def _write(self) -> None:
        write_json(self.marks_path, {"steps": self.marks, "seconds": self.times, "saved": self.saved})

    def on_step_end(self, args, state, control, **kwargs):
        elapsed = time.time() - self.start
        for name, fraction in (("half", 0.5), ("end", 1.0)):
            if name not in self.marks and self._past(fraction, state.global_step, elapsed):
                self.marks[name] = state.global_step
                self.times[name] = round(elapsed, 1)
                control.should_save = True
        if "end" in self.marks:
            control.should_training_stop = True
        if control.should_save:
            self._write()
        return control

    def on_save(self, args, state, control, **kwargs):
        from srl.training.checkpoints import complete_checkpoints

        self.saved[str(state.global_step)] = round(time.time() - self.start, 1)
        self._write()
        keep = {f"checkpoint-{step}" for step in self.marks.values()}
        for path in complete_checkpoints(args.output_dir)[:-1]:  # the newest complete one is kept to resume from
            if os.path.basename(path) not in keep:
                shutil.rmtree(path, ignore_errors=True)
        return control


def train_run(stage: str, folder: str, model: str, train_path: str, minutes: float, flags: list[str],
              steps: int | None = None) -> dict:
    """Train one stage for `minutes` of wall time (or `steps` optimizer steps); return {'half': path, 'end': path,
    'seconds', 'tokens'}. A step-budget run saves a checkpoint every eighth of its budget and, cut in the middle,
    continues from the newest one; a wall-clock budget is spoilt by an interruption, so that run starts again."""
    from srl.cli.train import parse_stage
    from srl.training.checkpoints import last_complete_checkpoint
    from srl.training.stages import run_stage

    done = os.path.join(folder, "run.json")
    if os.path.exists(done):
        with open(done, encoding="utf-8") as f:
            return json.load(f)
    resume = bool(steps) and last_complete_checkpoint(folder) is not None \
        and os.path.exists(os.path.join(folder, MARKS_FILE))
    if os.path.exists(folder) and not resume:
        shutil.rmtree(folder)
    argv = ["--preset", "cpu-small", "--model", model, "--train_data", train_path, "--output_dir", folder,
            "--max_steps", "100000", "--save_steps", str(max(1, steps // 8) if steps else 100000),
            "--save_total_limit", "10", "--lr_scheduler_type", "constant", "--warmup_steps", "0",
            "--report_to", "none"] + flags + (["--resume"] if resume else [])
    run, cfg = parse_stage(stage, argv)
    print(f"[table] {'resume' if resume else 'train'} {stage} -> {folder} "
          f"({f'{steps} steps' if steps else f'{minutes:g} min'}): "
          f"srl train --stage {stage} {' '.join(argv)}",
          flush=True)
    os.makedirs(folder, exist_ok=True)
    budget = TimeBudget(minutes * 60, os.path.join(folder, MARKS_FILE), steps=steps)
    started = time.time()
    run_stage(stage, run, cfg, callbacks=[budget], progress=False)
    # training time at the last save, counted over every resumption
    seconds = max(budget.saved.values(), default=round(time.time() - started, 1))
    marks = budget.marks
    result = {"stage": stage, "model": model, "seconds": seconds, "train_seconds": budget.times,
              "steps": marks,
              "command": f"srl train --stage {stage} {' '.join(argv)}", "minutes_budget": None if steps else minutes,
              "steps_budget": steps,
              "checkpoints": {name: os.path.join(folder, f"checkpoint-{step}") for name, step in marks.items()}}
    result.update(run_metrics(os.path.join(folder, "metrics.jsonl")))
    write_json(done, result)  # the run's completion marker: never half-written
    return result


def run_metrics(path: str) -> dict:
    """Totals and means over a run's metrics.jsonl: generated tokens, format-error rate, reward, filtering."""
    from srl.training.reporting import read_metrics

    rows = [r for r in read_metrics(path) if "loss" in r or "reward" in r]
    if not rows:
        return {}

    def mean(key):
        values = [r[key] for r in rows if key in r]
        return sum(values) / len(values) if values else None

    first = [r.get("reward") for r in rows[: max(1, len(rows) // 4)] if "reward" in r]
    last = [r.get("reward") for r in rows[-max(1, len(rows) // 4):] if "reward" in r]
    generated = [r["generated_tokens"] for r in rows if "generated_tokens" in r]
    return {"generated_tokens": int(sum(generated)) if generated else None,
            "format_error_rate": mean("format_error_rate"),
            "filtered_fraction": mean("dynamic_sampling/filtered_fraction"),
            "cap_hit_rate": mean("dynamic_sampling/cap_hit"), "mean_completion_length": mean("completions/mean_length"),
            "reward_first_quarter": sum(first) / len(first) if first else None,
            "reward_last_quarter": sum(last) / len(last) if last else None}


CURVES = (("reward", "training reward (SRL: step similarity; RLVR: outcome)"),
          ("dynamic_sampling/filtered_fraction", "zero-spread groups (filtered by dynamic sampling)"),
          ("format_error_rate", "format errors in rollouts"),
          ("loss", "training loss"))


def training_part(folder: str, stage: str, batch: int, until: int | None = None) -> dict | None:
    """What one training run consumed up to optimizer step `until` (all of it: None), from its metrics.jsonl:
    optimizer steps, rollouts drawn (generation rounds x `batch`; SFT draws none), generated tokens, and its
    per-step curves for the figure. None when the run's folder is not on this machine."""
    from srl.training.reporting import read_metrics

    path = os.path.join(folder, "metrics.jsonl")
    if not os.path.exists(path):
        return None
    rows = [r for r in read_metrics(path) if "loss" in r and "step" in r and (until is None or r["step"] <= until)]
    rl = stage != "sft"
    return {"stage": stage, "steps": len(rows),
            "rollouts": int(sum(r.get("dynamic_sampling/rounds", 1) for r in rows) * batch) if rl else 0,
            "generated_tokens": int(sum(r.get("generated_tokens", 0) for r in rows)),
            "curves": {key: [[r["step"], round(r[key], 5)] for r in rows if isinstance(r.get(key), (int, float))]
                       for key, _ in CURVES}}


def training_record(out: str, row: str, r: dict, args) -> dict | None:
    """The row's training parts (SRL → RLVR has two: SRL to its half-budget checkpoint, then RLVR) with their
    totals; None for the base model or when a run folder is missing."""
    if row == "base":
        return None
    batch = args.G * args.prompts_per_step
    if row == "srl_rlvr":
        parts = [training_part(os.path.join(out, "srl"), "srl", batch, until=r["srl_part"]["steps"]),
                 training_part(os.path.join(out, row), "rlvr", batch)]
    else:
        parts = [training_part(os.path.join(out, row), r.get("stage", row.split("_")[-1]), batch)]
    if None in parts:
        return None
    return {"parts": parts, "rollouts": sum(p["rollouts"] for p in parts),
            "generated_tokens": sum(p["generated_tokens"] for p in parts)}


# --- evaluation ---------------------------------------------------------------------------------------------
def evaluate_once(folder: str, **options) -> dict:
    """`srl eval` with these options, into `folder`; reuse its summary.json if there."""
    from srl.evaluation import EvalConfig, evaluate

    path = os.path.join(folder, "summary.json")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    cfg = EvalConfig(output_dir=folder, **options)
    flags = " ".join(f"--{k} {v}" for k, v in options.items())
    print(f"[table] eval: srl eval {flags}", flush=True)
    return evaluate(cfg, progress=False, print_table=False).summary


def choose(candidates: dict[str, str], folder: str, val_path: str, args) -> tuple[str, dict]:
    """The candidate checkpoint with the best validation greedy accuracy (ties: the later one)."""
    scores = {}
    for name in ("end", "half"):
        if name not in candidates or not os.path.isdir(candidates[name]):
            continue
        if name == "half" and candidates.get("end") == candidates["half"]:
            continue
        s = _call(args, evaluate_once, os.path.join(folder, f"validation-{name}"), model=candidates[name],
                  data=val_path, limit=args.validation_eval_problems, max_new_tokens=args.max_new_tokens,
                  batch_size=args.batch_size, threads=args.threads, seed=args.seed,
                  backend=getattr(args, "backend", "hf"))
        scores[name] = s["metrics"]["greedy_accuracy"]
    best = max(scores, key=lambda n: (scores[n], n == "end"))
    return best, scores


def evaluate_row(model: str, folder: str, args, steps_path: str | None = None) -> dict:
    common = dict(model=model, batch_size=args.batch_size, threads=args.threads, seed=args.seed, backend=args.backend)
    greedy_run = _call(args, evaluate_once, os.path.join(folder, "gsm8k-greedy"), data="gsm8k",
                       limit=args.test_problems, max_new_tokens=args.max_new_tokens, **common)
    sampled = _call(args, evaluate_once, os.path.join(folder, f"gsm8k-avg{args.k}"), data="gsm8k",
                    limit=args.k_problems, greedy=False, k=args.k, temperature=args.temperature,
                    max_new_tokens=args.max_new_tokens, **common)
    math = _call(args, evaluate_once, os.path.join(folder, "math500-greedy"), data="math500",
                 limit=args.math_problems, max_new_tokens=args.math_max_new_tokens, **common)
    flags = greedy_flags(greedy_run)
    scores = {"gsm8k_greedy": greedy_run["metrics"]["greedy_accuracy"],
              "gsm8k_greedy_wilson95": list(wilson_interval(sum(flags.values()), len(flags))),
              "gsm8k_greedy_flags": flags,
              f"gsm8k_avg@{args.k}": sampled["metrics"][f"avg@{args.k}"],
              "math500_greedy": math["metrics"]["greedy_accuracy"],
              "math500_greedy_wilson95": list(wilson_interval(round(math["metrics"]["greedy_accuracy"] *
                                                                    math["problems"]), math["problems"])),
              "gsm8k_answer_rate": greedy_run["answer_rate"], "gsm8k_truncated": greedy_run["truncated_rate"],
              "eval_seconds": sum(s["seconds"]["total"] for s in (greedy_run, sampled, math))}
    if steps_path is not None:
        scores["step_objective"] = _call(args, step_scores, model, steps_path, os.path.join(folder, "steps.json"),
                                         args)
    return scores


def greedy_flags(summary: dict) -> dict[str, int]:
    """{problem id: 1 if the greedy answer is right else 0} from an evaluation's problems.jsonl (paired tests)."""
    with open(summary["files"]["problems"], encoding="utf-8") as f:
        return {str(r["id"]): int(r["greedy"]["correct"]) for r in map(json.loads, f)}


def make_step_instances(out: str, args) -> str | None:
    """Held-out step-wise instances: `--step_problems` instances (seeded) cut from GSM8K *test* solutions with the
    SRL stage's options; the SRL objective of every row is measured on them. None with --step_problems 0."""
    if not args.step_problems:
        return None
    path = os.path.join(out, "data", "test_steps.jsonl")
    if os.path.exists(path):
        return path
    from srl.data.build import DataConfig, instance_rows
    from srl.data.benchmarks import data_root
    from srl.io import write_jsonl

    rows = list(instance_rows(DataConfig(input=os.path.join(data_root(), "gsm8k", "test.jsonl"), output="",
                                         format="gsm8k", think=args.think)))
    random.Random(args.seed).shuffle(rows)
    write_jsonl(path, rows[:args.step_problems])
    return path


def step_scores(model: str, steps_path: str, result_path: str, args) -> dict:
    """The SRL objective of `model` on the held-out instances (reused from `result_path` when there)."""
    if os.path.exists(result_path):
        with open(result_path, encoding="utf-8") as f:
            return json.load(f)
    from srl.evaluation.step_objective import step_objective
    from srl.training.stages import output_format
    from srl.cli.train import parse_stage

    with open(steps_path, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    run, _ = parse_stage("srl", ["--model", model, "--train_data", steps_path, "--think", args.think])
    started = time.time()
    print(f"[table] SRL objective of {model} on {len(rows)} held-out step instances", flush=True)
    result = step_objective(model, rows, output_format=output_format(run),
                            max_new_tokens=args.srl_max_completion_length, batch_size=args.batch_size,
                            threads=args.threads, backend=args.backend)
    result = {k: v for k, v in result.items() if k != "responses"}
    result["rewards"] = [round(x, 4) for x in result["rewards"]]
    result["seconds"] = round(time.time() - started, 1)
    write_json(result_path, result)
    return result


def comparisons(rows: dict[str, dict]) -> list[dict]:
    """Every pair of rows on the same GSM8K test problems (McNemar's exact test) and, where both have it, on the
    same held-out step instances (paired difference of the step reward)."""
    names = list(rows)
    pairs = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            fa, fb = rows[a].get("gsm8k_greedy_flags"), rows[b].get("gsm8k_greedy_flags")
            pair = {"a": a, "b": b}
            if fa and fb:
                common = [k for k in fa if k in fb]
                pair["gsm8k_greedy"] = paired_exact_test([bool(fa[k]) for k in common], [bool(fb[k]) for k in common])
            sa, sb = rows[a].get("step_objective"), rows[b].get("step_objective")
            if sa and sb and len(sa["rewards"]) == len(sb["rewards"]):
                pair["step_reward"] = paired_mean_difference(sa["rewards"], sb["rewards"])
            pairs.append(pair)
    return pairs


# --- the table ----------------------------------------------------------------------------------------------
def rl_batch_flags(args) -> list[str]:
    """One optimizer step = one generation batch of G x prompts_per_step rollouts, split into `--micro_batches`
    forward/backward passes (gradient accumulation: the same update with the token-normalised DAPO loss, less
    memory)."""
    rollouts, micro = args.G * args.prompts_per_step, getattr(args, "micro_batches", 1)
    if rollouts % micro or (rollouts // micro) % args.G:
        sys.exit(f"gsm8k_table: --micro_batches {micro} must split the {rollouts} rollouts of a step into whole "
                 f"groups of G={args.G}")
    flags = ["--per_device_train_batch_size", str(rollouts // micro)]
    if micro > 1:
        flags += ["--gradient_accumulation_steps", str(micro), "--steps_per_generation", str(micro)]
    return flags


def save_record(path: str, results: dict) -> None:
    """Write `results` (with its comparisons) to the record's results.json, keeping the finished rows another
    process wrote there meanwhile (two rows may run at once, one per core, with the same --record)."""
    with file_lock(path + ".lock", waiting_message=f"waiting for another table process to write {path}"):
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                on_disk = json.load(f).get("rows", {})
            for name, row in on_disk.items():
                if row.get("complete") and name not in results["rows"]:
                    results["rows"][name] = row
        results["rows"] = {name: results["rows"][name] for name in ROWS if name in results["rows"]}
        results["comparisons"] = comparisons(results["rows"])
        write_json(path, results)


def run_table(args) -> dict:
    out = args.out
    record = args.record or out
    os.makedirs(out, exist_ok=True)
    os.makedirs(record, exist_ok=True)
    train_path, val_path = split_train(args.train_file, out, args.validation_problems, args.train_problems, args.seed)
    steps_path = make_step_instances(out, args)
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    common = ["--seed", str(args.seed)] + (["--backend", args.backend] if args.backend != "hf" else [])
    batch = rl_batch_flags(args)
    srl_flags = common + ["--think", args.think, "--learning_rate", str(args.srl_lr), "--num_generations", str(args.G),
                          *batch, "--max_completion_length", str(args.srl_max_completion_length)]
    rlvr_flags = common + ["--learning_rate", str(args.rlvr_lr), "--num_generations", str(args.G),
                           *batch, "--max_completion_length", str(args.max_new_tokens),
                           "--number_fallback", args.number_fallback]
    sft_flags = ["--seed", str(args.seed), "--learning_rate", str(args.sft_lr)]
    results = {"settings": vars(args), "rows": {}, "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    results_path = os.path.join(record, "results.json")
    if os.path.exists(results_path):  # finished rows (possibly from another machine: the record is committed)
        with open(results_path, encoding="utf-8") as f:
            before = json.load(f)
        settings = {**SETTING_BEFORE, **before.get("settings", {})}
        changed = {k: (settings.get(k), v) for k, v in vars(args).items()
                   if k in SAME_FOR_EVERY_ROW and settings.get(k) != v}
        if changed:
            sys.exit(f"gsm8k_table: {results_path} was made with other settings ({changed}: before, now); every "
                     "row must be measured the same way: use another --record or the same settings")
        results["rows"] = {k: v for k, v in before.get("rows", {}).items() if v.get("complete")}
    t0 = time.time()
    runs: dict[str, dict] = {}
    rl_steps = args.rl_steps or None

    def trained(name: str, stage: str, model: str, minutes: float, flags: list[str], steps: int | None) -> dict:
        runs[name] = _call(args, train_run, stage, os.path.join(out, name), model, train_path, minutes, flags,
                           steps)
        return runs[name]

    for row in rows:
        if row not in ROWS:
            sys.exit(f"gsm8k_table: unknown row '{row}' (expected one of {', '.join(ROWS)})")
        if row in results["rows"]:
            print(f"[table] {LABELS[row]}: finished before, reused from {results_path}", flush=True)
            continue
        started = time.time()
        eval_dir = os.path.join(out, "eval", row)
        if row == "base":
            info, model, chosen = {}, args.model, "base"
        else:
            if row == "sft":
                info = trained("sft", "sft", args.model, args.sft_minutes, sft_flags, args.sft_steps or None)
            elif row == "rlvr":
                info = trained("rlvr", "rlvr", args.model, args.rl_minutes, rlvr_flags, rl_steps)
            elif row == "srl":
                info = trained("srl", "srl", args.model, args.rl_minutes, srl_flags, rl_steps)
            elif row == "srl_rlvr":  # SRL's half-budget checkpoint, then RLVR for the other half
                srl = trained("srl", "srl", args.model, args.rl_minutes, srl_flags, rl_steps)
                info = trained("srl_rlvr", "rlvr", srl["checkpoints"]["half"], args.rl_minutes / 2, rlvr_flags,
                               rl_steps and rl_steps - srl["steps"]["half"])
                info = {**info, "srl_part": {"seconds": srl["train_seconds"]["half"], "steps": srl["steps"]["half"],
                                             "generated_tokens": srl.get("generated_tokens")}}
            else:  # sft_srl
                sft_model = trained("sft", "sft", args.model, args.sft_minutes, sft_flags,
                                    args.sft_steps or None)["checkpoints"]["end"]
                info = trained("sft_srl", "srl", sft_model, args.rl_minutes, srl_flags, rl_steps)
            chosen, val_scores = choose(info["checkpoints"], eval_dir, val_path, args)
            model = info["checkpoints"][chosen]
            info = {**info, "validation_greedy": val_scores, "chosen": chosen}
        if row == "base":
            val = _call(args, evaluate_once, os.path.join(eval_dir, "validation-base"), model=model,
                        data=val_path, limit=args.validation_eval_problems, max_new_tokens=args.max_new_tokens,
                        batch_size=args.batch_size, threads=args.threads, seed=args.seed, backend=args.backend)
            info = {"validation_greedy": {"base": val["metrics"]["greedy_accuracy"]}}
        scores = evaluate_row(model, eval_dir, args, steps_path)
        results["rows"][row] = {"label": LABELS[row], **info, "start_model": info.get("model"), "model": model,
                                **scores, "row_seconds": round(time.time() - started, 1), "complete": True}
        results["rows"][row]["training"] = training_record(out, row, results["rows"][row], args)
        results["seconds"] = round(time.time() - t0, 1)
        save_record(results_path, results)  # each finished row is kept: commit the record folder as rows come
        print(f"[table] {LABELS[row]}: " + json.dumps({k: scores[k] for k in ("gsm8k_greedy", "math500_greedy")}),
              flush=True)
    for row, r in results["rows"].items():  # rows finished by an older version of this script
        if not r.get("training"):
            r["training"] = training_record(out, row, r, args)
    save_record(results_path, results)
    table = markdown_table(results, args)
    with atomic_open(os.path.join(record, "table.md")) as f:
        f.write(table)
    figures = args.figures or record
    name = os.path.basename(os.path.normpath(record)) if args.figures else "table"
    os.makedirs(figures, exist_ok=True)
    plot_table(results, os.path.join(figures, f"{name}.png"), args)
    plot_curves(results, os.path.join(figures, f"{name}_curves.png"))
    print(table)
    return results


def _pct(x) -> str:
    return "—" if x is None else f"{100 * x:.1f}"


def _ci(r: dict, key: str) -> str:
    lo_hi = r.get(key)
    return "" if not lo_hi else f" [{100 * lo_hi[0]:.1f}, {100 * lo_hi[1]:.1f}]"


def _steps_cell(r: dict) -> str:
    st = r.get("step_objective")
    if not st:
        return "—"
    lo, hi = st["mean_reward_ci95"]
    return f"{st['mean_reward']:.3f} [{lo:.3f}, {hi:.3f}]; format errors {_pct(st['format_error_rate'])}%"


def markdown_table(results: dict, args) -> str:
    k = args.k
    lines = [f"| method | GSM8K greedy ({args.test_problems}) [95% CI] | GSM8K avg@{k} T={args.temperature:g} "
             f"({args.k_problems}) | MATH-500 greedy ({args.math_problems}) [95% CI] | SRL objective: step reward "
             f"on {args.step_problems} held-out steps [95% CI] | validation greedy ({args.validation_eval_problems}) | "
             "answer found (GSM8K greedy) | checkpoint | train time (to the checkpoint) | rollouts (whole run) | "
             "generated tokens (whole run) | format errors (SRL training) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row, r in results["rows"].items():
        val = r.get("validation_greedy", {})
        chosen = r.get("chosen", "base")
        ckpt = "—" if row == "base" else f"{chosen} ({os.path.basename(r['model'])})"
        train = "—" if row == "base" else \
            f"{r['train_seconds'][chosen] / 60:.1f} min, {r['steps'][chosen]} steps"
        if "srl_part" in r:
            part = r["srl_part"]
            train = f"SRL {part['seconds'] / 60:.1f} min, {part['steps']} steps + RLVR {train}"
        spent = r.get("training") or {}
        rollouts = f"{spent['rollouts']:,}" if spent.get("rollouts") else "—"
        total = spent.get("generated_tokens", r.get("generated_tokens"))
        tokens = f"{total:,}" if total else "—"
        if r.get("stage") == "srl":
            fmt = _pct(r["format_error_rate"]) + "%"
        else:  # the outcome reward has no format term; SFT generates nothing
            fmt = "—"
        lines.append(f"| {r['label']} | {_pct(r['gsm8k_greedy'])}{_ci(r, 'gsm8k_greedy_wilson95')} | "
                     f"{_pct(r[f'gsm8k_avg@{k}'])} | {_pct(r['math500_greedy'])}{_ci(r, 'math500_greedy_wilson95')} | "
                     f"{_steps_cell(r)} | {_pct(val.get(chosen))} | {_pct(r['gsm8k_answer_rate'])} | "
                     f"{ckpt} | {train} | {rollouts} | {tokens} | {fmt} |")
    pairs = results.get("comparisons") or []
    if pairs:
        lines += ["", "Paired comparisons on the same items (a vs b): GSM8K greedy by McNemar's exact test (right "
                  "for a only / for b only, difference in points, two-sided p); step reward by the mean paired "
                  "difference (95% CI, p).", "",
                  "| a | b | GSM8K: a only / b only | difference | p | step reward a − b [95% CI] | p |",
                  "|---|---|---|---|---|---|---|"]
        labels = {row: r["label"] for row, r in results["rows"].items()}
        for p in pairs:
            g, st = p.get("gsm8k_greedy"), p.get("step_reward")
            gsm = (f"{g['a_only']} / {g['b_only']} | {100 * g['difference']:+.1f} | {g['p_value']:.3g}" if g
                   else "— | — | —")
            step = (f"{st['difference']:+.3f} [{st['ci95'][0]:+.3f}, {st['ci95'][1]:+.3f}] | {st['p_value']:.3g}"
                    if st else "— | —")
            lines.append(f"| {labels[p['a']]} | {labels[p['b']]} | {gsm} | {step} |")
    return "\n".join(lines) + "\n"


def plot_table(results: dict, path: str, args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(results["rows"].values())
    metrics = [("gsm8k_greedy", f"GSM8K greedy (n={args.test_problems})"),
               (f"gsm8k_avg@{args.k}", f"GSM8K avg@{args.k} (n={args.k_problems})"),
               ("math500_greedy", f"MATH-500 greedy (n={args.math_problems})")]
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(metrics)
    for i, (key, label) in enumerate(metrics):
        heights = [100 * r[key] for r in rows]
        ci = [r.get(f"{key}_wilson95") for r in rows]  # 95% intervals where the row has them
        errors = None if not all(ci) else [[h - 100 * c[0] for h, c in zip(heights, ci)],
                                           [100 * c[1] - h for h, c in zip(heights, ci)]]
        ax.bar([j + i * width for j in range(len(rows))], heights, width, label=label, yerr=errors, capsize=3)
    ax.set_xticks([j + width for j in range(len(rows))], [r["label"] for r in rows])
    ax.set_ylabel("accuracy (%), 95% Wilson intervals")
    budget = f"{args.rl_steps} steps" if args.rl_steps else f"{args.rl_minutes:g} min"
    ax.set_title(f"{args.model}: SRL and baselines on GSM8K train, RL budget {budget} each")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path + ".tmp.png", dpi=120)
    plt.close(fig)
    os.replace(path + ".tmp.png", path)


def plot_curves(results: dict, path: str) -> None:
    """Every trained row's per-step curves (the record's `training` parts); SRL → RLVR's RLVR part dashed, after
    its SRL part."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    colors = {"sft": "tab:green", "rlvr": "tab:red", "srl": "tab:blue", "srl_rlvr": "tab:purple",
              "sft_srl": "tab:cyan"}
    for ax, (key, title) in zip(axes.flat, CURVES):
        for row, r in results["rows"].items():
            offset, labelled = 0, False
            for part in (r.get("training") or {}).get("parts", []):
                pts = part["curves"].get(key) or []
                if pts:
                    ax.plot([offset + x for x, _ in pts], [y for _, y in pts], "--" if offset else "-",
                            color=colors.get(row), lw=1.2, label=None if labelled else r["label"])
                    labelled = True
                offset += part["steps"]
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("optimizer step (dashed: the RLVR part of SRL → RLVR)", fontsize=8)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_open(path, "wb") as f:
        fig.savefig(f, dpi=110, format="png")
    plt.close(fig)


def main(argv=None) -> int:
    from srl.data.benchmarks import data_root

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == [CHILD]:
        return _run_child(argv[1])

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", default="runs/gsm8k_table", help="the table's folder")
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--train_file", default=os.path.join(data_root(), "gsm8k", "train.jsonl"))
    p.add_argument("--rows", default="base,srl,rlvr,srl_rlvr,sft", help=f"comma-separated, from {', '.join(ROWS)}")
    p.add_argument("--validation_problems", type=int, default=30, help="GSM8K train problems held out")
    p.add_argument("--validation_eval_problems", type=int, default=15,
                   help="validation problems each candidate checkpoint is scored on (a seeded subset)")
    p.add_argument("--train_problems", type=int, default=500, help="GSM8K train problems to train on")
    p.add_argument("--rl_minutes", type=float, default=10.0, help="wall-clock budget of each RL method")
    p.add_argument("--rl_steps", type=int, default=0,
                   help="budget of each RL method in optimizer steps instead of minutes (the same rollouts for "
                        "every method: G x prompts_per_step per step, more with dynamic-sampling refills); 0: "
                        "use --rl_minutes")
    p.add_argument("--sft_minutes", type=float, default=5.0)
    p.add_argument("--sft_steps", type=int, default=0, help="SFT budget in optimizer steps (0: --sft_minutes)")
    p.add_argument("--think", default="optional", choices=["required", "optional", "off"],
                   help="SRL output format (docs/format.md: `required` gives 0%% valid outputs on SmolLM2)")
    p.add_argument("--G", type=int, default=4, help="rollouts per prompt")
    p.add_argument("--prompts_per_step", type=int, default=4)
    p.add_argument("--srl_max_completion_length", type=int, default=64, help="tokens per SRL rollout (one step)")
    p.add_argument("--micro_batches", type=int, default=1,
                   help="forward/backward passes per RL optimizer step (gradient accumulation over one generation "
                        "batch: the same update, less memory; RLVR's 256-token rollouts need 2 to run beside "
                        "another row in 24 GB)")
    p.add_argument("--srl_lr", type=float, default=1e-5)
    p.add_argument("--rlvr_lr", type=float, default=1e-5)
    p.add_argument("--number_fallback", choices=("auto", "on", "off"), default="auto",
                   help="RLVR reward: score a rollout without \\boxed{}/#### by its last number, as the evaluation "
                        "scores GSM8K (auto = on for GSM8K); `off` = the strict format (every reward 0 at 135M)")
    p.add_argument("--sft_lr", type=float, default=1e-5)
    p.add_argument("--test_problems", type=int, default=40, help="GSM8K test subset, greedy")
    p.add_argument("--k", type=int, default=4, help="samples per problem for avg@k")
    p.add_argument("--k_problems", type=int, default=10, help="GSM8K test subset for avg@k (inside the greedy one)")
    p.add_argument("--temperature", type=float, default=1.0, help="avg@k temperature (the paper: 1.0)")
    p.add_argument("--math_problems", type=int, default=10, help="MATH-500 subset, greedy")
    p.add_argument("--step_problems", type=int, default=100,
                   help="held-out step instances (cut from GSM8K test solutions) on which every row's SRL "
                        "objective (greedy step reward) is measured; 0: none")
    p.add_argument("--max_new_tokens", type=int, default=256, help="GSM8K answers (and RLVR rollouts)")
    p.add_argument("--math_max_new_tokens", type=int, default=384)
    p.add_argument("--batch_size", type=int, default=64, help="evaluation batch")
    p.add_argument("--threads", type=int, default=1, help="torch threads for evaluation")
    p.add_argument("--backend", default="hf", choices=["hf", "vllm", "auto"],
                   help="generation backend of the evaluations and RL rollouts (see `srl train --help`)")
    p.add_argument("--record", default=None,
                   help="folder for results.json, table.md and table.png (default --out): keep it in the "
                        "repository, and finished rows are reused from it on any machine")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--figures", default=None,
                   help="folder for the figures, named after the record (e.g. docs/figures); default: the record "
                        "folder, as table.png and table_curves.png")
    p.add_argument("--isolate", action=argparse.BooleanOptionalAction, default=True,
                   help="train and evaluate each model in its own process (memory is given back after each)")
    args = p.parse_args(argv)
    started = time.time()
    run_table(args)
    print(f"[table] done in {(time.time() - started) / 60:.1f} min", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
