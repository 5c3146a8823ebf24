"""The report of a comparison, from its record alone (`srl compare --report_only` redraws it anywhere):
results.json (every method's means and intervals, every pair's paired tests), table.md, and two figures
(accuracy with intervals and seeds; training curves).

Statistics, all from `srl.evaluation.metrics`:
- a method with one run: the Wilson 95% interval of each greedy accuracy; with several seeds: the mean over
  seeds and its 95% Student-t interval (seed-to-seed variation, the larger uncertainty here);
- every pair of methods on the same problems: McNemar's exact test of the greedy answers (runs matched by seed,
  the base model's one run matched with every seed, problems pooled over the matched runs), or the paired mean
  difference for sampled evaluations (avg@k) and for the SRL objective (step reward on the same instances);
  and the mean over matched seeds of the accuracy difference with its t-interval.
"""

from __future__ import annotations

import itertools
import math
import os
import textwrap
from typing import Any

from srl.evaluation.metrics import paired_exact_test, paired_mean_difference, t_interval, wilson_interval
from srl.io import atomic_open, write_json

CURVE_TITLES = {"reward": "training reward (SRL: step similarity; RLVR: outcome 0/1)",
                "dynamic_sampling/filtered_fraction": "groups with zero reward spread (filtered)",
                "format_error_rate": "format errors in SRL rollouts", "loss": "training loss"}


def _finite(x):
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


def _mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def summarize_method(runs: list[dict]) -> dict[str, Any]:
    """Means over a method's runs (seeds), with intervals."""
    first = runs[0]
    row: dict[str, Any] = {"label": first["label"], "runs": len(runs), "seeds": [r["seed"] for r in runs],
                           "evaluations": {}}
    for name, e in first["evaluations"].items():
        values = [r["evaluations"][name]["value"] for r in runs]
        mean, half = t_interval(values)
        cell = {"metric": e["metric"], "mean": mean, "per_seed": values, "n": e["n"],
                "answer_rate": _mean([r["evaluations"][name].get("answer_rate") for r in runs]),
                "truncated_rate": _mean([r["evaluations"][name].get("truncated_rate") for r in runs])}
        if len(runs) > 1:
            cell["ci95"], cell["interval"] = [mean - half, mean + half], "t over seeds"
        elif e["paired"] == "exact":
            cell["ci95"], cell["interval"] = list(wilson_interval(round(mean * e["n"]), e["n"])), "Wilson"
        row["evaluations"][name] = cell
    steps = [r["step_objective"] for r in runs if r.get("step_objective")]
    if steps:
        mean, half = t_interval([s["mean_reward"] for s in steps])
        row["step_objective"] = {
            "mean_reward": mean,
            "ci95": [mean - half, mean + half] if len(steps) > 1 else steps[0].get("mean_reward_ci95"),
            "exact_match": _mean([s["exact_match"] for s in steps]),
            "format_error_rate": _mean([s["format_error_rate"] for s in steps]),
            "think_used": _mean([s.get("think_used") for s in steps]),
            "think_chars": _mean([s.get("think_chars") for s in steps]), "n": steps[0]["n"]}
    stage_runs = [r["stages"] for r in runs]
    row["training"] = {key: _mean([r.get(key) for r in runs]) for key in ("rollouts", "generated_tokens",
                                                                           "train_seconds")}
    row["training"]["steps"] = _mean([sum(s["steps"] for s in st) for st in stage_runs]) if first["stages"] else None
    for key in ("zero_spread_fraction", "format_error_rate"):
        row["training"][key] = _mean([s.get(key) for st in stage_runs for s in st])
    rlvr = [s.get("zero_spread_fraction") for st in stage_runs for s in st if s["stage"] == "rlvr"]
    row["training"]["rlvr_zero_spread_fraction"] = _mean(rlvr)
    row["chosen"] = [r["chosen"] for r in runs]
    return row


