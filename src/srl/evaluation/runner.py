"""The evaluation run: prompts -> batched generation -> scoring -> metrics -> files and a table.

`evaluate(cfg)` is `srl eval`; it can also be given a model and tokenizer already in memory (a training script
evaluating its checkpoints). Generation is batched with left padding (prompts sorted by length, so a batch holds
prompts of similar length), stops at the tokenizer's end-of-sequence token, and runs under
`torch.inference_mode`. Each response is scored as soon as its batch is done (in the main thread, so the
per-answer time limit of `answers_match` can use its signal timer).

Outputs, both written atomically (a temporary file renamed) into `output_dir`:

- `problems.jsonl`: one line per problem: id, line, problem, gold, `greedy` {answer, correct, response,
  tokens, truncated}, `samples` [the same for each of the k samples], `num_correct`;
- `summary.json`: the metrics (greedy_accuracy, avg@k, pass@j), answer and truncation rates, tokens, times,
  and the configuration.
"""

from __future__ import annotations

import dataclasses
import os
from contextlib import nullcontext
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from srl.console import console, progress_bar
from srl.errors import InputError
from srl.data.benchmarks import Problem, benchmark_name, load_problems, resolve_data, select_subset
from srl.evaluation.config import NO_SYSTEM_PROMPT, PAPER_SYSTEM_PROMPT, EvalConfig
from srl.evaluation.stepwise import stepwise_generate_and_score, stepwise_summary
from srl.evaluation.metrics import (avg_at_k, greedy_accuracy, mean_pass_at_k, pass_k_values, score_response,
                                    use_number_fallback)
from srl.generation import Generation
from srl.generation.hf import end_token_ids, generate_batch
from srl.generation.vllm import VLLMGenerator, resolve_backend
from srl.io import atomic_path, check_writable_folder, write_json, write_jsonl

PROBLEMS_FILE = "problems.jsonl"
VLLM_MIN_BATCH = 256  # with vLLM, sequences handed over at once (it batches them itself, continuously)
SUMMARY_FILE = "summary.json"


@dataclass
class EvalResult:
    summary: dict[str, Any]
    records: list[dict[str, Any]]
    output_dir: str | None = None
    files: list[str] = field(default_factory=list)


# --- prompts ------------------------------------------------------------------------------------------------
def system_prompt_text(value: str) -> str | None:
    """The system message for `--system_prompt`: `paper` -> the paper's evaluation prompt, `none` -> None."""
    from srl.data.prompts import EVAL_SYSTEM_PROMPT

    if value == PAPER_SYSTEM_PROMPT:
        return EVAL_SYSTEM_PROMPT
    if value == NO_SYSTEM_PROMPT or not value.strip():
        return None
    return value


def build_messages(problem: str, system_prompt: str | None, user_template: str = "{problem}") -> list[dict]:
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return messages + [{"role": "user", "content": user_template.format(problem=problem)}]


def prompt_ids(tokenizer, messages: list[dict]) -> list[int]:
    """Token ids of the chat prompt with the assistant turn opened."""
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


# --- generation ---------------------------------------------------------------------------------------------
@dataclass
class _Job:
    problem: int  # index into the evaluated problems
    sample: int  # -1: the greedy answer, else the sample number
    ids: list[int]


def _batches(jobs: list[_Job], batch_size: int) -> list[list[_Job]]:
    """Jobs sorted by prompt length (longest first: a memory problem shows at once), cut into batches."""
    ordered = sorted(jobs, key=lambda j: (-len(j.ids), j.problem, j.sample))
    return [ordered[i:i + batch_size] for i in range(0, len(ordered), batch_size)]


# --- the run ------------------------------------------------------------------------------------------------
def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_.") or "model"


def model_identity(model: str) -> str:
    """What names a model uniquely: a local folder's absolute path, else the name (a known model, a hub id)."""
    path = os.path.expanduser(model)
    return os.path.abspath(path) if os.path.exists(path) else model


def default_output_dir(cfg: EvalConfig, benchmark: str) -> str:
    """`runs/eval/<benchmark>-<model>` (`<benchmark>-stepwise-<model>` with --stepwise), where <model> is the whole path of a local model (relative to the working
    folder when inside it, without a leading `runs/`), so that two checkpoints both called `final` get two
    folders: `--model runs/a/srl/final` -> `runs/eval/gsm8k-a_srl_final`."""
    model = model_identity(cfg.model)
    if os.path.isabs(model):
        rel = os.path.relpath(model)
        model = rel if not rel.startswith("..") else model
        parts = [p for p in model.split(os.sep) if p]
        model = "_".join(parts[1:] if len(parts) > 1 and parts[0] == "runs" else parts)
    mode = "-stepwise" if getattr(cfg, "stepwise", False) else ""  # a step-wise evaluation keeps its own folder
    return os.path.join("runs", "eval", f"{_slug(benchmark)}{mode}-{_slug(model)}")


