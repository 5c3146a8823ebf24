"""The fidelity experiment's preconditions (issue 21), measured on a base model before any method is compared.

    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/fidelity_preconditions.py --out runs/fidelity \\
        --json docs/results/fidelity/preconditions.json

- P1, the base model can act: greedy next step under the SRL prompt (`--think required`) on held-out step
  instances of the test split (built as `srl data build --format steps` builds them), scored with the SRL reward
  (`srl.evaluation.step_objective`): exact-match rate (>= 50% wanted) and mean step similarity.
- P2, whole problems are hard: greedy whole-solution accuracy under the evaluation prompt (`srl eval`) on test
  (<= 10% wanted) and hard (<= 5%); and the fraction of zero-spread groups at the start of RLVR: G samples at
  temperature 1 for train problems, groups whose 0/1 rewards are all equal (>= 80% wanted).
- P3, the expert is not the student: operations folded per expert line in the train split (>= 2 everywhere
  wanted) against the student's pre-training (one operation per scratchpad entry, easier problems), and how
  often the base writes the expert's line when asked for the action alone (`--think off`).
- P4, the student thinks for itself: sampled (T=1) responses under `--think required`: share with a valid format
  and a non-empty monologue.

Also the base's step-wise inference (`srl eval --stepwise`) on test, for the later comparison.
Writes every number to `--json` (and the evaluations' files under `<out>/preconditions/`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fidelity_base as base  # noqa: E402
import fidelity_task as task  # noqa: E402

SETTINGS = {  # what the lead's `srl compare` config should use with this base
    "think": "required", "max_completion_length_srl": 96, "max_completion_length_rlvr": 512,
    "eval_max_new_tokens": 768, "stepwise_max_new_tokens": 96, "stepwise_max_steps": 14, "answer_mode": "boxed"}


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        return next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")),
                    platform.processor())
    except OSError:
        return platform.processor()


def steps_p1(model: str, path: str, n: int, batch: int) -> dict:
    from srl.evaluation.step_objective import step_objective

    rows = base.step_rows(path, include_last_step=False)[:n]
    r = step_objective(model, rows, think="required", max_new_tokens=SETTINGS["max_completion_length_srl"],
                       batch_size=batch, threads=1)
    off = step_objective(model, base.step_rows(path, include_last_step=False, think="off")[:n], think="off",
                         max_new_tokens=24, batch_size=batch, threads=1)
    by_ops: dict[int, list[float]] = {}
    by_stage: dict[int, list[float]] = {}
    by_slip: dict[str, list[float]] = {}
    records = {x["id"]: x for x in task.read_jsonl(path)}
    for row, reward in zip(rows, r["rewards"]):
        ops = len(records[row["trajectory_id"]]["stages"][row["step_index"] - 1])
        by_ops.setdefault(ops, []).append(reward == 1.0)
        by_stage.setdefault(row["step_index"], []).append(reward == 1.0)
        by_slip.setdefault(slip_key(records[row["trajectory_id"]], row["step_index"]), []).append(reward == 1.0)
    keep = ("n", "exact_match", "exact_match_wilson95", "mean_reward", "mean_reward_ci95", "format_error_rate",
            "mean_similarity_well_formed", "generated_tokens")
    return {**{k: r[k] for k in keep}, "exact_by_ops_per_step": {k: sum(v) / len(v) for k, v in sorted(by_ops.items())},
            "exact_by_stage": {k: [sum(v) / len(v), len(v)] for k, v in sorted(by_stage.items())},
            "exact_by_slip": {k: [sum(v) / len(v), len(v)] for k, v in sorted(by_slip.items())},
            "examples": [{"expert": row["expert_step"], "response": t} for row, t in zip(rows[:3], r["responses"])],
            "action_only": {k: off[k] for k in ("exact_match", "mean_reward")}}


def slip_key(record: dict, stage: int) -> str:
    """Whether the student's habit can strike in this stage of `record` ("can slip") or not ("no slip")."""
    value = record["start"]
    for ops in task._ops(record)[:stage - 1]:
        value = task.expert_step(value, ops)[1]
    for op in task._ops(record)[stage - 1]:
        if task.slips(value, op):
            return "can slip"
        value = task.apply(value, op)
    return "no slip"


