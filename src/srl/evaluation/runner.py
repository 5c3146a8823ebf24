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
import json
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from srl.generation.vllm import VLLMGenerator, resolve_backend
from srl.errors import InputError
from srl.evaluation.benchmarks import Problem, benchmark_name, load_problems, resolve_data, select_subset
from srl.evaluation.config import NO_SYSTEM_PROMPT, PAPER_SYSTEM_PROMPT, EvalConfig
from srl.evaluation.metrics import (avg_at_k, greedy_accuracy, mean_pass_at_k, pass_k_values, score_response,
                                    use_number_fallback)

PROBLEMS_FILE = "problems.jsonl"
VLLM_MIN_BATCH = 256  # with vLLM, sequences handed over at once (it batches them itself, continuously)
SUMMARY_FILE = "summary.json"


@dataclass
class Generation:
    """One generated response: its text, its length in tokens (up to and including the end token) and
    whether it was cut at max_new_tokens."""

    text: str
    tokens: int
    truncated: bool


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
def end_token_ids(tokenizer, model=None) -> list[int]:
    """The ids that end a response: the tokenizer's eos first, then any other eos of the model's generation
    config (e.g. a base model's `<|endoftext|>` next to the chat `<|im_end|>`)."""
    ids: list[int] = []
    if tokenizer.eos_token_id is not None:
        ids.append(int(tokenizer.eos_token_id))
    extra = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for i in (extra if isinstance(extra, (list, tuple)) else [extra]):
        if i is not None and int(i) not in ids:
            ids.append(int(i))
    if not ids:
        raise InputError("the tokenizer has no end-of-sequence token", field="model")
    return ids


def generate_batch(model, tokenizer, batch: Sequence[list[int]], *, max_new_tokens: int, do_sample: bool,
                   temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0) -> list[Generation]:
    """Generate one response per prompt (token ids), left-padded into one batch."""
    import torch
    from transformers import GenerationConfig

    eos = end_token_ids(tokenizer, model)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
    width = max(len(ids) for ids in batch)
    input_ids = torch.tensor([[pad] * (width - len(ids)) + list(ids) for ids in batch], dtype=torch.long)
    attention = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in batch], dtype=torch.long)
    options: dict[str, Any] = dict(max_new_tokens=max_new_tokens, do_sample=do_sample, pad_token_id=pad,
                                   eos_token_id=eos, use_cache=True)
    if do_sample:
        options.update(temperature=temperature, top_p=top_p, top_k=top_k)
    config = GenerationConfig(**options)
    device = next(model.parameters()).device
    with torch.inference_mode():
        out = model.generate(input_ids=input_ids.to(device), attention_mask=attention.to(device),
                             generation_config=config)
    new = out[:, width:].tolist()
    results = []
    eos_set = set(eos)
    for row in new:
        end = next((i for i, t in enumerate(row) if t in eos_set), None)
        kept = row if end is None else row[:end]
        results.append(Generation(tokenizer.decode(kept, skip_special_tokens=True),
                                  len(row) if end is None else end + 1, end is None))
    return results


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
    text = os.path.basename(os.path.normpath(text)) or text
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "model"


def default_output_dir(cfg: EvalConfig, benchmark: str) -> str:
    return os.path.join("runs", "eval", f"{_slug(benchmark)}-{_slug(cfg.model)}")


def use_bf16(dtype: str) -> bool:
    """`--dtype auto`: bf16 only where the hardware runs it natively."""
    if dtype == "auto":
        from srl.models import bf16_supported

        return bf16_supported()
    return dtype == "bfloat16"


def load_eval_problems(cfg: EvalConfig) -> tuple[list[Problem], int, str, str]:
    """(the evaluated problems, problems in the file, benchmark name, file path)."""
    path, spec = resolve_data(cfg.data)
    problems = load_problems(path, problem_field=cfg.problem_field, answer_field=cfg.answer_field,
                             solution_field=cfg.solution_field, id_field=cfg.id_field, spec=spec)
    return select_subset(problems, cfg.limit, cfg.seed), len(problems), benchmark_name(cfg.data, path, spec), path


