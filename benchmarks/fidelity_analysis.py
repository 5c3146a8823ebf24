"""Why the fidelity experiment (issue 21) came out as it did: numbers read from its `srl compare` record.

    python benchmarks/fidelity_analysis.py --record docs/results/fidelity/compare \\
        --steps runs/fidelity/compare/data/step_eval.jsonl --test runs/fidelity/data/test.jsonl \\
        --json docs/results/fidelity/analysis.json

1. Where each method's next steps are right: the exact-next-step rate of the SRL objective (`step_eval`, greedy,
   held-out test steps) by the stage the step belongs to, and by whether the student's pre-trained habit can
   strike in that stage ("can slip": a subtraction from >= 20 that needs a borrow, `fidelity_task.slips`) or not,
   mean over seeds.
2. What the step reward credits: the difflib similarity (the SRL reward) of wrong actions to the expert's line,
   on every computing step of the test problems: the right expression with a wrong result, the right operations
   from a wrong start value, another stage's operations, the next stage's line, and the student's slip (where
   its habit strikes).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import random
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fidelity_task as task  # noqa: E402

BANDS = {"1-2": (1, 2), "3-4": (3, 4), "5-6": (5, 6), "7-9": (7, 9)}


def by_stage(record: str, steps_path: str, test_path: str) -> dict:
    """method -> {band or slip bucket: mean exact rate over seeds, "format_errors", "think_used", "seeds"}."""
    from fidelity_preconditions import slip_key

    from srl.io import read_records

    rows = [r.data for r in read_records(steps_path)]
    records = {r["problem"]: r for r in task.read_jsonl(test_path)}  # by text: step_eval's trajectory ids are line numbers
    index = [r["step_index"] for r in rows]
    slip = [slip_key(records[r["problem"]], r["step_index"]) for r in rows]
    per_method: dict[str, list[dict]] = {}
    for path in sorted(glob.glob(os.path.join(record, "runs", "*.json"))):
        with open(path, encoding="utf-8") as f:
            run = json.load(f)
        s = run.get("step_objective")
        if not s:
            continue
        bands = {}
        for name, (lo, hi) in BANDS.items():
            hits = [r == 1.0 for r, k in zip(s["rewards"], index) if lo <= k <= hi]
            bands[name] = sum(hits) / len(hits) if hits else None
        for name in ("can slip", "no slip"):
            hits = [r == 1.0 for r, k in zip(s["rewards"], slip) if k == name]
            bands[name] = sum(hits) / len(hits) if hits else None
        per_method.setdefault(run["method"], []).append(
            {**bands, "all": s["exact_match"], "mean_reward": s["mean_reward"],
             "format_errors": s["format_error_rate"], "think_used": s.get("think_used")})
    counts = {name: sum(lo <= k <= hi for k in index) for name, (lo, hi) in BANDS.items()}
    counts.update({name: slip.count(name) for name in ("can slip", "no slip")})
    out = {"instances_per_band": counts}
    for method, runs in per_method.items():
        out[method] = {k: round(statistics.mean(r[k] for r in runs), 4) for k in runs[0] if runs[0][k] is not None}
        out[method]["seeds"] = len(runs)
    return out


def reward_credit(test_path: str) -> dict:
    """Mean similarity to the expert's line of four kinds of wrong action, over every computing step."""
    from srl.rewards.text_similarity import similarity

    kinds: dict[str, list[float]] = {"wrong result": [], "wrong start value": [], "another stage's operations": [],
                                     "the next stage's line": [], "the student's slip": []}
    for record in task.read_jsonl(test_path):
        ops, value, lines = task._ops(record), record["start"], record["steps"][:-1]
        for i, (stage, line) in enumerate(zip(ops, lines)):
            expr, result = line.split(" = ")
            kinds["wrong result"].append(similarity(f"{expr} = {int(result) + 1}", line))
            kinds["wrong start value"].append(similarity(task.expert_step(value + 1, stage)[0], line))
            other = ops[i - 1] if i else ops[i + 1]
            kinds["another stage's operations"].append(similarity(task.expert_step(value, other)[0], line))
            slipped = task.work_out(value, stage, random.Random(0), 1.0)[-1]
            if slipped != int(result):
                kinds["the student's slip"].append(similarity(f"{expr} = {slipped}", line))
            if i + 1 < len(lines):
                kinds["the next stage's line"].append(similarity(lines[i + 1], line))
            value = task.expert_step(value, stage)[1]
    return {k: {"mean": round(statistics.mean(v), 4), "n": len(v)} for k, v in kinds.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--record", default="docs/results/fidelity/compare")
    p.add_argument("--steps", default="runs/fidelity/compare/data/step_eval.jsonl",
                   help="the comparison's held-out step instances (its work folder's data/step_eval.jsonl)")
    p.add_argument("--test", default="runs/fidelity/data/test.jsonl")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    result = {"exact_next_step_by_stage": by_stage(args.record, args.steps, args.test), "reward_credit": reward_credit(args.test)}
    text = json.dumps(result, indent=1)
    if args.json:
        from srl.io import write_json

        write_json(args.json, result)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
