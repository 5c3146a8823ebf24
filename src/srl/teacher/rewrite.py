"""`srl data rewrite`: expert solutions rewritten by a teacher into the paper's titled steps, checked.

The SRL paper (appendix B.3) had Gemini-2.5-flash rewrite DeepSeek R1 solutions into the template
`1. **{step title}** {step action}` with a two-shot prompt ("follow the original thoughts and solutions ... do
not solve the task by your own") and dropped the conversions failing the format check. This does the same
through any OpenAI-compatible endpoint, with that prompt as the default (`srl/teacher/prompts/rewrite.yaml`,
replaceable with `--template`), and accepts a rewrite only when

1. the reply was not cut off at --max_tokens;
2. it parses, with the `numbered` splitter of `srl data build`, into at least --min_steps steps, every one with a
   bold **title**;
3. its final answer (the last `\\boxed{}`, else the last number) equals the original one (`srl.rewards.answers`);
4. optionally, the joined steps stay close to the source: similarity (`srl.rewards.text_similarity`, difflib ratio) of at
   least --min_similarity.

Rejects are counted by reason. The output feeds `srl data build --format numbered` (and `--title_hint`) as is.

Files, for `--output rewritten.jsonl`:
    rewritten.jsonl          one row per accepted rewrite: id, problem, solution (the numbered steps), answer,
                             num_steps, similarity, model
    rewritten.calls.jsonl    the journal: every answered call with its verdict; a rerun skips them
    rewritten.summary.json   the counts printed at the end
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from srl.data.answers import extract_answer, extract_boxed
from srl.rewards.answers import answers_match
from srl.errors import InputError
from srl.rewards.text_similarity import similarity
from srl.data.steps import split_numbered
from srl.teacher.client import CallStats, EndpointConfig, Reply, Request, run_journaled
from srl.teacher.journal import MARK, Journal, check_output, request_key, settings_hash
from srl.teacher.prompt import TeacherPrompt
from srl.io import Record, read_records, write_json, write_jsonl

KEPT = "kept"
TRUNCATED = "truncated at --max_tokens"
TOO_FEW_STEPS = "fewer than --min_steps numbered steps"
UNTITLED = "a step without a **title**"
NO_ANSWER = "no final answer"
ANSWER_CHANGED = "final answer changed"
TOO_FAR = "below --min_similarity to the source"
REJECT_REASONS = (TRUNCATED, TOO_FEW_STEPS, UNTITLED, NO_ANSWER, ANSWER_CHANGED, TOO_FAR)


@dataclass
class RewriteConfig:
    """`srl data rewrite`: rewrite expert solutions into `1. **Title** action` steps and keep the faithful ones."""

    input: str = field(metadata={
        "help": "Expert solutions: .jsonl, .json, .parquet or a datasets folder, e.g. the output of `srl data "
                "generate`; the solution may be free text such as a long reasoning trace, or a list of steps."})
    output: str = field(metadata={
        "help": "Accepted rewrites (.jsonl), rewritten whole at the end of each run: the input of `srl data "
                "build --format numbered`. Beside it <name>.calls.jsonl (the journal) and <name>.summary.json."})
    problem_field: str | None = field(default=None, metadata={"help": "Problem field (default: problem or "
                                                                      "question)."})
    solution_field: str = field(default="solution", metadata={
        "help": "Field with the expert solution (a string, or a list of steps joined by new lines); for GSM8K "
                "files: answer."})
    answer_field: str | None = field(default=None, metadata={
        "help": "Field with the original final answer (default: `answer` when it is not the solution field; a "
                "GSM8K `#### n` text is reduced to n). Without one: the solution's last \\boxed{} or `#### n`."})
    id_field: str | None = field(default=None, metadata={"help": "Id field (default: id, unique_id or idx, else "
                                                                 "<file>-<line>)."})
    temperature: float = field(default=0.0, metadata={"help": "Sampling temperature (0: greedy)."})
    max_tokens: int = field(default=2048, metadata={"help": "Most tokens per rewrite."})
    template: str | None = field(default=None, metadata={
        "help": "Prompt file (YAML/JSON with keys system and user; user contains {problem} and {solution}). "
                "Default: srl/teacher/prompts/rewrite.yaml, the paper's instructions (appendix B.3) and two "
                "examples."})
    journal: str | None = field(default=None, metadata={
        "help": "The resumable record of answered calls (default: <output without .jsonl>.calls.jsonl)."})
    min_steps: int = field(default=2, metadata={"help": "Fewest titled steps an accepted rewrite has."})
    min_similarity: float = field(default=0.0, metadata={
        "help": "Reject a rewrite whose joined steps have a similarity below this to the source solution "
                "(difflib ratio, 0..1; 0 turns the check off)."})
    limit: int | None = field(default=None, metadata={"help": "Rewrite at most the first this many solutions."})
    max_chars: int = field(default=100_000, metadata={
        "help": "A problem or solution longer than this many characters is an input error."})

    def __post_init__(self):
        if self.min_steps < 1:
            raise InputError("must be >= 1", field="min_steps")
        if not 0 <= self.min_similarity <= 1:
            raise InputError("must be in [0, 1]", field="min_similarity")
        if self.max_tokens < 1:
            raise InputError("must be >= 1", field="max_tokens")
        if self.temperature < 0:
            raise InputError("must be >= 0", field="temperature")
        if self.limit is not None and self.limit < 1:
            raise InputError("must be >= 1", field="limit")
        if not self.output.endswith(".jsonl"):
            raise InputError("must be a .jsonl file", path=self.output, field="output")

    @property
    def journal_path(self) -> str:
        return self.journal or self.output[: -len(".jsonl")] + ".calls.jsonl"

    @property
    def summary_path(self) -> str:
        return self.output[: -len(".jsonl")] + ".summary.json"

    def sampling(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "max_tokens": self.max_tokens}

    def checks(self) -> str:
        """What decides a verdict (not a call): a verdict made with other checks is made again."""
        return f"steps>={self.min_steps};similarity>={self.min_similarity}"


@dataclass(frozen=True)
class Source:
    """One expert solution to rewrite."""

    id: Any
    problem: str
    solution: str
    answer: str
    line: int


@dataclass
class RewriteSummary:
    read: int = 0
    skipped: Counter = field(default_factory=Counter)  # sources not sent, by reason
    calls: CallStats = field(default_factory=CallStats)
    rewritten: int = 0  # answered calls of the current settings
    rejected: Counter = field(default_factory=Counter)
    kept: int = 0
    dry_run: dict | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"read": self.read, "skipped": dict(self.skipped), "rewritten": self.rewritten,
                "rejected": dict(self.rejected), "kept": self.kept, "calls": self.calls.as_dict()}


def _source_answer(rec: Record, cfg: RewriteConfig, solution: str) -> str | None:
    from srl.data.benchmarks import gold_from_value  # a plain field reader (`#### n`, \boxed{}, plain)

    name = cfg.answer_field or ("answer" if cfg.solution_field != "answer" and rec.data.get("answer") is not None
                                else None)
    if name is not None:
        return gold_from_value(rec, name)[0]
    return extract_answer(solution, "auto")


def read_sources(cfg: RewriteConfig, summary: RewriteSummary) -> list[Source]:
    """The solutions of `cfg.input`, checked; those without a final answer are counted as skipped."""
    sources: list[Source] = []
    seen: dict[Any, int] = {}
    for rec in read_records(cfg.input):
        if cfg.limit is not None and summary.read >= cfg.limit:
            break
        summary.read += 1
        problem_field = cfg.problem_field or next((f for f in ("problem", "question") if rec.data.get(f) is not None),
                                                  "problem")
        problem = rec.text(problem_field, max_chars=cfg.max_chars)
        value = rec.data.get(cfg.solution_field)
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            solution = "\n".join(v.strip() for v in value)
        else:
            solution = rec.text(cfg.solution_field, max_chars=cfg.max_chars)
        answer = _source_answer(rec, cfg, solution)
        if not answer:
            summary.skipped["no final answer in the source (give --answer_field)"] += 1
            continue
        if cfg.id_field:
            sid = rec.data.get(cfg.id_field)
            if sid is None:
                raise rec.error("missing (use --id_field for another name, or leave it unset)", cfg.id_field)
        else:
            name = next((f for f in ("id", "unique_id", "idx") if rec.data.get(f) is not None), None)
            sid = rec.data[name] if name else f"{os.path.splitext(os.path.basename(rec.path))[0]}-{rec.line}"
        if not isinstance(sid, (str, int)) or isinstance(sid, bool):
            sid = str(sid)
        if sid in seen:
            raise InputError(f"duplicate id {sid!r} (also on line {seen[sid]}); set --id_field to a unique field",
                             path=rec.path, line=rec.line)
        seen[sid] = rec.line
        sources.append(Source(sid, problem, solution, answer, rec.line))
    return sources


def check_rewrite(text: str, finish_reason: str | None, source: Source, *, min_steps: int = 2,
                  min_similarity: float = 0.0) -> dict[str, Any]:
    """The verdict on one rewrite: {"verdict": "kept" or a reject reason, "steps": [[title, action], ...],
    "answer": the rewrite's final answer, "similarity": of the joined steps to the source (None when off)}.

    >>> src = Source("a", "2+3?", "2 plus 3 is 5. The answer is 5.", "5", 1)
    >>> check_rewrite("1. **Add** 2 + 3 = 5.\\n2. **Answer** So it is \\\\boxed{5}.", "stop", src)["verdict"]
    'kept'
    >>> check_rewrite("1. **Add** 2 + 3 = 6.\\n2. **Answer** So it is \\\\boxed{6}.", "stop", src)["verdict"]
    'final answer changed'
    >>> check_rewrite("The answer is 5.", "stop", src)["verdict"]
    'fewer than --min_steps numbered steps'
    """
    result: dict[str, Any] = {"steps": [], "answer": None, "similarity": None}
    parts = split_numbered(text or "")
    result["steps"] = [[s.title, s.action] for s in parts.steps]
    joined = "\n".join(s.text for s in parts.steps)
    if min_similarity > 0:
        result["similarity"] = round(similarity(joined, source.solution), 4)
    answer = parts.final_answer or extract_boxed(joined) or extract_answer(joined, "auto", last_number_fallback=True)
    result["answer"] = answer
    if finish_reason == "length":
        verdict = TRUNCATED
    elif len(parts.steps) < min_steps:
        verdict = TOO_FEW_STEPS
    elif any(not s.title for s in parts.steps):
        verdict = UNTITLED
    elif answer is None:
        verdict = NO_ANSWER
    elif not answers_match(answer, source.answer):
        verdict = ANSWER_CHANGED
    elif min_similarity > 0 and result["similarity"] < min_similarity:
        verdict = TOO_FAR
    else:
        verdict = KEPT
    result["verdict"] = verdict
    return result


def numbered_text(steps: list[list[str]]) -> str:
    """Steps in the paper's template, one item each: `1. **Title** action`."""
    return "\n".join(f"{i}. **{title}** {action}".rstrip() for i, (title, action) in enumerate(steps, start=1))


def rewrite_solutions(cfg: RewriteConfig, endpoint: EndpointConfig, client=None) -> RewriteSummary:
    """Rewrite, check and keep; see the module docstring. `client`: an `openai.OpenAI` to use (tests)."""
    check_output(cfg.output, [cfg.input, cfg.template])
    check_output(cfg.journal_path, [cfg.input, cfg.template, cfg.output], "journal" if cfg.journal else "output")
    summary = RewriteSummary()
    sources = read_sources(cfg, summary)
    if not sources:
        raise InputError("no solution to rewrite" + (" (none has a final answer)" if summary.read else ""),
                         path=cfg.input)
    prompt = TeacherPrompt.load(cfg.template, "rewrite.yaml", ("problem", "solution"))
    params = cfg.sampling()
    settings = settings_hash(model=endpoint.model, prompt=prompt.as_dict(), **params)
    requests = [Request(request_key(s.id, 0, settings, content=s.problem + "\n" + s.solution),
                        prompt.messages(problem=s.problem, solution=s.solution), params, {"source": s})
                for s in sources]
    if endpoint.dry_run:
        done = Journal.open(cfg.journal_path, read_only=True).rows
        summary.dry_run = {"first_request": requests[0], "to_call": sum(r.key not in done for r in requests),
                           "calls": len(requests)}
        return summary

    checks = cfg.checks()

    def judge(text: str, finish_reason: str | None, source: Source) -> dict[str, Any]:
        return check_rewrite(text, finish_reason, source, min_steps=cfg.min_steps, min_similarity=cfg.min_similarity)

    def to_row(reply: Reply) -> dict:
        s = reply.request.meta["source"]
        return {"id": s.id, "problem": s.problem, "source_answer": s.answer, "response": reply.text,
                "finish_reason": reply.finish_reason, **judge(reply.text, reply.finish_reason, s),
                "checked_with": checks, "prompt_tokens": reply.prompt_tokens,
                "completion_tokens": reply.completion_tokens, "seconds": round(reply.seconds, 3),
                "model": endpoint.model}

    with Journal.open(cfg.journal_path) as journal:
        summary.calls = run_journaled(endpoint, journal, requests, to_row, settings, "rewriting", client=client)
        done = [(r.meta["source"], journal.rows[r.key]) for r in requests if r.key in journal.rows]

    kept = []
    for source, row in done:
        if row.get("checked_with") != checks:  # verdicts made with other --min_steps/--min_similarity: again
            row.update(judge(row["response"], row.get("finish_reason"), source), checked_with=checks)
        if row["verdict"] == KEPT:
            kept.append({"id": source.id, "problem": source.problem, "solution": numbered_text(row["steps"]),
                         "answer": source.answer, "num_steps": len(row["steps"]), "similarity": row["similarity"],
                         "model": endpoint.model, MARK: settings})
        else:
            summary.rejected[row["verdict"]] += 1
    summary.rewritten = len(done)
    summary.kept = write_jsonl(cfg.output, kept)
    write_json(cfg.summary_path, {"command": "srl data rewrite", "model": endpoint.model,
                                         "settings": settings, **params, **summary.as_dict()})
    return summary