def evaluate(cfg: EvalConfig, *, model=None, tokenizer=None, progress: bool = True, write: bool = True,
             print_table: bool = True,
             generate_fn: Callable[..., list[Generation]] | None = None) -> EvalResult:
    """Run the evaluation `cfg` describes. `model`/`tokenizer`: use these instead of loading `cfg.model`.
    `write`: write problems.jsonl and summary.json into the output folder. `generate_fn`: replaces
    `generate_batch` (same signature), e.g. to score given responses."""
    started = time.time()
    problems, in_file, benchmark, data_path = load_eval_problems(cfg)
    output_dir = cfg.output_dir or default_output_dir(cfg, benchmark)
    if write and os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise InputError("exists and is not a folder", path=output_dir, field="output_dir")

    model_path, checkpoint = cfg.model, None  # checkpoint: the folder the model was loaded from, if any
    if model is None or tokenizer is None:
        from srl.models import check_model_name, load_model_and_tokenizer, resolve_model

        check_model_name(cfg.model)
        model_path = resolve_model(cfg.model)
        checkpoint = model_path if os.path.isdir(model_path) else None
        model, tokenizer = load_model_and_tokenizer(cfg.model, bf16=use_bf16(cfg.dtype), seed=cfg.seed)
    import torch

    generate = generate_fn or generate_batch
    batch_size = cfg.batch_size
    if generate_fn is None and resolve_backend(cfg.backend) == "vllm":
        generate = VLLMGenerator(model, tokenizer, model_path=checkpoint,
                                 dtype="bfloat16" if use_bf16(cfg.dtype) else "float32", seed=cfg.seed,
                                 end_ids=end_token_ids(tokenizer, model))
        batch_size = max(batch_size, VLLM_MIN_BATCH)
    elif cfg.threads:
        torch.set_num_threads(cfg.threads)
    model.eval()
    loaded = time.time()

    system = system_prompt_text(cfg.system_prompt)
    ids = [prompt_ids(tokenizer, build_messages(p.problem, system, cfg.user_template)) for p in problems]
    fallback = [use_number_fallback(cfg.number_fallback, p.gold_kind) for p in problems]
    passes = []  # (name, jobs, sampling?)
    if cfg.greedy:
        passes.append(("greedy", [_Job(i, -1, x) for i, x in enumerate(ids)], False))
    if cfg.k:
        passes.append((f"sampling k={cfg.k}", [_Job(i, s, x) for i, x in enumerate(ids) for s in range(cfg.k)], True))

    greedy: list[dict | None] = [None] * len(problems)
    samples: list[list[dict | None]] = [[None] * cfg.k for _ in problems]
    gen_seconds = score_seconds = 0.0
    tokens = 0
    total = sum(len(jobs) for _, jobs, _ in passes)
    from srl.cli.utils import progress_bar

    with (progress_bar(f"{benchmark}: generating", total) if progress else _no_progress()) as advance:
        for name, jobs, sampling in passes:
            if sampling:
                torch.manual_seed(cfg.seed)
            for batch in _batches(jobs, batch_size):
                t0 = time.time()
                outs = generate(model, tokenizer, [j.ids for j in batch], max_new_tokens=cfg.max_new_tokens,
                                do_sample=sampling, temperature=cfg.temperature, top_p=cfg.top_p, top_k=cfg.top_k)
                t1 = time.time()
                for job, gen in zip(batch, outs):
                    p = problems[job.problem]
                    scored = score_response(gen.text, p.gold, answer_mode=cfg.answer_mode,
                                            number_fallback=fallback[job.problem], timeout=cfg.timeout)
                    row = {"answer": scored.answer, "correct": scored.correct, "response": gen.text,
                           "tokens": gen.tokens, "truncated": gen.truncated}
                    if job.sample < 0:
                        greedy[job.problem] = row
                    else:
                        samples[job.problem][job.sample] = row
                    tokens += gen.tokens
                score_seconds += time.time() - t1
                gen_seconds += t1 - t0
                advance(len(batch))

    records = []
    for i, p in enumerate(problems):
        rec = {"id": p.id, "line": p.line, "problem": p.problem, "gold": p.gold, "gold_kind": p.gold_kind}
        if cfg.greedy:
            rec["greedy"] = greedy[i]
        if cfg.k:
            rec["samples"] = samples[i]
            rec["num_correct"] = sum(s["correct"] for s in samples[i])
        records.append(rec)

    finished = time.time()
    summary = summarize(records, cfg, benchmark=benchmark, data_path=data_path, problems_in_file=in_file,
                        model_path=model_path)
    summary["generated_tokens"] = tokens
    summary["seconds"] = {"load": round(loaded - started, 2), "generate": round(gen_seconds, 2),
                          "score": round(score_seconds, 2), "total": round(finished - started, 2)}
    summary["tokens_per_second"] = round(tokens / gen_seconds, 1) if gen_seconds > 0 else None
    result = EvalResult(summary, records, output_dir if write else None)
    if write:
        os.makedirs(output_dir, exist_ok=True)
        problems_path = os.path.join(output_dir, PROBLEMS_FILE)
        summary_path = os.path.join(output_dir, SUMMARY_FILE)
        summary["files"] = {"problems": problems_path, "summary": summary_path}
        write_jsonl_atomic(problems_path, records)
        write_json_atomic(summary_path, summary)
        result.files = [problems_path, summary_path]
    if print_table:
        print_summary(summary)
    return result