def check_output_owner(output_dir: str, cfg: EvalConfig) -> None:
    """Refuse to overwrite the results of another model in `output_dir` unless `--overwrite`."""
    from srl.io import read_mapping

    path = os.path.join(output_dir, SUMMARY_FILE)
    if cfg.overwrite or not os.path.isfile(path):
        return
    try:
        previous = read_mapping(path)
        owner = previous.get("model_id") or model_identity(str(previous.get("model")))
    except InputError:  # not a summary of ours: not ours to overwrite
        owner = "unknown: summary.json does not say"
    if owner != model_identity(cfg.model):
        raise InputError(f"holds the results of another model ({owner}); choose another --output_dir or pass "
                         "--overwrite", path=output_dir, field="output_dir")


def use_bf16(dtype: str) -> bool:
    """`--dtype`: `auto` = bf16 only where the hardware runs it natively (`srl.precision.choose`)."""
    from srl.precision import choose

    return choose(dtype).bf16


def load_eval_problems(cfg: EvalConfig) -> tuple[list[Problem], int, str, str]:
    """(the evaluated problems, problems in the file, benchmark name, file path)."""
    path, spec = resolve_data(cfg.data)
    problems = load_problems(path, problem_field=cfg.problem_field, answer_field=cfg.answer_field,
                             solution_field=cfg.solution_field, id_field=cfg.id_field, spec=spec)
    return select_subset(problems, cfg.limit, cfg.seed), len(problems), benchmark_name(cfg.data, path, spec), path


def _load_model(cfg: EvalConfig, model, tokenizer, progress: bool = True):
    """(model, tokenizer, model path, checkpoint folder or None): the given ones, else `cfg.model` loaded."""
    if model is not None and tokenizer is not None:
        return model, tokenizer, cfg.model, None
    from srl.models import check_model_name, load_model_and_tokenizer, resolve_model

    check_model_name(cfg.model)
    model_path = resolve_model(cfg.model)
    # the folder the model is loaded from (an engine starts from it); a LoRA adapter's is not a whole model
    checkpoint = model_path if os.path.exists(os.path.join(model_path, "config.json")) else None
    from srl.precision import choose

    precision = choose(cfg.dtype)
    if progress:
        console(stderr=True).print(precision.line())
    model, tokenizer = load_model_and_tokenizer(cfg.model, bf16=precision.bf16, seed=cfg.seed)
    return model, tokenizer, model_path, checkpoint


def _generator(cfg: EvalConfig, model, tokenizer, checkpoint: str | None,
               generate_fn: Callable[..., list[Generation]] | None) -> tuple[Callable[..., list[Generation]], int]:
    """The generate function (`generate_fn`, vLLM or transformers, by `cfg.backend`) and its batch size."""
    if generate_fn is None and resolve_backend(cfg.backend) == "vllm":
        generate = VLLMGenerator(model, tokenizer, model_path=checkpoint,
                                 dtype="bfloat16" if use_bf16(cfg.dtype) else "float32", seed=cfg.seed,
                                 end_ids=end_token_ids(tokenizer, model))
        return generate, max(cfg.batch_size, VLLM_MIN_BATCH)
    if cfg.torch_threads:
        import torch

        torch.set_num_threads(cfg.torch_threads)
    return generate_fn or generate_batch, cfg.batch_size


def _passes(cfg: EvalConfig, ids: list[list[int]]) -> list[tuple[str, list[_Job], bool]]:
    """(name, jobs, sampling?) of each pass: the greedy answers, then k samples per problem."""
    passes = []
    if cfg.greedy:
        passes.append(("greedy", [_Job(i, -1, x) for i, x in enumerate(ids)], False))
    if cfg.k:
        passes.append((f"sampling k={cfg.k}", [_Job(i, s, x) for i, x in enumerate(ids) for s in range(cfg.k)], True))
    return passes