def _matched(a: list[dict], b: list[dict]) -> list[tuple[dict, dict]]:
    """Runs of two methods on the same seed; a method with one seed-less run (the base model) matches all."""
    if any(r["seed"] is None for r in a) or any(r["seed"] is None for r in b):
        return list(itertools.product(a, b))
    by_seed = {r["seed"]: r for r in b}
    return [(r, by_seed[r["seed"]]) for r in a if r["seed"] in by_seed]


def compare_pair(a: list[dict], b: list[dict]) -> dict[str, Any]:
    pairs = _matched(a, b)
    out: dict[str, Any] = {"a": a[0]["method"], "b": b[0]["method"], "matched_runs": len(pairs), "evaluations": {}}
    for name, e in a[0]["evaluations"].items():
        if name not in b[0]["evaluations"]:
            continue
        xs, ys = [], []
        for ra, rb in pairs:
            ia, ib = ra["evaluations"][name].get("items"), rb["evaluations"][name].get("items")
            if not ia or not ib:  # a record without per-problem values (converted from an older runner)
                xs = None
                break
            common = [k for k in ia if k in ib]
            xs += [ia[k] for k in common]
            ys += [ib[k] for k in common]
        cell = ({} if xs is None else paired_exact_test([bool(x) for x in xs], [bool(y) for y in ys])
                if e["paired"] == "exact" else paired_mean_difference(xs, ys))
        diffs = [ra["evaluations"][name]["value"] - rb["evaluations"][name]["value"] for ra, rb in pairs]
        if len(pairs) > 1:
            mean, half = t_interval(diffs)
            cell["seed_difference"] = {"mean": mean, "ci95": [mean - half, mean + half]}
        out["evaluations"][name] = cell
    sa = [(ra["step_objective"], rb["step_objective"]) for ra, rb in pairs
          if ra.get("step_objective") and rb.get("step_objective")]
    if sa and all(x.get("rewards") and len(x["rewards"]) == len(y.get("rewards") or []) for x, y in sa):
        out["step_reward"] = paired_mean_difference([v for x, _ in sa for v in x["rewards"]],
                                                    [v for _, y in sa for v in y["rewards"]])
    return out


def build(records: list[dict], methods: list[str], title: str = "") -> dict[str, Any]:
    by_method = {m: [r for r in records if r["method"] == m] for m in methods}
    by_method = {m: runs for m, runs in by_method.items() if runs}
    return {"title": title, "methods": {m: summarize_method(runs) for m, runs in by_method.items()},
            "pairs": [compare_pair(by_method[a], by_method[b]) for a, b in itertools.combinations(by_method, 2)],
            "settings": records[0]["settings"] if records else {}}


def _pct(x) -> str:
    return "—" if _finite(x) is None else f"{100 * x:.1f}"


def _interval(cell: dict) -> str:
    ci = cell.get("ci95")
    return "" if not ci or _finite(ci[0]) is None else f" [{_pct(max(ci[0], 0))}, {_pct(min(ci[1], 1))}]"


