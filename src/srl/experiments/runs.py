"""The runs of a comparison: the data splits, each (method, seed) trained stage by stage at its budget, its
checkpoint chosen on validation problems, and evaluated; each finished run kept as one small JSON file in the
record (`runs/<method>-s<seed>.json`, the base model's `runs/base.json`), which a rerun on any machine reuses.

Every function that trains or evaluates keeps its result in a file inside the work folder and returns it from
there on a second call, so a comparison cut anywhere continues where it stopped (a stage with a budget in steps
or rollouts resumes from its last checkpoint; one with a wall-clock budget starts again).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from typing import Any

from srl.console import console
from srl.errors import InputError
from srl.experiments.config import CompareConfig, digest
from srl.experiments.worker import call
from srl.io import read_mapping, read_records, write_json, write_jsonl
from srl.rewards.stage import reward_options

CURVES = ("reward", "dynamic_sampling/filtered_fraction", "format_error_rate", "loss", "completions/mean_length")


def log(message: str) -> None:
    console(stderr=True).print(f"[bold]compare[/] {message}", highlight=False)


def read_json(path: str) -> dict[str, Any]:
    """A JSON file this module wrote (a run, a stage, an evaluation, a marker): `srl.io.read_mapping`."""
    return read_mapping(path, what="file")


# --- data -----------------------------------------------------------------------------------------------------
def prepare_data(cfg: CompareConfig) -> dict[str, Any]:
    """`<output_dir>/data/`: the training problems less `validation_problems` held out (seeded, whole problems:
    one record of --train_data is one trajectory), and the held-out step instances of the SRL objective. The
    files are made again when what they are made from changed (`split.json`: the data's content hash and the
    options), so a work folder reused with other data never trains on the old split. Returns their paths, the
    data's hash, and the SRL stage's reward options (the format the SRL objective is scored in)."""
    folder = os.path.join(cfg.output_dir, "data")
    paths: dict[str, Any] = {"train": os.path.join(folder, "train.jsonl"), "validation": None, "steps": None,
                             "digest": digest(cfg.train_data)}
    srl_run = srl_arguments(cfg, cfg.train_data, cfg.data_format)
    paths["step_options"] = reward_options("srl", srl_run)
    made_from = json.loads(json.dumps({"data_digest": paths["digest"], "validation_problems": cfg.validation_problems,
                                       "step_eval": cfg.step_eval, "srl": vars(srl_run)}, default=str))
    marker = os.path.join(folder, "split.json")
    if not os.path.exists(marker) or read_json(marker) != made_from:
        shutil.rmtree(folder, ignore_errors=True)
    records = [r.data for r in read_records(cfg.train_data)]
    if cfg.validation_problems >= len(records):
        raise InputError(f"holds {len(records)} problems: cannot hold out {cfg.validation_problems} for validation",
                         path=cfg.train_data, field="validation_problems")
    order = list(range(len(records)))
    random.Random(0).shuffle(order)
    held = set(order[:cfg.validation_problems])
    if not os.path.exists(paths["train"]):
        write_jsonl(paths["train"], (r for i, r in enumerate(records) if i not in held))
    if held:
        paths["validation"] = os.path.join(folder, "validation.jsonl")
        if not os.path.exists(paths["validation"]):
            write_jsonl(paths["validation"], (records[i] for i in sorted(held)))
    if cfg.step_eval is not None:
        paths["steps"] = step_instances(cfg, paths["validation"], os.path.join(folder, "step_eval.jsonl"))
    write_json(marker, made_from)
    return paths


def srl_arguments(cfg: CompareConfig, train_data: str, data_format: str):
    """The SRL stage's `RunArguments` from the comparison's preset and stage options (as its runs parse them)."""
    from srl.training.chain import StageSpec

    options = {"preset": cfg.preset, **cfg.stage_options.get("shared", {}), **cfg.stage_options.get("srl", {}),
               "train_data": train_data, "data_format": data_format, "model": cfg.model}
    return StageSpec("srl", options, source="stage_options").arguments()[0]


def step_instances(cfg: CompareConfig, validation: str | None, path: str) -> str | None:
    """Held-out step-wise instances (`step_eval.limit` of them, seeded) cut with the SRL stage's data options
    from `step_eval.data` (default: the validation problems), or read from it when it holds instances."""
    if os.path.exists(path):
        return path
    source = cfg.step_eval.get("data") or validation
    if source is None:
        return None
    from srl.data.benchmarks import resolve_data
    from srl.training.rows import srl_rows

    source = resolve_data(source)[0]  # a file, or a benchmark name (its test split: held out from training)
    rows = srl_rows(srl_arguments(cfg, source, cfg.step_eval.get("data_format") or cfg.data_format))
    random.Random(0).shuffle(rows)
    write_jsonl(path, rows[:cfg.step_eval.get("limit") or 200])
    return path


# --- training -------------------------------------------------------------------------------------------------
def budget_options(budget: dict[str, Any]) -> dict[str, Any]:
    """The `srl train` options a stage's budget implies: a steps budget is the stage's length, checkpointed every
    eighth of it (a cut run resumes); other budgets stop the stage from the callback."""
    unit, amount = budget["unit"], budget["amount"]
    if unit == "steps":
        return {"max_steps": int(amount), "save_steps": max(1, int(amount) // 8), "save_total_limit": None}
    if unit == "epochs":
        return {"save_strategy": "no"} if not amount else {"max_steps": int(amount), "save_strategy": "no"}
    return {"max_steps": 1_000_000, "save_steps": 1_000_000, "save_total_limit": None}


def train_stage(spec: dict[str, Any], budget: dict[str, Any], candidates: list[float]) -> dict[str, Any]:
    """Train one stage (`spec`: a `srl.training.chain.StageSpec` as a mapping) at its budget; returns (and keeps
    in `<folder>/stage.json`) what it consumed, its curves and its candidate checkpoints."""
    from srl.training.budget import Budget
    from srl.training.chain import StageSpec, run_spec
    from srl.training.checkpoints import last_complete_checkpoint

    spec = StageSpec(**spec)
    folder = spec.output_dir
    done = os.path.join(folder, "stage.json")
    if os.path.exists(done):
        return read_json(done)
    budget_path = os.path.join(folder, "budget.json")
    resume = budget["unit"] in ("steps", "rollouts") and os.path.exists(budget_path) \
        and last_complete_checkpoint(folder) is not None
    if os.path.exists(folder) and not resume:
        shutil.rmtree(folder)  # a stage cut in the middle that cannot resume starts again
    spec.options.update(budget_options(budget))
    unit = budget["unit"]
    callback = Budget(unit, budget["amount"], candidates=candidates, path=budget_path)
    length = "its own length" if unit == "epochs" and not budget["amount"] else f"{budget['amount']:g} {unit}"
    log(f"{'resume' if resume else 'train'} {spec.stage} → {folder} (budget: {length})")
    started = time.time()
    final = run_spec(spec, resume=resume, callbacks=[callback], progress=True)
    marks = read_json(budget_path)
    candidates_at = {}
    for fraction, step in marks["marks"].items():
        path = os.path.join(folder, f"checkpoint-{step}")
        candidates_at[fraction] = path if os.path.isdir(path) else final
    result = {"stage": spec.stage, "folder": folder, "options": spec.options, "budget": budget,
              "final": final, "candidates": candidates_at, "marks": marks["marks"], "at_mark": marks["at_mark"],
              "wall_seconds": round(time.time() - started, 1), **run_totals(folder, spec.stage)}
    write_json(done, result)
    return result


def run_totals(folder: str, stage: str) -> dict[str, Any]:
    """Optimizer steps, generated tokens, zero-spread and format-error rates, and per-step curves of a stage,
    from its metrics.jsonl."""
    from srl.training.reporting import read_metrics

    rows = [r for r in read_metrics(os.path.join(folder, "metrics.jsonl")) if "loss" in r and "step" in r]

    def mean(key):
        values = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
        return sum(values) / len(values) if values else None

    return {"steps": len(rows), "generated_tokens": int(sum(r.get("generated_tokens", 0) for r in rows)),
            "zero_spread_fraction": mean("dynamic_sampling/filtered_fraction"),
            "format_error_rate": mean("format_error_rate") if stage == "srl" else None,
            "curves": {key: [[r["step"], round(r[key], 5)] for r in rows if isinstance(r.get(key), (int, float))]
                       for key in CURVES}}


# --- evaluation -----------------------------------------------------------------------------------------------
def evaluate_model(folder: str, options: dict[str, Any]) -> dict[str, Any]:
    """`srl eval` with `options` into `folder`; returns (and keeps in `<folder>/result.json`) its metrics and
    one value per problem (greedy: right or not; sampled: the fraction of right samples) for paired tests."""
    from srl.evaluation import EvalConfig, evaluate

    done = os.path.join(folder, "result.json")
    if os.path.exists(done):
        return read_json(done)
    cfg = EvalConfig(output_dir=folder, **options)
    log(f"evaluate {cfg.model} on {cfg.data} → {folder}")
    summary = evaluate(cfg, progress=True, print_table=False).summary
    items = {}
    for r in read_records(summary["files"]["problems"]):
        rec = r.data
        items[str(rec["id"])] = int(rec["greedy"]["correct"]) if cfg.greedy else rec["num_correct"] / cfg.k
    metric = "greedy_accuracy" if cfg.greedy else f"avg@{cfg.k}"
    result = {"metric": metric, "value": summary["metrics"][metric], "metrics": summary["metrics"],
              "n": summary["problems"], "paired": "exact" if cfg.greedy else "mean", "items": items,
              "answer_rate": summary.get("answer_rate"), "truncated_rate": summary.get("truncated_rate"),
              "seconds": summary["seconds"]["total"]}
    write_json(done, result)
    return result


def step_eval(model: str, path: str, result_path: str, options: dict[str, Any], max_new_tokens: int,
              eval_options: dict[str, Any]) -> dict[str, Any]:
    """The SRL objective of `model` on the held-out step instances (greedy), scored in the SRL stage's output format
    (`options`: its reward options, `srl.rewards.stage.reward_options`)."""
    if os.path.exists(result_path):
        return read_json(result_path)
    from srl.evaluation.step_objective import step_objective
    from srl.rewards.format import parse_response
    from srl.rewards.stage import output_format

    rows = [r.data for r in read_records(path)]
    log(f"SRL objective of {model} on {len(rows)} held-out step instances")
    started = time.time()
    fmt = output_format(options)
    result = step_objective(model, rows, output_format=fmt, max_new_tokens=max_new_tokens,
                            batch_size=eval_options.get("batch_size", 32),
                            threads=eval_options.get("torch_threads", eval_options.get("threads", 0)),
                            backend=eval_options.get("backend", "hf"))
    responses = result.pop("responses")
    monologues = [(parse_response(t, fmt).think or "").strip() for t in responses]
    result["think_used"] = sum(map(bool, monologues)) / len(responses) if responses else 0.0
    result["think_chars"] = sum(map(len, monologues)) / len(responses) if responses else 0.0
    result["examples"] = responses[:20]  # to read what the model writes
    result["rewards"] = [round(x, 4) for x in result["rewards"]]
    result["seconds"] = round(time.time() - started, 1)
    write_json(result_path, result)
    return result


def evaluate_many(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Several evaluations in one process (each `{"kind": "evaluate" | "step_eval", **its arguments}`), so a
    run's benchmarks load the model once per process, not once per benchmark."""
    kinds = {"evaluate": evaluate_model, "step_eval": step_eval}
    return [kinds[job["kind"]](**{k: v for k, v in job.items() if k != "kind"}) for job in jobs]