def _generate_and_score(cfg: EvalConfig, problems: list[Problem], ids: list[list[int]], generate, model, tokenizer,
                        batch_size: int, advance: Callable[[int], None]) -> tuple[list, list, dict[str, float]]:
    """Generate every pass in batches and score each response as soon as its batch is done. Returns the greedy
    rows, the sample rows per problem, and the generated tokens and seconds spent generating and scoring."""
    import torch

    fallback = [use_number_fallback(cfg.number_fallback, p.gold_kind) for p in problems]
    greedy: list[dict | None] = [None] * len(problems)
    samples: list[list[dict | None]] = [[None] * cfg.k for _ in problems]
    stats = {"tokens": 0, "generate": 0.0, "score": 0.0}
    for _, jobs, sampling in _passes(cfg, ids):
        if sampling:
            torch.manual_seed(cfg.seed)
        for batch in _batches(jobs, batch_size):
            t0 = time.time()
            outs = generate(model, tokenizer, [j.ids for j in batch], max_new_tokens=cfg.max_new_tokens,
                            do_sample=sampling, temperature=cfg.temperature, top_p=cfg.top_p, top_k=cfg.top_k)
            t1 = time.time()
            for job, gen in zip(batch, outs):
                scored = score_response(gen.text, problems[job.problem].gold, answer_mode=cfg.answer_mode,
                                        number_fallback=fallback[job.problem], timeout=cfg.timeout)
                row = {"answer": scored.answer, "answer_found_by": scored.found_by, "correct": scored.correct,
                       "response": gen.text, "tokens": gen.tokens, "truncated": gen.truncated}
                if job.sample < 0:
                    greedy[job.problem] = row
                else:
                    samples[job.problem][job.sample] = row
                stats["tokens"] += gen.tokens
            stats["score"] += time.time() - t1
            stats["generate"] += t1 - t0
            advance(len(batch))
    return greedy, samples, stats


def _records(cfg: EvalConfig, problems: list[Problem], greedy: list, samples: list) -> list[dict[str, Any]]:
    """One record per problem, as written to problems.jsonl."""
    records = []
    for i, p in enumerate(problems):
        rec = {"id": p.id, "line": p.line, "problem": p.problem, "gold": p.gold, "gold_kind": p.gold_kind}
        if cfg.greedy:
            rec["greedy"] = greedy[i]
        if cfg.k:
            rec["samples"] = samples[i]
            rec["num_correct"] = sum(s["correct"] for s in samples[i])
        records.append(rec)
    return records


def evaluate(cfg: EvalConfig, *, model=None, tokenizer=None, progress: bool = True, write: bool = True,
             print_table: bool = True,
             generate_fn: Callable[..., list[Generation]] | None = None) -> EvalResult:
    """Run the evaluation `cfg` describes. `model`/`tokenizer`: use these instead of loading `cfg.model`.
    `write`: write problems.jsonl and summary.json into the output folder. `generate_fn`: replaces
    `generate_batch` (same signature), e.g. to score given responses."""
    started = time.time()
    problems, in_file, benchmark, data_path = load_eval_problems(cfg)
    output_dir = cfg.output_dir or default_output_dir(cfg, benchmark)
    if write:  # before the model loads and the evaluation runs: an unwritable folder fails now, in one line
        check_writable_folder(output_dir, "output_dir")
        check_output_owner(output_dir, cfg)
    model, tokenizer, model_path, checkpoint = _load_model(cfg, model, tokenizer, progress)
    generate, batch_size = _generator(cfg, model, tokenizer, checkpoint, generate_fn)
    model.eval()
    loaded = time.time()

    system = system_prompt_text(cfg.system_prompt)
    ids = [prompt_ids(tokenizer, build_messages(p.problem, system, cfg.user_template)) for p in problems]
    total = len(problems) * (int(cfg.greedy) + cfg.k)
    with (progress_bar(f"{benchmark}: generating", total) if progress else nullcontext(lambda n=1: None)) as advance:
        if cfg.stepwise:  # one step at a time under the SRL prompt (srl.evaluation.stepwise)
            greedy, samples, stats = stepwise_generate_and_score(cfg, problems, generate, model, tokenizer,
                                                                 batch_size, advance, prompt_ids)
        else:
            greedy, samples, stats = _generate_and_score(cfg, problems, ids, generate, model, tokenizer,
                                                         batch_size, advance)
    records = _records(cfg, problems, greedy, samples)

    finished = time.time()
    summary = summarize(records, cfg, benchmark=benchmark, data_path=data_path, problems_in_file=in_file,
                        model_path=model_path)
    summary["generated_tokens"] = stats["tokens"]
    if cfg.stepwise:
        summary["stepwise"] = stepwise_summary(records, cfg)
    summary["seconds"] = {"load": round(loaded - started, 2), "generate": round(stats["generate"], 2),
                          "score": round(stats["score"], 2), "total": round(finished - started, 2)}
    summary["tokens_per_second"] = (round(stats["tokens"] / stats["generate"], 1) if stats["generate"] > 0
                                    else None)
    result = EvalResult(summary, records, output_dir if write else None)
    if write:
        result.files = write_outputs(output_dir, summary, records)
    if print_table:
        print_summary(summary)
    return result


def write_outputs(output_dir: str, summary: dict[str, Any], records: list[dict[str, Any]]) -> list[str]:
    """problems.jsonl and summary.json (which lists both files), each written atomically, and both or neither:
    problems.jsonl is renamed into place only once summary.json is written (a full disk leaves neither)."""
    problems_path = os.path.join(output_dir, PROBLEMS_FILE)
    summary_path = os.path.join(output_dir, SUMMARY_FILE)
    summary["files"] = {"problems": problems_path, "summary": summary_path}
    with atomic_path(problems_path) as problems_tmp:
        write_jsonl(problems_tmp, records)
        write_json(summary_path, summary)
    return [problems_path, summary_path]