def markdown(results: dict[str, Any]) -> str:
    methods = results["methods"]
    if not methods:
        return "No finished runs yet.\n"
    evals = list(next(iter(methods.values()))["evaluations"])
    first = next(iter(methods.values()))
    def interval_note(name):  # sampled metrics of a single run have no interval here
        return " [95% CI]" if any(m["evaluations"][name].get("ci95") for m in methods.values()) else ""

    head = ["method", "runs"] + [f"{n}: {first['evaluations'][n]['metric']} (n={first['evaluations'][n]['n']})"
                                 f"{interval_note(n)}" for n in evals]
    head += ["SRL objective: step reward [95% CI]", "next step exact", "monologue used", "answer found", "rollouts",
             "generated tokens",
             "train time", "zero-spread groups", "format errors (SRL)", "checkpoint"]
    lines = [f"### {results['title']}\n" if results.get("title") else "", "| " + " | ".join(head) + " |",
             "|" + "---|" * len(head)]
    for m in methods.values():
        cells = [m["label"], str(m["runs"])]
        for n in evals:
            c = m["evaluations"][n]
            seeds = f" (seeds: {', '.join(_pct(v) for v in c['per_seed'])})" if m["runs"] > 1 else ""
            cells.append(f"{_pct(c['mean'])}{_interval(c)}{seeds}")
        st = m.get("step_objective")
        cells.append("—" if not st else f"{st['mean_reward']:.3f}" +
                     (f" [{st['ci95'][0]:.3f}, {st['ci95'][1]:.3f}]" if st["ci95"] else ""))
        cells.append("—" if not st else _pct(st["exact_match"]))
        cells.append("—" if not st or st.get("think_used") is None else _pct(st["think_used"]))
        cells.append(_pct(m["evaluations"][evals[0]]["answer_rate"]) if evals else "—")
        t = m["training"]
        cells.append("—" if not t.get("rollouts") else f"{t['rollouts']:,.0f}")
        cells.append("—" if not t.get("generated_tokens") else f"{t['generated_tokens']:,.0f}")
        cells.append("—" if not t.get("train_seconds") else f"{t['train_seconds'] / 60:.1f} min, {t['steps']:.0f} steps")
        cells.append("—" if t.get("zero_spread_fraction") is None else _pct(t["zero_spread_fraction"]))
        cells.append("—" if t.get("format_error_rate") is None else _pct(t["format_error_rate"]))
        cells.append("—" if not m["training"].get("steps") else ", ".join(f"{c}×budget" for c in m["chosen"]))
        lines.append("| " + " | ".join(cells) + " |")
    if results["pairs"]:
        lines += ["", "Paired comparisons on the same problems (a − b): greedy answers by McNemar's exact test (right "
                  "for a only / for b only, difference in points, two-sided p), sampled ones and the step reward by "
                  "the paired mean difference; with several seeds also the mean over seeds of the difference "
                  "[95% t-interval].", ""]
        head = ["a", "b"] + [f"{n}: a only / b only, a − b, p" for n in evals] + ["step reward a − b [95% CI], p"]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for p in results["pairs"]:
            cells = [methods[p["a"]]["label"], methods[p["b"]]["label"]]
            for n in evals:
                c = p["evaluations"].get(n)
                if not c:
                    cells.append("—")
                    continue
                text = (f"{c['a_only']} / {c['b_only']}, {100 * c['difference']:+.1f}, p={c['p_value']:.3g}"
                        if "a_only" in c else f"{100 * c['difference']:+.1f}, p={c['p_value']:.3g}"
                        if "difference" in c else "no per-problem values")
                if "seed_difference" in c:
                    sd = c["seed_difference"]
                    text += f"; seeds {100 * sd['mean']:+.1f} [{100 * sd['ci95'][0]:+.1f}, {100 * sd['ci95'][1]:+.1f}]"
                cells.append(text)
            st = p.get("step_reward")
            cells.append("—" if not st else f"{st['difference']:+.3f} [{st['ci95'][0]:+.3f}, {st['ci95'][1]:+.3f}], "
                         f"p={st['p_value']:.3g}")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines).lstrip("\n") + "\n"


