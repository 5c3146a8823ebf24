"""One-time conversion of the records of the two experiment runners that `srl compare` replaced (issue 20) into
compare's record format, so that `srl compare --report_only --record <folder>` renders their tables:

    python scripts/convert_records.py docs/results/gsm8k_table_b docs/results/mechanism docs/results/mechanism_srl120

Each folder's old record stays in `<folder>/source/` (what was measured); the converted runs are written to
`<folder>/runs/` (`base.json`, `<method>-s<seed>.json`). Old formats:

- `benchmarks/gsm8k_table.py` (`source/results.json`): one row per method, one seed; GSM8K greedy with its
  per-problem flags (paired tests), avg@k and MATH-500 greedy as numbers only (no per-problem values: those
  evaluations get no paired test), the SRL objective with its per-instance rewards, training parts with curves;
- `benchmarks/mechanism.py` (`source/base.json`, `source/<method>-s<seed>.json`): test and hard accuracies and
  the next-step exact match as numbers only (no per-problem values, no per-instance step rewards), and each
  training part's metrics of every step.

Nothing is re-measured or invented: a number the old record lacks is absent (or None) in the converted one.
"""

from __future__ import annotations

import json
import os
import sys
import time

from srl.io import write_json

CURVES = ("reward", "dynamic_sampling/filtered_fraction", "format_error_rate", "loss", "completions/mean_length",
          "dynamic_sampling/rounds")
FRACTION = {"half": "0.5", "end": "1"}  # the old runners' checkpoint names -> compare's budget fractions


def read_json(path: str):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def curve_mean(curves: dict, key: str) -> float | None:
    values = [y for _, y in curves.get(key) or []]
    return sum(values) / len(values) if values else None


def stage_record(stage: str, steps: int, generated_tokens: int, curves: dict, at_mark: dict, **extra) -> dict:
    """A stage as compare records it (`srl.experiments.runs.run_totals`): zero-spread and format-error rates are
    the means over its logged steps; the format-error rate is that of SRL stages only."""
    return {"stage": stage, "steps": steps, "generated_tokens": generated_tokens,
            "zero_spread_fraction": curve_mean(curves, "dynamic_sampling/filtered_fraction"),
            "format_error_rate": curve_mean(curves, "format_error_rate") if stage == "srl" else None,
            "curves": curves, "at_mark": at_mark, **extra}


def run_record(method: str, seed: int | None, label: str, settings: dict, stages: list[dict], **fields) -> dict:
    """A run of compare's record; rollouts and train time are those at the end of each stage's budget."""
    return {"method": method, "seed": seed, "label": label, "settings": settings, "stages": stages,
            "candidates": fields.pop("candidates", {"1": fields.get("model")}), "validation": {}, "chosen": "1",
            **fields,
            "rollouts": sum(s["at_mark"].get("1", {}).get("rollouts") or 0 for s in stages),
            "generated_tokens": sum(s["generated_tokens"] or 0 for s in stages),
            "train_seconds": round(sum(s["at_mark"].get("1", {}).get("seconds") or 0 for s in stages), 1)}


# --- benchmarks/gsm8k_table.py --------------------------------------------------------------------------------
def gsm8k_evaluations(r: dict, s: dict) -> dict:
    flags = r["gsm8k_greedy_flags"]
    k = s["k"]
    return {
        "gsm8k": {"metric": "greedy_accuracy", "value": r["gsm8k_greedy"], "metrics": {"greedy_accuracy":
                  r["gsm8k_greedy"]}, "n": len(flags), "paired": "exact", "items": flags,
                  "answer_rate": r["gsm8k_answer_rate"], "truncated_rate": r["gsm8k_truncated"]},
        f"gsm8k_avg{k}": {"metric": f"avg@{k}", "value": r[f"gsm8k_avg@{k}"], "metrics": {f"avg@{k}":
                          r[f"gsm8k_avg@{k}"]}, "n": s["k_problems"], "paired": "mean",
                          "answer_rate": None, "truncated_rate": None},
        "math500": {"metric": "greedy_accuracy", "value": r["math500_greedy"], "metrics": {"greedy_accuracy":
                    r["math500_greedy"]}, "n": s["math_problems"], "paired": "exact",
                    "answer_rate": None, "truncated_rate": None}}


def gsm8k_stages(name: str, r: dict) -> list[dict]:
    """The row's training parts; the marks (half, end) belong to its last part, SRL → RLVR's SRL part ends at
    the checkpoint its RLVR part started from."""
    parts = (r.get("training") or {}).get("parts", [])
    stages = []
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if last:
            at_mark = {FRACTION[m]: {"step": r["steps"][m], "seconds": r["train_seconds"][m]} for m in r["steps"]}
            at_mark["1"]["rollouts"] = part["rollouts"]
            budget = r["steps_budget"] or r["minutes_budget"] * 60
            marks = {FRACTION[m]: step for m, step in r["steps"].items()}
            extra = {"budget": {"unit": "steps" if r["steps_budget"] else "seconds", "amount": budget},
                     "marks": marks, "command": r["command"]}
        else:  # SRL → RLVR's SRL part
            srl = r["srl_part"]
            at_mark = {"1": {"step": srl["steps"], "seconds": srl["seconds"], "rollouts": part["rollouts"]}}
            extra = {"budget": {"unit": "steps", "amount": srl["steps"]}, "marks": {"1": srl["steps"]}}
        stages.append(stage_record(part["stage"], part["steps"], part["generated_tokens"], part["curves"], at_mark,
                                   **extra))
    return stages