def think_p4(model: str, path: str, n: int, batch: int) -> dict:
    """Sampled SRL-prompt rollouts (T=1, as RL draws them) under --think required: valid format and monologue."""
    import torch

    from srl.evaluation.runner import prompt_ids
    from srl.generation.hf import generate_batch
    from srl.models import load_model_and_tokenizer
    from srl.rewards.format import OutputFormat, parse_response

    rows = base.step_rows(path, include_last_step=False)[:n]
    model_, tokenizer = load_model_and_tokenizer(model)
    torch.manual_seed(0)
    texts = []
    for start in range(0, len(rows), batch):
        ids = [prompt_ids(tokenizer, list(r["prompt"])) for r in rows[start:start + batch]]
        texts += [g.text for g in generate_batch(model_, tokenizer, ids, do_sample=True, temperature=1.0,
                                                 max_new_tokens=SETTINGS["max_completion_length_srl"])]
    parsed = [parse_response(t, OutputFormat(think="required")) for t in texts]
    thought = [p for p in parsed if p.ok and p.think]
    records = {x["id"]: x for x in task.read_jsonl(path)}
    by_slip: dict[str, list[bool]] = {}
    for p, r in zip(parsed, rows):
        by_slip.setdefault(slip_key(records[r["trajectory_id"]], r["step_index"]), []).append(
            p.ok and p.action == r["expert_step"])
    return {"exact_sampled_by_slip": {k: [sum(v) / len(v), len(v)] for k, v in sorted(by_slip.items())},"n": len(rows), "valid_format": sum(p.ok for p in parsed) / len(parsed),
            "valid_with_monologue": len(thought) / len(parsed),
            "mean_monologue_chars": sum(len(p.think) for p in thought) / max(1, len(thought)),
            "exact_sampled": sum(p.ok and p.action == r["expert_step"] for p, r in zip(parsed, rows)) / len(rows)}


def whole_p2(model: str, paths: dict, folder: str, zero_spread_problems: int, G: int, batch: int) -> dict:
    from srl.evaluation import EvalConfig, evaluate
    from srl.evaluation.metrics import wilson_interval

    out = {}
    for split in ("test", "hard"):
        s = evaluate(EvalConfig(model=model, data=paths[split], output_dir=os.path.join(folder, split),
                                max_new_tokens=SETTINGS["eval_max_new_tokens"], batch_size=batch, threads=1,
                                answer_mode="boxed"), progress=False, print_table=False).summary
        correct = round(s["metrics"]["greedy_accuracy"] * s["problems"])
        out[split] = {"accuracy": s["metrics"]["greedy_accuracy"], "n": s["problems"],
                      "wilson95": list(wilson_interval(correct, s["problems"])), "answer_rate": s["answer_rate"],
                      "truncated_rate": s["truncated_rate"], "mean_response_tokens": s["mean_response_tokens"]}
    result = evaluate(EvalConfig(model=model, data=paths["train"], output_dir=os.path.join(folder, "train_k"),
                                 limit=zero_spread_problems, greedy=False, k=G, temperature=1.0,
                                 max_new_tokens=SETTINGS["max_completion_length_rlvr"], batch_size=batch, threads=1,
                                 answer_mode="boxed"), progress=False, print_table=False)
    counts = [r["num_correct"] for r in result.records]
    out["rlvr_start"] = {"problems": len(counts), "G": G, "temperature": 1.0,
                         "zero_spread_fraction": sum(c in (0, G) for c in counts) / len(counts),
                         "all_wrong_fraction": sum(c == 0 for c in counts) / len(counts),
                         f"avg@{G}": result.summary["metrics"][f"avg@{G}"]}
    out["test"]["scratchpad"] = scratchpad_errors(os.path.join(folder, "test", "problems.jsonl"))
    out["stepwise_test"] = stepwise(model, paths["test"], os.path.join(folder, "stepwise_test"), batch)
    return out