class _no_progress:
    def __enter__(self):
        return lambda n=1: None

    def __exit__(self, *exc):
        return False


def summarize(records: list[dict], cfg: EvalConfig, **info: Any) -> dict[str, Any]:
    """The metrics of scored records (as written to problems.jsonl), with the run's settings."""
    summary: dict[str, Any] = {"benchmark": info.get("benchmark"), "model": cfg.model,
                               "model_path": info.get("model_path"), "data": info.get("data_path"),
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
    summary["answer_rate"] = sum(r["answer"] is not None for r in responses) / n if n else 0.0
    summary["truncated_rate"] = sum(r["truncated"] for r in responses) / n if n else 0.0
    summary["mean_response_tokens"] = sum(r["tokens"] for r in responses) / n if n else 0.0
    summary["config"] = dataclasses.asdict(cfg)
    return summary


# --- output -------------------------------------------------------------------------------------------------
def _atomic_write(path: str, write: Callable[[Any], None]) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_json_atomic(path: str, data: Any) -> None:
    _atomic_write(path, lambda f: json.dump(data, f, indent=1, ensure_ascii=False, default=str))


def write_jsonl_atomic(path: str, rows: Sequence[dict]) -> None:
    def write(f):
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")

    _atomic_write(path, write)


def print_summary(summary: dict[str, Any]) -> None:
    """The summary as a rich table on stdout."""
    from rich.table import Table

    from srl.cli.utils import console

    title = (f"{summary['benchmark']}: {summary['model']} — {summary['problems']} of "
             f"{summary['problems_in_file']} problems")
    table = Table(title=title, title_justify="left", show_header=False)
    for name, value in summary["metrics"].items():
        label = name + (f" (T={summary['temperature']})" if name.startswith(("avg@", "pass@")) else "")
        table.add_row(label, f"[bold]{100 * value:.1f}%[/]")
    table.add_row("answer found", f"{100 * summary['answer_rate']:.1f}%")
    table.add_row(f"cut at {summary['max_new_tokens']} tokens", f"{100 * summary['truncated_rate']:.1f}%")
    table.add_row("mean response tokens", f"{summary['mean_response_tokens']:.0f}")
    seconds = summary.get("seconds")
    if seconds:
        rate = summary.get("tokens_per_second")
        table.add_row("time", f"{seconds['total']:.0f} s (load {seconds['load']:.0f} s, generate "
                              f"{seconds['generate']:.0f} s{f' at {rate:.0f} tokens/s' if rate else ''}, "
                              f"score {seconds['score']:.1f} s)")
    files = summary.get("files")
    if files:
        table.add_row("written", f"{files['problems']}\n{files['summary']}")
    console().print(table)