# --- one run --------------------------------------------------------------------------------------------------
def record_path(cfg: CompareConfig, method: str, seed: int) -> str:
    return os.path.join(cfg.record, "runs", "base.json" if method == "base" else f"{method}-s{seed}.json")


def check_recorded(path: str, settings: dict[str, Any]) -> bool:
    """True when `path` holds a finished run measured with `settings`; a run measured otherwise is refused."""
    if not os.path.exists(path):
        return False
    before = read_json(path).get("settings", {})
    changed = sorted(k for k in set(before) | set(settings) if before.get(k) != settings.get(k))
    if changed:
        raise InputError(f"was measured with other settings ({', '.join(changed)}): every run of a comparison must "
                         "be measured the same way; use another --record, or remove this run to redo it",
                         path=path, field="record")
    return True


def run_method(cfg: CompareConfig, method: str, seed: int, paths: dict, settings: dict[str, Any]) -> dict[str, Any]:
    """Train `method` (seed `seed`) stage by stage, choose its checkpoint, evaluate it; the run's record."""
    from srl.training.chain import chain_specs, check_chain

    started = time.time()
    name = "base" if method == "base" else f"{method}-s{seed}"
    folder = os.path.join(cfg.output_dir, "runs", name)
    plan = cfg.plan(method)
    shared = {"train_data": paths["train"], "data_format": cfg.data_format, "seed": seed}
    specs = chain_specs([{"stage": p["stage"], **p["options"]} for p in plan], model=cfg.model, output_dir=folder,
                        shared=shared, source=f"method {method}")
    check_chain(specs)
    stages = []
    for i, (spec, p) in enumerate(zip(specs, plan)):
        last = i == len(specs) - 1
        stages.append(call(cfg.isolate, f"{__name__}:train_stage", spec=vars(spec), budget=p["budget"],
                           candidates=sorted(cfg.candidates) if last else [1.0]))
    candidates = stages[-1]["candidates"] if stages else {"1": cfg.model}
    validation = {}
    if paths["validation"] and (len(set(candidates.values())) > 1 or method == "base"):
        jobs = [{"kind": "evaluate", "folder": os.path.join(folder, "eval", f"validation-{fraction}"),
                 "options": {**cfg.eval_options, "model": model, "data": paths["validation"],
                             "limit": cfg.validation_limit, "greedy": True, "k": 0}}
                for fraction, model in candidates.items()]
        scores = call(cfg.isolate, f"{__name__}:evaluate_many", jobs=jobs)
        validation = {fraction: r["value"] for fraction, r in zip(candidates, scores)}
    chosen = max(candidates, key=lambda f: (validation.get(f, 0.0), float(f)))
    model = candidates[chosen]
    jobs = [{"kind": "evaluate", "folder": os.path.join(folder, "eval", e["name"]),
             "options": {**cfg.eval_options, **{k: v for k, v in e.items() if k != "name"}, "model": model}}
            for e in cfg.evaluations]
    if paths["steps"]:
        jobs.append({"kind": "step_eval", "model": model, "path": paths["steps"],
                     "result_path": os.path.join(folder, "eval", "steps.json"), "options": paths["step_options"],
                     "max_new_tokens": (cfg.step_eval or {}).get("max_new_tokens", 64),
                     "eval_options": cfg.eval_options})
    results = call(cfg.isolate, f"{__name__}:evaluate_many", jobs=jobs) if jobs else []
    evals = {e["name"]: r for e, r in zip(cfg.evaluations, results)}
    steps = results[-1] if paths["steps"] else None
    for s in stages:  # the record is small: what a report needs, not the checkpoints
        s.pop("options", None)
    return {"method": method, "seed": None if method == "base" else seed, "label": cfg.label(method),
            "settings": settings, "stages": stages, "candidates": candidates, "validation": validation,
            "chosen": chosen, "model": model, "evaluations": evals, "step_objective": steps,
            "rollouts": sum(s["at_mark"].get("1", {}).get("rollouts", 0) for s in stages),
            "generated_tokens": sum(s["generated_tokens"] for s in stages),
            "train_seconds": sum(s["at_mark"].get("1", {}).get("seconds", 0) for s in stages),
            "seconds": round(time.time() - started, 1), "finished": time.strftime("%Y-%m-%d %H:%M:%S")}


def run_all(cfg: CompareConfig) -> list[dict[str, Any]]:
    """Every (method, seed) of the comparison, reusing the record's finished runs; returns the records."""
    paths = prepare_data(cfg)
    todo = [(m, s) for s in cfg.seeds for m in cfg.methods if not (m == "base" and s != cfg.seeds[0])]
    records = []
    for i, (method, seed) in enumerate(todo, 1):
        settings = cfg.run_settings(method, paths["digest"])
        path = record_path(cfg, method, seed)
        if check_recorded(path, settings):
            log(f"({i}/{len(todo)}) {method} seed {seed}: finished in the record, reused")
        else:
            log(f"({i}/{len(todo)}) {cfg.label(method)}, seed {seed}")
            write_json(path, run_method(cfg, method, seed, paths, settings))
        records.append(read_json(path))
    return records