def stepwise(model: str, path: str, folder: str, batch: int) -> dict:
    from srl.evaluation import EvalConfig, evaluate

    s = evaluate(EvalConfig(model=model, data=path, output_dir=folder, stepwise=True, think="required",
                            max_new_tokens=SETTINGS["stepwise_max_new_tokens"], max_steps=SETTINGS["stepwise_max_steps"],
                            batch_size=batch, threads=1, answer_mode="boxed"), progress=False, print_table=False).summary
    return {"accuracy": s["metrics"]["greedy_accuracy"], "n": s["problems"], **s["stepwise"]}


def scratchpad_errors(problems_jsonl: str) -> dict:
    """Where the base's whole solutions go wrong, from `srl eval`'s problems.jsonl: the share of scratchpads that
    copy their stage's words exactly (overall and per stage), and of scratchpad operations computed right."""
    import re

    copied: dict[int, list[bool]] = {}
    computed = []
    with open(problems_jsonl, encoding="utf-8") as f:
        for rec in map(json.loads, f):
            stated = dict(re.findall(r"Step (\w+): ([^.]*)\.", rec["problem"]))
            for n, (name, words, work) in enumerate(re.findall(r"Step (\w+): ([^.]*)\. ([^\n]*)\.\n",
                                                                rec["greedy"]["response"]), 1):
                copied.setdefault(n, []).append(stated.get(name) == words)
                for a, sign, b, c in re.findall(r"(\d+)([+\-*])(\d+)=(\d+)", work):
                    computed.append(task.apply(int(a), ("", sign, int(b))) == int(c))
    every = [x for v in copied.values() for x in v]
    return {"stage_words_copied": sum(every) / max(1, len(every)), "scratchpads": len(every),
            "copied_by_stage": {n: round(sum(v) / len(v), 3) for n, v in sorted(copied.items())},
            "operations_right": sum(computed) / max(1, len(computed)), "operations": len(computed)}


def expert_p3(paths: dict) -> dict:
    train, pre = task.read_jsonl(paths["train"]), task.read_jsonl(paths["pretrain"])
    per_line = [len(ops) for r in train for ops in r["stages"]]
    pre_line = [len(ops) for r in pre for ops in r["stages"]]
    return {"train_problems": len(train), "expert_lines": len(per_line),
            "expert_lines_folding_2_or_more": sum(k >= 2 for k in per_line) / len(per_line),
            "expert_ops_per_line": sum(per_line) / len(per_line),
            "pretrain_problems": len(pre), "pretrain_stages_per_problem": [min(r["num_stages"] for r in pre),
                                                                           max(r["num_stages"] for r in pre)],
            "train_stages_per_problem": [min(r["num_stages"] for r in train), max(r["num_stages"] for r in train)],
            "pretrain_ops_per_stage": sum(pre_line) / len(pre_line),
            "expert_lines_where_the_student_can_slip": sum(slip_key(r, i) == "can slip" for r in train
                                                           for i in range(1, len(r["stages"]) + 1)) / len(per_line),
            "student_scratchpad": "one operation per entry (fidelity_task.scratchpad)",
            "pretrain_train_overlap": len({r["problem"] for r in pre} & {r["problem"] for r in train})}


