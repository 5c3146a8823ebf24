"""`srl data generate`: a teacher's solutions to problems, kept only when their final answer is verified.

    problems (file or benchmark name) --n samples each--> teacher endpoint --> journal (every answered call)
                                                                          --> kept solutions (verified only)

Each sample is one chat call (so any endpoint works, also those without the `n` parameter). Its final answer
is extracted and checked against the problem's reference answer with the project's path (`srl.rewards.answers`:
`extract_answer`, then `answers_match`, exact/numeric first and math-verify otherwise), or with a user-supplied
`--check module:function`. The teacher can be any model behind an OpenAI-compatible server, the student itself
included (rejection sampling from the model being trained: serve its checkpoint with vLLM and point --base_url
at it).

Files, for `--output kept.jsonl`:
    kept.jsonl          one row per verified sample: id, problem_id, sample, problem, solution, answer (the
                        reference), predicted, correct_samples / samples (of its problem), model
    kept.calls.jsonl    the journal (`--journal`): every answered call with its verdict; a rerun skips them
    kept.summary.json   the counts printed at the end, and per problem [correct, samples]
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from srl.data.answers import extract_answer
from srl.rewards.answers import answers_match
from srl.errors import InputError
from srl.io import write_json, write_jsonl
from srl.teacher.client import CallStats, EndpointConfig, Reply, Request, run_journaled
from srl.teacher.journal import MARK, Journal, check_output, request_key, settings_hash
from srl.teacher.prompt import TeacherPrompt


@dataclass
class GenerateConfig:
    """`srl data generate`: sample a teacher's solutions and keep the verified ones."""

    input: str = field(metadata={
        "help": "Problems with reference answers: a file (.jsonl, .json, .parquet, a datasets folder) or a "
                "benchmark name (gsm8k, math500, amc23, aime24, minerva_math, math; see `srl eval --help`), read "
                "from its --split."})
    output: str = field(metadata={
        "help": "Verified solutions (.jsonl), rewritten whole at the end of each run; beside it "
                "<name>.calls.jsonl (the journal) and <name>.summary.json."})
    n: int = field(default=4, metadata={"help": "Samples (calls) per problem."})
    temperature: float = field(default=0.7, metadata={"help": "Sampling temperature."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling top-p."})
    max_tokens: int = field(default=1024, metadata={"help": "Most tokens per solution."})
    template: str | None = field(default=None, metadata={
        "help": "Prompt file (YAML/JSON with keys system and user; user contains {problem}). Default: "
                "srl/teacher/prompts/generate.yaml (reason step by step, answer in \\boxed{})."})
    journal: str | None = field(default=None, metadata={
        "help": "The resumable record of answered calls (default: <output without .jsonl>.calls.jsonl)."})
    problem_field: str | None = field(default=None, metadata={"help": "Problem field (default: problem or "
                                                                      "question)."})
    answer_field: str | None = field(default=None, metadata={
        "help": "Reference answer field (default: answer; a GSM8K `#### n` solution is reduced to n)."})
    solution_field: str | None = field(default=None, metadata={
        "help": "Take the reference answer from the last \\boxed{} of this field instead."})
    id_field: str | None = field(default=None, metadata={"help": "Problem id field (default: id, unique_id or "
                                                                 "idx, else <file>-<line>)."})
    split: Literal["train", "test"] = field(default="train", metadata={
        "help": "With a benchmark name as --input: which split to read. train (default): training data must not "
                "come from the problems `srl eval` scores; a benchmark without a train split is refused."})
    limit: int | None = field(default=None, metadata={"help": "Use a seeded subset of this many problems."})
    subset_seed: int = field(default=0, metadata={"help": "Seed of the --limit subset."})
    answer_mode: Literal["auto", "boxed", "gsm8k", "last_number"] = field(default="auto", metadata={
        "help": "How the teacher's final answer is found: auto (last \\boxed{}, then `#### n`), or only one way."})
    number_fallback: Literal["auto", "on", "off"] = field(default="auto", metadata={
        "help": "With --answer_mode auto, take the last number when there is no box: auto = for GSM8K-style "
                "references (as `srl eval`)."})
    check: str | None = field(default=None, metadata={
        "help": "Your own check instead: `module:function` or `path/file.py:function`, called as "
                "function(solution_text, reference_answer) -> bool."})

    def __post_init__(self):
        if self.n < 1:
            raise InputError("must be >= 1", field="n")
        if self.max_tokens < 1:
            raise InputError("must be >= 1", field="max_tokens")
        if self.temperature < 0:
            raise InputError("must be >= 0", field="temperature")
        if not 0 < self.top_p <= 1:
            raise InputError("must be in (0, 1]", field="top_p")
        if self.limit is not None and self.limit < 1:
            raise InputError("must be >= 1", field="limit")
        if not self.output.endswith(".jsonl"):
            raise InputError("must be a .jsonl file", path=self.output, field="output")
        if self.check:
            load_check(self.check)  # a bad --check fails before anything is called

    @property
    def journal_path(self) -> str:
        return self.journal or self.output[: -len(".jsonl")] + ".calls.jsonl"

    @property
    def summary_path(self) -> str:
        return self.output[: -len(".jsonl")] + ".summary.json"

    def sampling(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "top_p": self.top_p, "max_tokens": self.max_tokens}

    def verification(self) -> str:
        """What decides a verdict (not a call): a verdict made another way is made again."""
        return self.check or f"answers:{self.answer_mode}:{self.number_fallback}"


def load_check(spec: str) -> Callable[[str, str], Any]:
    """The user's check function from `module:function` or `path/file.py:function`."""
    module_name, _, name = spec.rpartition(":")
    if not module_name or not name:
        raise InputError("expected module:function or path/file.py:function", field="check")
    try:
        if module_name.endswith(".py"):
            if not os.path.isfile(module_name):
                raise InputError("no such file", path=module_name, field="check")
            loader_spec = importlib.util.spec_from_file_location("srl_user_check", module_name)
            module = importlib.util.module_from_spec(loader_spec)
            loader_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except InputError:
        raise
    except Exception as e:  # the user's module failed to import
        raise InputError(f"cannot import {module_name}: {type(e).__name__}: {e}", field="check") from None
    fn = getattr(module, name, None)
    if not callable(fn):
        raise InputError(f"{module_name} has no function {name}", field="check")
    return fn


@dataclass
class GenerateSummary:
    """Counts of a `generate` run (all samples of the current settings, this run and earlier ones)."""

    problems: int = 0
    n: int = 0
    calls: CallStats = field(default_factory=CallStats)
    samples: int = 0  # answered samples
    correct: int = 0
    wrong: Counter = field(default_factory=Counter)  # by reason: no answer found, answer differs, truncated
    problems_with_correct: int = 0
    kept: int = 0
    per_problem: dict[str, list[int]] = field(default_factory=dict)  # id -> [correct, samples]
    dry_run: dict | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"problems": self.problems, "samples_per_problem": self.n, "samples": self.samples,
                "correct": self.correct, "wrong": dict(self.wrong), "problems_with_correct": self.problems_with_correct,
                "kept": self.kept, "calls": self.calls.as_dict(), "per_problem": self.per_problem}


def load_problem_list(cfg: GenerateConfig) -> list:
    """The problems of `cfg.input` (checked: each has a problem and a reference answer), `--limit` applied."""
    from srl.data.benchmarks import load_problems, resolve_data, select_subset, warn_benchmark_overlap

    path, spec = resolve_data(cfg.input, cfg.split, field="input")
    problems = load_problems(path, problem_field=cfg.problem_field, answer_field=cfg.answer_field,
                             solution_field=cfg.solution_field, id_field=cfg.id_field, spec=spec)
    problems = select_subset(problems, cfg.limit, cfg.subset_seed)
    warn_benchmark_overlap((p.problem for p in problems), cfg.input)
    return problems


def make_verifier(cfg: GenerateConfig) -> Callable[[str, Any], tuple[str | None, bool]]:
    """`verify(text, problem) -> (extracted answer or None, correct)`."""
    if cfg.check:
        fn = load_check(cfg.check)

        def user_check(text: str, problem) -> tuple[str | None, bool]:
            try:
                return None, bool(fn(text, problem.gold))
            except Exception as e:
                raise InputError(f"{cfg.check} raised {type(e).__name__}: {e}", field="check") from None

        return user_check

    def verify(text: str, problem) -> tuple[str | None, bool]:
        fallback = cfg.number_fallback == "on" or (cfg.number_fallback == "auto" and problem.gold_kind == "gsm8k")
        answer = extract_answer(text or "", cfg.answer_mode, last_number_fallback=fallback)
        return answer, answer is not None and answers_match(answer, problem.gold)

    return verify


def wrong_reason(row: dict) -> str:
    if row.get("finish_reason") == "length":
        return "truncated at --max_tokens"
    if row.get("predicted") is None and row.get("verified_with", "").startswith("answers:"):
        return "no final answer found"
    return "answer differs from the reference"


def generate_solutions(cfg: GenerateConfig, endpoint: EndpointConfig, client=None) -> GenerateSummary:
    """Sample, verify and keep; see the module docstring. `client`: an `openai.OpenAI` to use (tests)."""
    check_output(cfg.output, [cfg.input, cfg.template])
    check_output(cfg.journal_path, [cfg.input, cfg.template, cfg.output], "journal" if cfg.journal else "output")
    problems = load_problem_list(cfg)
    prompt = TeacherPrompt.load(cfg.template, "generate.yaml", ("problem",))
    params = cfg.sampling()
    settings = settings_hash(model=endpoint.model, prompt=prompt.as_dict(), **params)
    requests = [Request(request_key(p.id, k, settings), prompt.messages(problem=p.problem), params,
                        {"problem": p, "sample": k})
                for p in problems for k in range(cfg.n)]
    summary = GenerateSummary(problems=len(problems), n=cfg.n)
    if endpoint.dry_run:
        done = Journal.open(cfg.journal_path, read_only=True).rows
        summary.dry_run = {"first_request": requests[0], "to_call": sum(r.key not in done for r in requests),
                           "calls": len(requests)}
        return summary

    verify, verification = make_verifier(cfg), cfg.verification()

    def to_row(reply: Reply) -> dict:
        p, k = reply.request.meta["problem"], reply.request.meta["sample"]
        predicted, correct = verify(reply.text, p)
        return {"problem_id": p.id, "sample": k, "problem": p.problem, "reference": p.gold,
                "gold_kind": p.gold_kind, "response": reply.text, "finish_reason": reply.finish_reason,
                "predicted": predicted, "correct": correct, "verified_with": verification,
                "prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens,
                "seconds": round(reply.seconds, 3), "model": endpoint.model}

    with Journal.open(cfg.journal_path) as journal:
        summary.calls = run_journaled(endpoint, journal, requests, to_row, settings, "generating", client=client)
        rows = [journal.rows[r.key] for r in requests if r.key in journal.rows]

    by_problem = {p.id: p for p in problems}
    for row in rows:  # verdicts made with other verification options are made again
        if row.get("verified_with") != verification:
            row["predicted"], row["correct"] = verify(row["response"], by_problem[row["problem_id"]])
            row["verified_with"] = verification
    counts: dict[Any, list[int]] = {p.id: [0, 0] for p in problems}
    for row in rows:
        counts[row["problem_id"]][1] += 1
        if row["correct"]:
            counts[row["problem_id"]][0] += 1
        else:
            summary.wrong[wrong_reason(row)] += 1
    kept = [{"id": f"{row['problem_id']}-{row['sample']}", "problem_id": row["problem_id"], "sample": row["sample"],
             "problem": row["problem"], "solution": row["response"], "answer": row["reference"],
             "predicted": row["predicted"], "correct_samples": counts[row["problem_id"]][0],
             "samples": counts[row["problem_id"]][1], "model": endpoint.model, MARK: settings}
            for row in rows if row["correct"]]
    summary.samples = len(rows)
    summary.correct = len(kept)
    summary.problems_with_correct = sum(1 for c, _ in counts.values() if c)
    summary.per_problem = {str(pid): c for pid, c in counts.items()}
    summary.kept = write_jsonl(cfg.output, kept)
    write_json(cfg.summary_path, {"command": "srl data generate", "model": endpoint.model,
                                         "settings": settings, **params, **summary.as_dict()})
    return summary
