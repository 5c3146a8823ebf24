"""Does SRL work, and why? A controlled experiment on a task with known difficulty, a model trained from scratch,
and every method run from the same start on the same limited expert data (issue 13, part A).

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/mechanism.py --out runs/mechanism

1. Task (`mechanism_task.py`): chained arithmetic, one expert line per operation, exact answers. Splits by
   problem: `pretrain` (1-2 operations), `train` (the limited expert data, 3-5 operations), `validation` and
   `test` (3-5 operations), `hard` (6-7 operations: more than any training problem).
2. Base model: a small Llama and a BPE tokenizer built from scratch (`srl.tiny`), pre-trained with
   `srl.tiny.warm_up` on the *pretrain* split only, in both formats the methods use (whole solutions under the
   evaluation prompt, and step-wise instances under the SRL prompt), so it knows the format but has never seen
   a problem longer than 2 operations.
3. From that same start, each method trains with the library's own stages (`srl.stages.run_stage`, flags
   parsed by `srl.cli.parse_stage`, i.e. `srl train --stage ...`):
   - sft        SFTTrainer on the train split's whole solutions;
   - rlvr       GRPO, outcome reward, DAPO dynamic sampling (drop groups with zero reward spread);
   - srl        GRPO, step-similarity reward on the step-wise instances, dynamic sampling;
   - srl_nods   the same without dynamic sampling (`--dynamic_sampling false`);
   - srl_rlvr   SRL for half the RL steps, then RLVR for the other half.
   The RL methods get the same number of optimizer steps of the same batch (prompts x G); dynamic sampling may
   draw more rollouts per step (up to --max_rounds rounds), which each run reports.
4. Evaluation with `srl.evaluation.evaluate`: greedy exact-match accuracy on `test` and `hard`, the paper's
   evaluation prompt, answer in `\\boxed{}`.

Output format: the tiny model cannot be expected to write a <think> monologue, so every method runs with
`--think off` (the SRL prompt asks for the next step only; the whole response is the action).

Resumable: `<results>/<method>-s<seed>.json` is written atomically when a (method, seed) run is trained and
evaluated, and a rerun skips it; a run cut in the middle starts again. Those small JSON files (metrics curves
included) are all that `--report_only` needs to redraw the table and figures.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mechanism_task as task  # noqa: E402

METHODS = ("sft", "rlvr", "srl", "srl_nods", "srl_rlvr")
LABELS = {"base": "base (pre-trained only)", "sft": "SFT", "rlvr": "RLVR (GRPO + DAPO filter)", "srl": "SRL",
          "srl_nods": "SRL without dynamic sampling", "srl_rlvr": "SRL → RLVR"}
EVAL_SPLITS = ("test", "hard")
# Two-sided 95% Student t quantiles, df = 1..10.
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}

SIZES = {  # name -> settings; `small` is the committed experiment, `tiny` the end-to-end test
    "small": dict(pretrain=3000, train=300, validation=100, test=200, hard=200, hidden=64, layers=2, vocab=1024,
                  pretrain_steps=600, rl_steps=40, prompts=4, G=8, sft_epochs=3, eval_batch=100,
                  step_instances=300),
    "tiny": dict(pretrain=200, train=16, validation=4, test=8, hard=8, hidden=32, layers=1, vocab=400,
                 pretrain_steps=4, rl_steps=2, prompts=2, G=2, sft_epochs=1, eval_batch=16,
                 step_instances=6),
}


def write_json_atomic(path: str, data) -> None:
    from srl.io import write_json as write

    write(path, data)


def read_json(path: str):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


# --- data ---------------------------------------------------------------------------------------------------
def levels(args) -> dict[str, task.Level]:
    mid = task.Level(3, 5, distractors=args.distractors)
    return {"pretrain": task.Level(1, 2, distractors=args.distractors), "train": mid, "validation": mid,
            "test": mid, "hard": task.Level(6, 7, distractors=args.distractors)}


def make_data(args, size: dict) -> dict[str, str]:
    folder = os.path.join(args.out, "data")
    paths = {s: os.path.join(folder, f"{s}.jsonl") for s in ("pretrain", "train", "validation", "test", "hard")}
    if all(os.path.exists(p) for p in paths.values()):
        return paths
    splits = task.make_splits({s: size[s] for s in paths}, levels(args), seed=args.data_seed)
    for s, rows in splits.items():
        task.write_jsonl(rows, paths[s])
    return paths


# --- the base model -----------------------------------------------------------------------------------------
def stage_rows(stage: str, path: str) -> list[dict]:
    """The rows the library's stage would train on for this file (prompt + target text)."""
    from srl.training.config import RunArguments
    from srl.training.stages import sft_rows, srl_rows

    run = RunArguments(model="tiny", train_data=path, data_format="steps", think="off")
    if stage == "srl":
        return [{"prompt": r["prompt"], "expert_step": r["expert_step"]} for r in srl_rows(run)]
    return [{"prompt": r["prompt"], "expert_step": r["completion"][0]["content"]} for r in sft_rows(run)]