def screen(out: str, json_path: str | None, steps_n: int = 200, problems: int = 100, batch: int = 64) -> list[dict]:
    """P1 and P2's whole-problem accuracy on the *validation* split for every checkpoint fidelity_base.py saved
    (`<out>/checkpoints/step-<n>`, `--save_every`) and the finished base: to see where along pre-training the
    preconditions hold, without touching the test split."""
    from srl.evaluation import EvalConfig, evaluate
    from srl.evaluation.step_objective import step_objective
    from srl.io import write_json

    path = os.path.join(out, "data", "validation.jsonl")
    rows = base.step_rows(path, include_last_step=False)[:steps_n]
    folders = sorted(os.listdir(os.path.join(out, "checkpoints")), key=lambda n: int(n.split("-")[1]))
    models = [os.path.join(out, "checkpoints", n) for n in folders] + [os.path.join(out, "base")]
    result = []
    for model in models:
        if not os.path.exists(os.path.join(model, "config.json")):
            continue
        r = step_objective(model, rows, think="required", max_new_tokens=SETTINGS["max_completion_length_srl"],
                           batch_size=batch, threads=1)
        s = evaluate(EvalConfig(model=model, data=path, output_dir=os.path.join(out, "screen", os.path.basename(model)),
                                limit=problems, max_new_tokens=SETTINGS["eval_max_new_tokens"], batch_size=batch,
                                threads=1, answer_mode="boxed"), progress=False, print_table=False).summary
        result.append({"model": model, "P1_validation": r["exact_match"], "step_similarity": r["mean_reward"],
                       "whole_validation": s["metrics"]["greedy_accuracy"], "n_steps": r["n"], "n_problems": s["problems"]})
        print(json.dumps(result[-1]), flush=True)
        if json_path:
            write_json(json_path, result)
    return result


def measure(out: str, json_path: str | None, steps_n: int = 300, zero_spread_problems: int = 50, G: int = 8,
            batch: int = 64) -> dict:
    from srl.io import write_json

    started = time.time()
    model = os.path.join(out, "base")
    paths = {s: os.path.join(out, "data", f"{s}.jsonl") for s in task.SIZES}
    folder = os.path.join(out, "preconditions")
    result = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpu": cpu_model(),
              "base": base.read_marker(model), "model": model, "data": paths,
              "settings": SETTINGS}
    result["P1"] = steps_p1(model, paths["test"], steps_n, batch)
    result["P4"] = think_p4(model, paths["test"], min(steps_n, 200), batch)
    result["P3"] = expert_p3(paths)
    result["P2"] = whole_p2(model, paths, folder, zero_spread_problems, G, batch)
    p1, p2 = result["P1"], result["P2"]
    result["holds"] = {"P1": p1["exact_match"] >= 0.5, "P2": p2["test"]["accuracy"] <= 0.10 and
                       p2["hard"]["accuracy"] <= 0.05 and p2["rlvr_start"]["zero_spread_fraction"] >= 0.8,
                       "P3": result["P3"]["expert_lines_folding_2_or_more"] == 1.0,
                       "P4": result["P4"]["valid_with_monologue"] >= 0.9}
    result["seconds"] = round(time.time() - started, 1)
    if json_path:
        write_json(json_path, result)
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/fidelity", help="the folder fidelity_base.py wrote (data/, base/)")
    p.add_argument("--json", default=None, help="write the numbers here (default: <out>/preconditions.json)")
    p.add_argument("--steps", type=int, default=300, help="held-out step instances for P1 (P4: up to 200)")
    p.add_argument("--zero_spread_problems", type=int, default=50)
    p.add_argument("--G", type=int, default=8)
    p.add_argument("--screen", action="store_true",
                   help="instead: P1 and whole accuracy on validation for every checkpoint under <out>/checkpoints")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    if args.screen:
        screen(args.out, args.json or os.path.join(args.out, "screen.json"))
        return 0
    r = measure(args.out, args.json or os.path.join(args.out, "preconditions.json"), args.steps,
                args.zero_spread_problems, args.G)
    print(json.dumps({k: r[k] for k in ("P1", "P2", "P3", "P4", "holds", "seconds")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