def convert_gsm8k_table(folder: str) -> list[dict]:
    old = read_json(os.path.join(folder, "source", "results.json"))
    s = old["settings"]
    settings = {"runner": "benchmarks/gsm8k_table.py", "converted": time.strftime("%Y-%m-%d"), "old_settings": s}
    records = []
    for name, r in old["rows"].items():
        base = name == "base"
        candidates = {"1": r["model"]} if base else {FRACTION[m]: p for m, p in r["checkpoints"].items()}
        validation = {("1" if base else FRACTION[m]): v for m, v in r.get("validation_greedy", {}).items()}
        rec = run_record(name, None if base else s["seed"], r["label"], settings, [] if base else
                         gsm8k_stages(name, r), model=r["model"], candidates=candidates,
                         evaluations=gsm8k_evaluations(r, s), step_objective=r.get("step_objective"),
                         seconds=r.get("row_seconds"))
        rec.update(validation=validation, chosen="1" if base else FRACTION[r["chosen"]])
        records.append(rec)
    return records


# --- benchmarks/mechanism.py ----------------------------------------------------------------------------------
def mechanism_evaluations(ev: dict) -> tuple[dict, dict]:
    evaluations = {split: {"metric": "greedy_accuracy", "value": ev[split]["accuracy"],
                           "metrics": {"greedy_accuracy": ev[split]["accuracy"]}, "n": ev[split]["n"],
                           "paired": "exact", "answer_rate": ev[split]["answer_rate"],
                           "truncated_rate": ev[split]["truncated_rate"]} for split in ("test", "hard")}
    st = ev["steps"]
    steps = {"n": st["n"], "mean_reward": st["step_reward"], "mean_reward_ci95": None, "exact_match": st["exact"],
             "exact_match_wilson95": st["wilson95"], "format_error_rate": None}
    return evaluations, steps


def mechanism_stage(part: dict) -> dict:
    rows = [m for m in part["metrics"] if "loss" in m and "step" in m]
    curves = {key: [[m["step"], round(m[key], 5)] for m in rows if isinstance(m.get(key), (int, float))]
              for key in CURVES}
    steps = part.get("optimizer_steps", len(rows))
    at_mark = {"1": {"step": steps, "seconds": part["seconds"], "rollouts": part.get("rollouts", 0)}}
    return stage_record(part["stage"], steps, part.get("generated_tokens", 0), curves, at_mark,
                        command=part["command"], budget={"unit": "epochs", "amount": None} if part["stage"] == "sft"
                        else {"unit": "steps", "amount": steps})


def convert_mechanism(folder: str) -> list[dict]:
    source = os.path.join(folder, "source")
    summary = read_json(os.path.join(source, "summary.json"))
    settings = {"runner": "benchmarks/mechanism.py", "converted": time.strftime("%Y-%m-%d"),
                "old_settings": summary["settings"]}
    base = read_json(os.path.join(source, "base.json"))
    evaluations, steps = mechanism_evaluations(base["eval"])
    records = [run_record("base", None, summary["table"]["base"]["label"], settings, [],
                          model=os.path.join(summary["settings"]["out"], "base"),
                          evaluations=evaluations, step_objective=steps, pretrain=base["pretrain"])]
    for f in sorted(os.listdir(source)):
        if f in ("base.json", "summary.json") or not f.endswith(".json"):
            continue
        r = read_json(os.path.join(source, f))
        evaluations, steps = mechanism_evaluations(r["eval"])
        records.append(run_record(r["method"], r["seed"], r["label"], {**settings, "budget": r.get("budget")},
                                  [mechanism_stage(p) for p in r["parts"]], model=None,
                                  evaluations=evaluations, step_objective=steps, seconds=r["seconds"]))
    return records


def convert(folder: str) -> list[str]:
    """Convert `folder`'s old record (in `folder/source/`); returns the paths written."""
    source = os.path.join(folder, "source")
    if os.path.exists(os.path.join(source, "results.json")):
        records = convert_gsm8k_table(folder)
    elif os.path.exists(os.path.join(source, "summary.json")):
        records = convert_mechanism(folder)
    else:
        raise SystemExit(f"convert_records: {source} holds neither results.json (gsm8k_table.py) nor summary.json "
                         "(mechanism.py)")
    paths = []
    for rec in records:
        name = "base.json" if rec["method"] == "base" else f"{rec['method']}-s{rec['seed']}.json"
        paths.append(os.path.join(folder, "runs", name))
        write_json(paths[-1], rec)
    return paths


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    for folder in argv:
        for path in convert(folder):
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
