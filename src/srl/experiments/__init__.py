"""Experiments: the paper's comparison as a library feature. `srl compare` trains one base model with several
methods (SFT, RLVR, SRL, SRL → RLVR, ablations; each a sequence of `srl train` stages) at the same budget,
chooses each run's checkpoint on validation problems carved from the training data, evaluates every run on the
same problems (`srl eval` benchmarks and the SRL objective on held-out steps) and compares them with paired
tests (docs/compare.md).

    from srl.experiments import CompareConfig, compare
    results = compare(CompareConfig(model="smollm2-135m-instruct", train_data="train.jsonl", data_format="gsm8k",
                                    evaluations=[{"name": "gsm8k", "data": "gsm8k", "limit": 200}]))
    print(results["table"])

- `config`: `CompareConfig` (every option documented) and the built-in methods;
- `runs`: the data splits, each run trained, chosen and evaluated, the record of finished runs;
- `worker`: each training stage and evaluation in its own process;
- `report`: statistics (`srl.evaluation.metrics`), results.json, table.md and the figures.
"""

from __future__ import annotations

import os

from srl.experiments.config import LABELS, METHODS, CompareConfig


def recorded_runs(record: str) -> list[dict]:
    """The finished runs of a record folder."""
    from srl.experiments.runs import read_json

    folder = os.path.join(record, "runs")
    if not os.path.isdir(folder):
        return []
    return [read_json(os.path.join(folder, f)) for f in sorted(os.listdir(folder)) if f.endswith(".json")]


def compare(cfg: CompareConfig) -> dict:
    """Run (or, with `report_only`, only report) the comparison; returns the results with `table` (markdown)."""
    from srl.experiments.report import write_report
    from srl.experiments.runs import run_all

    if cfg.report_only:
        records = recorded_runs(cfg.record)
        if not records:
            from srl.errors import InputError

            raise InputError("holds no finished runs (runs/*.json)", path=cfg.record, field="record")
    else:
        records = run_all(cfg)
    order = list(cfg.methods) + sorted({r["method"] for r in records} - set(cfg.methods))
    title = cfg.title
    previous = os.path.join(cfg.record, "results.json")
    if not title and os.path.exists(previous):  # a redraw keeps the record's title
        from srl.experiments.runs import read_json

        title = read_json(previous).get("title", "")
    return write_report(records, order, cfg.record, cfg.figures, title)


__all__ = ["CompareConfig", "LABELS", "METHODS", "compare", "recorded_runs"]