def summarize(records: list[dict], cfg: EvalConfig, **info: Any) -> dict[str, Any]:
    """The metrics of scored records (as written to problems.jsonl), with the run's settings."""
    summary: dict[str, Any] = {"benchmark": info.get("benchmark"), "model": cfg.model,
                               "model_id": model_identity(cfg.model), "model_path": info.get("model_path"),
                               "data": info.get("data_path"),
                               "problems": len(records), "problems_in_file": info.get("problems_in_file"),
                               "limit": cfg.limit, "seed": cfg.seed, "metrics": {}}
    metrics = summary["metrics"]
    responses = []
    if cfg.greedy:
        rows = [r["greedy"] for r in records]
        metrics["greedy_accuracy"] = greedy_accuracy([g["correct"] for g in rows])
        responses += rows
    if cfg.k:
        flags = [[s["correct"] for s in r["samples"]] for r in records]
        metrics[f"avg@{cfg.k}"] = avg_at_k(flags)
        counts = [(len(f), sum(f)) for f in flags]
        for j in pass_k_values(cfg.k):
            metrics[f"pass@{j}"] = mean_pass_at_k(counts, j)
        summary["temperature"] = cfg.temperature
        responses += [s for r in records for s in r["samples"]]
    summary["k"] = cfg.k
    summary["max_new_tokens"] = cfg.max_new_tokens
    n = len(responses)
    rate = lambda flags: sum(flags) / n if n else 0.0  # noqa: E731  (a fraction of all responses)
    summary["answer_rate"] = rate(r["answer"] is not None for r in responses)
    # the answers the prompt's format did not give: the last number of the response (GSM8K's fallback), and the
    # answers of responses cut at the token limit (usually whatever number came last before the cut)
    summary["fallback_answer_rate"] = rate(r.get("answer_found_by") == "last_number" for r in responses)
    summary["truncated_rate"] = rate(r["truncated"] for r in responses)
    summary["truncated_answer_rate"] = rate(r["truncated"] and r["answer"] is not None for r in responses)
    summary["formatted_answer_rate"] = rate(r["answer"] is not None and not r["truncated"]
                                            and r.get("answer_found_by") != "last_number" for r in responses)
    summary["mean_response_tokens"] = sum(r["tokens"] for r in responses) / n if n else 0.0
    summary["config"] = dataclasses.asdict(cfg)
    return summary


# --- output ---------------------------------------------------------------------------------------------------
def print_summary(summary: dict[str, Any]) -> None:
    """The summary as a rich table on stdout."""
    from rich.table import Table


    title = (f"{summary['benchmark']}: {summary['model']} — {summary['problems']} of "
             f"{summary['problems_in_file']} problems")
    table = Table(title=title, title_justify="left", show_header=False)
    for name, value in summary["metrics"].items():
        label = name + (f" (T={summary['temperature']})" if name.startswith(("avg@", "pass@")) else "")
        table.add_row(label, f"[bold]{100 * value:.1f}%[/]")
    table.add_row("answer found", f"{100 * summary['answer_rate']:.1f}%")
    if "formatted_answer_rate" in summary:  # summaries written before issue 23 lack the split
        table.add_row("  \\boxed{} or ####, complete response", f"{100 * summary['formatted_answer_rate']:.1f}%")
        table.add_row("  last-number fallback", f"{100 * summary['fallback_answer_rate']:.1f}%")
        table.add_row("  from a cut response", f"{100 * summary['truncated_answer_rate']:.1f}%")
    table.add_row(f"cut at {summary['max_new_tokens']} tokens", f"{100 * summary['truncated_rate']:.1f}%")
    table.add_row("mean response tokens", f"{summary['mean_response_tokens']:.0f}")
    seconds = summary.get("seconds")
    if seconds:
        rate = summary.get("tokens_per_second")
        table.add_row("time", f"{seconds['total']:.0f} s (load {seconds['load']:.0f} s, generate "
                              f"{seconds['generate']:.0f} s{f' at {rate:.3g} tokens/s' if rate else ''}, "
                              f"score {seconds['score']:.1f} s)")
    files = summary.get("files")
    if files:
        table.add_row("written", f"{files['problems']}\n{files['summary']}")
    console().print(table)
    if summary["truncated_rate"] >= 0.5:
        console().print(f"[yellow]warning[/]: {100 * summary['truncated_rate']:.0f}% of the responses were cut at "
                        f"--max_new_tokens {summary['max_new_tokens']}; their answers are whatever came last before "
                        "the cut: raise --max_new_tokens")