def plot_accuracy(results: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(results["methods"].values())
    evals = list(methods[0]["evaluations"]) if methods else []
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(methods) + 2), 4.2))
    width = 0.8 / max(1, len(evals))
    for i, name in enumerate(evals):
        cells = [m["evaluations"][name] for m in methods]
        xs = [j + (i - (len(evals) - 1) / 2) * width for j in range(len(methods))]
        means = [100 * c["mean"] for c in cells]
        errs = [[max(0.0, h - 100 * max(c["ci95"][0], 0)) if c.get("ci95") and _finite(c["ci95"][0]) is not None
                 else 0 for h, c in zip(means, cells)],
                [max(0.0, 100 * min(c["ci95"][1], 1) - h) if c.get("ci95") and _finite(c["ci95"][1]) is not None
                 else 0 for h, c in zip(means, cells)]]
        has_ci = any(e > 0 for side in errs for e in side) or any(c.get("ci95") for c in cells)
        ax.bar(xs, means, width, yerr=errs if has_ci else None, capsize=3 if has_ci else 0,
               label=f"{name} ({cells[0]['metric']}, n={cells[0]['n']})")
        for x, c in zip(xs, cells):
            if len(c["per_seed"]) > 1:
                ax.scatter([x] * len(c["per_seed"]), [100 * v for v in c["per_seed"]], color="black", s=8, zorder=3)
    # labels wrapped to the bar group's width (long ablation names overlapped their neighbours)
    ax.set_xticks(range(len(methods)), [textwrap.fill(m["label"], 22) for m in methods], fontsize=8)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(bottom=0)
    ax.set_title((results.get("title") or "method comparison") + "\nbars: mean; whiskers: 95% CI (one run: Wilson; "
                 "seeds: t); dots: seeds", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    if evals:
        ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_open(path, "wb") as f:
        fig.savefig(f, dpi=110, format="png")
    plt.close(fig)


def curve(stage: dict, key: str) -> list:
    """A stage's (step, value) points of a training curve. Format errors are an SRL panel: an RLVR or SFT stage's
    rate (0 under its own reward) is left out rather than drawn as a flat line under the SRL curves."""
    if key == "format_error_rate" and stage.get("stage", "srl") != "srl":
        return []
    return stage["curves"].get(key, [])


def plot_curves(records: list[dict], methods: list[str], labels: dict[str, str], path: str) -> None:
    """Per-step training curves, the mean over seeds in bold and each seed thin; a method's later stages (the RLVR
    of SRL → RLVR) dashed, after its earlier ones."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (key, title) in zip(axes.flat, CURVE_TITLES.items()):
        for j, method in enumerate(m for m in methods if m != "base"):
            runs = [r for r in records if r["method"] == method]
            color = colors[j % len(colors)]
            by_stage: dict[int, dict[int, list[float]]] = {}  # stage index -> step -> values over seeds
            for r in runs:
                offset = 0
                for k, stage in enumerate(r["stages"]):
                    pts = [(offset + x, y) for x, y in curve(stage, key)]
                    if pts:
                        ax.plot(*zip(*pts), "--" if k else "-", color=color, alpha=0.3, lw=0.8)
                    for x, y in pts:
                        by_stage.setdefault(k, {}).setdefault(x, []).append(y)
                    offset += stage["steps"]
            for k, by_step in sorted(by_stage.items()):
                xs = sorted(by_step)
                ax.plot(xs, [sum(by_step[x]) / len(by_step[x]) for x in xs], "--" if k else "-", color=color, lw=2,
                        marker="." if len(xs) < 3 else None,
                        label=None if k else f"{labels.get(method, method)} (mean of {len(runs)})")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("optimizer step (thin: seeds; dashed: a method's later stage)", fontsize=8)
        ax.xaxis.get_major_locator().set_params(integer=True)
        if key in ("dynamic_sampling/filtered_fraction", "format_error_rate"):
            ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_open(path, "wb") as f:
        fig.savefig(f, dpi=110, format="png")
    plt.close(fig)


def write_report(records: list[dict], methods: list[str], record: str, figures: str | None, title: str = "") -> dict:
    """results.json and table.md into `record`, the figures into `figures` (default `record`)."""
    results = build(records, methods, title)
    write_json(os.path.join(record, "results.json"), results)
    table = markdown(results)
    with atomic_open(os.path.join(record, "table.md")) as f:
        f.write(table)
    folder = figures or record
    os.makedirs(folder, exist_ok=True)
    stem = os.path.basename(os.path.normpath(record)) if figures else "table"
    results["figures"] = [os.path.join(folder, f"{stem}.png"), os.path.join(folder, f"{stem}_curves.png")]
    if results["methods"]:
        plot_accuracy(results, results["figures"][0])
        labels = {m: s["label"] for m, s in results["methods"].items()}
        plot_curves(records, list(results["methods"]), labels, results["figures"][1])
    results["table"] = table
    return results