def pretrain(args, size: dict, paths: dict) -> str:
    """Tokenizer + model from scratch, pre-trained on the pretrain split in both formats; saved to base/."""
    import random

    from srl.tiny import tiny_model, tiny_tokenizer, warm_up

    folder = os.path.join(args.out, "base")
    marker = os.path.join(folder, "pretrain.json")
    if os.path.exists(marker):
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    started = time.time()
    whole, steps = stage_rows("sft", paths["pretrain"]), stage_rows("srl", paths["pretrain"])
    corpus = []
    for r in random.Random(0).sample(whole + steps, min(len(whole + steps), 2000)):
        corpus.append(" ".join(m["content"] for m in r["prompt"]) + " " + r["expert_step"])
    tokenizer = tiny_tokenizer(extra_text=corpus, vocab_size=size["vocab"])
    model = tiny_model(tokenizer, hidden_size=size["hidden"], num_layers=size["layers"], seed=args.base_seed)
    losses = []
    n = size["pretrain_steps"]
    for i, lr in enumerate((3e-3, 1e-3, 3e-4)):  # three phases of a decaying learning rate
        losses += warm_up(model, tokenizer, whole + steps, steps=max(1, n // 3), lr=lr, batch_size=32,
                          seed=args.base_seed + i)
        print(f"[mechanism] pre-training phase {i + 1}/3 (lr {lr:g}): loss {losses[-1]:.3f}, "
              f"{time.time() - started:.0f} s", flush=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    params = sum(p.numel() for p in model.parameters())
    write_json_atomic(marker, {"parameters": params, "steps": 3 * max(1, n // 3), "batch_size": 32,
                               "rows": len(whole + steps), "loss_first": losses[0], "loss_last": losses[-1],
                               "seconds": round(time.time() - started, 1)})
    print(f"[mechanism] pre-trained base model ({params:,} parameters) in {time.time() - started:.0f} s, "
          f"loss {losses[0]:.2f} -> {losses[-1]:.2f}", flush=True)
    return folder


# --- evaluation ---------------------------------------------------------------------------------------------
def evaluate_model(model: str, paths: dict, folder: str, size: dict) -> dict:
    from srl.evaluation import EvalConfig, evaluate

    out = {}
    for split in EVAL_SPLITS:
        cfg = EvalConfig(model=model, data=paths[split], output_dir=os.path.join(folder, split),
                         max_new_tokens=96, batch_size=size["eval_batch"], threads=1, answer_mode="boxed")
        s = evaluate(cfg, progress=False, print_table=False).summary
        n = s["problems"] if isinstance(s.get("problems"), int) else len(task.read_jsonl(paths[split]))
        acc = s["metrics"]["greedy_accuracy"]
        out[split] = {"accuracy": acc, "n": n, "correct": round(acc * n), "wilson95": wilson(round(acc * n), n),
                      "answer_rate": s.get("answer_rate"), "truncated_rate": s.get("truncated_rate"),
                      "seconds": s["seconds"]["total"]}
    out["steps"] = step_accuracy(model, paths["test"], size["step_instances"])
    return out


def step_accuracy(model_path: str, path: str, limit: int, batch_size: int = 100) -> dict:
    """The SRL objective itself on held-out instances of the test problems (`srl.evaluation.step_objective`, no
    monologue): greedy next-step exact match and the mean step reward of the first `limit` step-wise instances."""
    from srl.evaluation.step_objective import step_objective

    result = step_objective(model_path, stage_rows("srl", path)[:limit], think="off", max_new_tokens=16,
                            batch_size=batch_size, threads=1)
    return {"exact": result["exact_match"], "n": result["n"], "wilson95": result["exact_match_wilson95"],
            "step_reward": result["mean_reward"]}


def wilson(correct: int, n: int) -> list[float]:
    """The Wilson score 95% interval of a proportion (srl.evaluation.metrics.wilson_interval), as a list."""
    from srl.evaluation.metrics import wilson_interval

    return list(wilson_interval(correct, n))


def t_interval(values: list[float]) -> tuple[float, float]:
    """(mean, half-width of the 95% t-interval across seeds); half-width nan with one value."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, float("nan")
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, T95.get(n - 1, 1.96) * sd / math.sqrt(n)


# --- training -----------------------------------------------------------------------------------------------
def stage_flags(stage: str, args, size: dict, seed: int) -> list[str]:
    common = ["--seed", str(seed), "--think", "off", "--use_cpu", "true", "--bf16", "false", "--report_to", "none",
              "--logging_steps", "1", "--dataloader_pin_memory", "false", "--data_format", "steps"]
    if stage == "sft":
        return common + ["--learning_rate", str(args.sft_lr), "--num_train_epochs", str(size["sft_epochs"]),
                         "--per_device_train_batch_size", "16", "--lr_scheduler_type", "cosine",
                         "--warmup_steps", "0.3", "--max_length", "512", "--save_strategy", "no"]
    return common + ["--learning_rate", str(args.rl_lr), "--num_generations", str(size["G"]),
                     "--per_device_train_batch_size", str(size["G"] * size["prompts"]),
                     "--lr_scheduler_type", "constant", "--warmup_steps", "0",
                     "--max_completion_length", "24" if stage == "srl" else "72",
                     "--max_generation_rounds", str(args.max_rounds), "--save_strategy", "no",
                     "--completions_to_log", "2"]


def train(stage: str, model: str, train_path: str, folder: str, steps: int | None, flags: list[str]) -> dict:
    """One `srl train --stage <stage>` run into `folder`; returns its summary (command, seconds, metrics)."""
    from srl.cli.train import parse_stage
    from srl.training.stages import run_stage

    shutil.rmtree(folder, ignore_errors=True)  # a run cut in the middle starts again
    argv = ["--model", model, "--train_data", train_path, "--output_dir", folder] + flags
    if steps is not None:
        argv += ["--max_steps", str(steps)]
    run, cfg = parse_stage(stage, argv)
    print(f"[mechanism] srl train --stage {stage} {' '.join(argv)}", flush=True)
    started = time.time()
    final = run_stage(stage, run, cfg, progress=False)
    from srl.training.reporting import read_metrics

    metrics = [r for r in read_metrics(os.path.join(folder, "metrics.jsonl")) if "train_runtime" not in r]
    return {"stage": stage, "command": f"srl train --stage {stage} {' '.join(argv)}", "final": final,
            "seconds": round(time.time() - started, 1), "metrics": metrics, **totals(metrics, cfg)}


def totals(metrics: list[dict], cfg) -> dict:
    rows = [r for r in metrics if "dynamic_sampling/rounds" in r]
    if not rows:
        return {"optimizer_steps": len([r for r in metrics if "loss" in r])}
    per_round = cfg.per_device_train_batch_size  # completions per generation round (one process)
    return {"optimizer_steps": len(rows),
            "rollouts": int(sum(r["dynamic_sampling/rounds"] for r in rows) * per_round),
            "generated_tokens": int(sum(r.get("generated_tokens", 0) for r in rows)),
            "zero_spread_fraction": sum(r["dynamic_sampling/filtered_fraction"] for r in rows) / len(rows),
            "format_error_rate": sum(r.get("format_error_rate", 0) for r in rows) / len(rows)}


def run_method(method: str, seed: int, args, size: dict, paths: dict, base: str) -> dict:
    folder = os.path.join(args.out, "runs", f"{method}-s{seed}")
    started = time.time()
    steps = size["rl_steps"]
    if method == "sft":
        parts = [train("sft", base, paths["train"], folder, None, stage_flags("sft", args, size, seed))]
    elif method in ("rlvr", "srl", "srl_nods"):
        stage = "srl" if method.startswith("srl") else "rlvr"
        flags = stage_flags(stage, args, size, seed)
        if method == "srl_nods":
            flags += ["--dynamic_sampling", "false"]
        parts = [train(stage, base, paths["train"], folder, steps, flags)]
    else:  # srl_rlvr: half the steps each
        first = train("srl", base, paths["train"], os.path.join(folder, "srl"), steps // 2,
                      stage_flags("srl", args, size, seed))
        second = train("rlvr", first["final"], paths["train"], os.path.join(folder, "rlvr"), steps - steps // 2,
                       stage_flags("rlvr", args, size, seed))
        parts = [first, second]
    scores = evaluate_model(parts[-1]["final"], paths, os.path.join(folder, "eval"), size)
    for p in parts:
        p.pop("final")
    return {"method": method, "label": LABELS[method], "seed": seed, "budget": budget(args, size), "parts": parts,
            "eval": scores,
            "seconds": round(time.time() - started, 1)}


def budget(args, size: dict) -> dict:
    """What makes two runs of a method comparable: a rerun with other values must not mix with these."""
    return {"size": args.size, "rl_steps": size["rl_steps"], "rl_lr": args.rl_lr, "sft_lr": args.sft_lr,
            "max_rounds": args.max_rounds, "distractors": args.distractors}


# --- the report ---------------------------------------------------------------------------------------------
def summarize(results: list[dict], base: dict) -> dict:
    table = {"base": {"label": LABELS["base"], "seeds": 1,
                      **{s: {"mean": base["eval"][s]["accuracy"], "ci95": base["eval"][s]["wilson95"]}
                         for s in EVAL_SPLITS},
                      "steps": {"mean": base["eval"]["steps"]["exact"], "ci95": base["eval"]["steps"]["wilson95"],
                                "step_reward": base["eval"]["steps"]["step_reward"]},
                      "answer_rate": {s: base["eval"][s]["answer_rate"] for s in EVAL_SPLITS}}}
    for method in METHODS:
        runs = [r for r in results if r["method"] == method]
        if not runs:
            continue
        row = {"label": LABELS[method], "seeds": len(runs)}
        for s in EVAL_SPLITS:
            accs = [r["eval"][s]["accuracy"] for r in runs]
            mean, half = t_interval(accs)
            row[s] = {"mean": mean, "t95_half": half, "per_seed": accs,
                      "wilson95_per_seed": [r["eval"][s]["wilson95"] for r in runs]}
        row["answer_rate"] = {s: _mean([r["eval"][s]["answer_rate"] for r in runs]) for s in EVAL_SPLITS}
        mean, half = t_interval([r["eval"]["steps"]["exact"] for r in runs])
        row["steps"] = {"mean": mean, "t95_half": half,
                        "step_reward": _mean([r["eval"]["steps"]["step_reward"] for r in runs])}
        for key in ("rollouts", "generated_tokens", "zero_spread_fraction", "format_error_rate"):
            values = [sum(p.get(key) or 0 for p in r["parts"]) if key in ("rollouts", "generated_tokens") else
                      _mean([p[key] for p in r["parts"] if p.get(key) is not None]) for r in runs]
            values = [v for v in values if v is not None]
            row[key] = _mean(values)
        rl_parts = [p for r in runs for p in r["parts"] if p["stage"] == "rlvr"]
        if rl_parts:
            row["rlvr_zero_spread_fraction"] = _mean([p["zero_spread_fraction"] for p in rl_parts])
        row["train_seconds"] = _mean([sum(p["seconds"] for p in r["parts"]) for r in runs])
        table[method] = row
    return table


def _mean(values):
    return sum(values) / len(values) if values else None


def markdown(table: dict, size: dict) -> str:
    def pct(x):
        return "—" if x is None or x != x else f"{100 * x:.1f}"

    lines = [f"| method | seeds | test (3-5 ops, n={size['test']}) | hard (6-7 ops, n={size['hard']}) | per-seed test "
             "| per-seed hard | answer found (test, hard) | next step exact (test instances) | rollouts / run "
             "| generated tokens / run | zero-spread groups | train time / run |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for key, r in table.items():
        cells = []
        for s in EVAL_SPLITS:
            v = r[s]
            if key == "base":
                cells.append(f"{pct(v['mean'])} [{pct(v['ci95'][0])}, {pct(v['ci95'][1])}] (Wilson)")
            else:
                cells.append(f"{pct(v['mean'])} ± {pct(v['t95_half'])}")
        per = ["—", "—"] if key == "base" else [", ".join(pct(a) for a in r[s]["per_seed"]) for s in EVAL_SPLITS]
        st = r["steps"]
        step = (f"{pct(st['mean'])}" + (f" [{pct(st['ci95'][0])}, {pct(st['ci95'][1])}]" if key == "base" else
                                        f" ± {pct(st['t95_half'])}") + f" (reward {st['step_reward']:.2f})")
        found = ", ".join(pct(r["answer_rate"][s]) for s in EVAL_SPLITS)
        zs = r.get("zero_spread_fraction")
        rollouts = "—" if not r.get("rollouts") else f"{r['rollouts']:,.0f}"
        tokens = "—" if not r.get("generated_tokens") else f"{r['generated_tokens']:,.0f}"
        zero = "—" if zs is None else pct(zs) + "%"
        seconds = "—" if key == "base" else f"{r['train_seconds']:.0f} s"
        lines.append(f"| {r['label']} | {r['seeds']} | {cells[0]} | {cells[1]} | {per[0]} | {per[1]} | {found} | "
                     f"{step} | {rollouts} | {tokens} | {zero} | {seconds} |")
    return "\n".join(lines) + "\n"


def plot_accuracy(table: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(table)
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.38
    for i, (s, label) in enumerate((("test", "test (3-5 operations)"), ("hard", "hard (6-7 operations)"))):
        means = [100 * table[k][s]["mean"] for k in keys]
        errs = []
        for k in keys:
            v = table[k][s]
            if k == "base":
                errs.append((100 * (v["mean"] - v["ci95"][0]), 100 * (v["ci95"][1] - v["mean"])))
            else:
                h = 0 if v["t95_half"] != v["t95_half"] else 100 * v["t95_half"]
                errs.append((min(h, 100 * v["mean"]), h))  # accuracy is >= 0: the bar's lower arm stops there
        xs = [j + (i - 0.5) * width for j in range(len(keys))]
        ax.bar(xs, means, width, yerr=list(zip(*errs)), capsize=3, label=label)
        for k, x in zip(keys, xs):
            if k != "base":
                ax.scatter([x] * len(table[k][s]["per_seed"]), [100 * a for a in table[k][s]["per_seed"]],
                           color="black", s=8, zorder=3)
    ax.set_xticks(range(len(keys)), [table[k]["label"].replace(" (", "\n(").replace(" without", "\nwithout")
                                     for k in keys], fontsize=8)
    ax.set_ylabel("greedy exact-match accuracy (%)")
    ax.set_ylim(bottom=0)
    ax.set_title("Chained arithmetic: mean over seeds, 95% t-interval (base: Wilson); dots = seeds")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


CURVES = (("reward", "training reward (SRL: step similarity; RLVR: outcome 0/1)"),
          ("dynamic_sampling/filtered_fraction", "groups with zero reward spread (filtered)"),
          ("format_error_rate", "format errors"),
          ("dynamic_sampling/rounds", "generation rounds per step"))


def plot_curves(results: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"rlvr": "tab:red", "srl": "tab:blue", "srl_nods": "tab:cyan", "srl_rlvr": "tab:purple"}
    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    for ax, (key, title) in zip(axes.flat, CURVES):
        for method, color in colors.items():
            runs = [r for r in results if r["method"] == method]
            by_step: dict[int, list[float]] = {}
            for r in runs:
                offset = 0
                for part in r["parts"]:
                    pts = [(offset + m["step"], m[key]) for m in part["metrics"]
                           if isinstance(m.get(key), (int, float))]
                    if pts:  # thin: one seed; dashed: the RLVR part
                        ax.plot(*zip(*pts), "-" if part["stage"] == "srl" else "--", color=color, alpha=0.25, lw=0.8)
                    for x, y in pts:
                        by_step.setdefault(x, []).append(y)
                    offset += part.get("optimizer_steps", 0)
            if by_step:  # bold: the mean over seeds
                xs = sorted(by_step)
                ax.plot(xs, [sum(by_step[x]) / len(by_step[x]) for x in xs], color=color, lw=2,
                        label=f"{LABELS[method]} (mean of {len(runs)})")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("optimizer step (thin: seeds; dashed: RLVR part of SRL → RLVR)", fontsize=8)
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(args, size: dict) -> dict:
    base = read_json(os.path.join(args.results, "base.json"))
    results = [read_json(os.path.join(args.results, f)) for f in sorted(os.listdir(args.results))
               if f.endswith(".json") and f.split("-s")[0] in METHODS]
    table = summarize(results, base)
    text = markdown(table, size)
    write_json_atomic(os.path.join(args.results, "summary.json"), {"table": table, "settings": _settings(args, size)})
    with open(os.path.join(args.results, "table.md"), "w", encoding="utf-8") as f:
        f.write(text)
    if args.figures:
        os.makedirs(args.figures, exist_ok=True)
        plot_accuracy(table, os.path.join(args.figures, "mechanism_accuracy.png"))
        plot_curves(results, os.path.join(args.figures, "mechanism_curves.png"))
    print(text, flush=True)
    return table


def _settings(args, size: dict) -> dict:
    return {**{k: v for k, v in vars(args).items()}, "size_settings": size}


# --- main ---------------------------------------------------------------------------------------------------
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", default="runs/mechanism", help="work folder: data, base model, run folders")
    p.add_argument("--results", default=None, help="small per-run result JSONs (default: <out>/results)")
    p.add_argument("--figures", default=None, help="folder for mechanism_*.png (default: <out>/figures)")
    p.add_argument("--size", default="small", choices=sorted(SIZES))
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--rl_steps", type=int, default=None, help="optimizer steps per RL method (default: per size)")
    p.add_argument("--rl_lr", type=float, default=5e-4)
    p.add_argument("--sft_lr", type=float, default=1e-3)
    p.add_argument("--max_rounds", type=int, default=3, help="dynamic sampling: generation rounds per step, at most")
    p.add_argument("--distractors", type=int, default=0, help="distractor sentences per problem")
    p.add_argument("--data_seed", type=int, default=0)
    p.add_argument("--base_seed", type=int, default=0)
    p.add_argument("--report_only", action="store_true", help="redraw table and figures from --results")
    args = p.parse_args(argv)
    args.results = args.results or os.path.join(args.out, "results")
    args.figures = args.figures or os.path.join(args.out, "figures")
    size = dict(SIZES[args.size])
    if args.rl_steps:
        size["rl_steps"] = args.rl_steps
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for m in methods:
        if m not in METHODS:
            p.error(f"unknown method '{m}' (expected one of {', '.join(METHODS)})")
    if args.report_only:
        report(args, size)
        return 0
    import logging

    logging.getLogger("srl").setLevel(logging.ERROR)  # the cap-hit warning fires every step of a hopeless batch
    os.makedirs(args.results, exist_ok=True)
    started = time.time()
    paths = make_data(args, size)
    base = pretrain(args, size, paths)
    base_json = os.path.join(args.results, "base.json")
    if not os.path.exists(base_json):
        info = read_json(os.path.join(base, "pretrain.json"))
        write_json_atomic(base_json, {"method": "base", "pretrain": info,
                                      "eval": evaluate_model(base, paths, os.path.join(args.out, "eval-base"), size)})
    base_info = read_json(base_json)
    if "steps" not in base_info["eval"]:  # written before the step-wise evaluation existed
        base_info["eval"]["steps"] = step_accuracy(base, paths["test"], size["step_instances"])
        write_json_atomic(base_json, base_info)
    print(f"[mechanism] base: {json.dumps(base_info['eval'])}", flush=True)
    for seed in range(args.seeds):
        for method in methods:
            path = os.path.join(args.results, f"{method}-s{seed}.json")
            if os.path.exists(path):
                done = read_json(path).get("budget", {})
                if done and done != budget(args, size):
                    p.error(f"{path} was run with {done}, not {budget(args, size)}: use another --results folder")
                continue
            result = run_method(method, seed, args, size, paths, base)
            write_json_atomic(path, result)
            print(f"[mechanism] {method} seed {seed}: test {result['eval']['test']['accuracy']:.3f}, hard "
                  f"{result['eval']['hard']['accuracy']:.3f} ({result['seconds']:.0f} s; "
                  f"{(time.time() - started) / 60:.1f} min so far)", flush=True)
    report(args, size)
    print(f"[mechanism] done in {(time.time() - started) / 60:.1f} min", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
