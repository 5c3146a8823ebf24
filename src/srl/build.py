"""The data stage: expert solutions in a file -> step-wise instances in a file (`srl data build`)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from srl.errors import InputError
from srl.instances import BuildSummary, InstanceOptions, build_instances, write_rows
from srl.prompts import PromptTemplate
from srl.trajectories import load_trajectories, read_records


@dataclass
class DataConfig:
    """`srl data build`: turn expert solutions into step-wise instances."""

    input: str = field(metadata={"help": "Expert solutions: .jsonl, .json, .parquet or a `datasets` folder."})
    output: str = field(metadata={"help": "Where to write instances: .jsonl, .json, .parquet, or a folder "
                                          "(`datasets.save_to_disk`)."})
    format: Literal["gsm8k", "math", "numbered", "regex", "steps"] = field(
        default="gsm8k", metadata={"help": "How solutions are cut into steps: gsm8k (a step per line, `#### n` "
                                           "answer), math (sentences of a MATH solution), numbered (`1. **Title** "
                                           "action` or `Step 1:` lists), regex (--pattern), steps (already a list)."})
    problem_field: str | None = field(default=None, metadata={"help": "Problem field (default: question for "
                                                                      "gsm8k, problem otherwise)."})
    solution_field: str | None = field(default=None, metadata={"help": "Solution field (default: answer for "
                                                                        "gsm8k, solution otherwise, steps for steps)."})
    answer_field: str | None = field(default=None, metadata={"help": "Final-answer field (default: taken from the "
                                                                      "solution: `#### n` or `\\boxed{}`)."})
    id_field: str | None = field(default=None, metadata={"help": "Id field (default: <file>-<line>)."})
    system_field: str | None = field(default=None, metadata={"help": "Optional field with extra context shown "
                                                                      "after the system prompt."})
    keep_calculator: bool = field(default=False, metadata={"help": "gsm8k: keep `<<48/2=24>>` calculator notes."})
    math_unit: Literal["sentence", "paragraph"] = field(default="sentence", metadata={
        "help": "math: one step per sentence or per paragraph."})
    pattern: str | None = field(default=None, metadata={
        "help": "regex: a pattern whose matches are the steps (named groups `action`, optional `title`), or "
                "otherwise the separators between steps."})
    include_last_step: bool = field(default=False, metadata={
        "help": "Also target the last step (N instances per N-step solution instead of the paper's N-1)."})
    title_hint: bool = field(default=False, metadata={
        "help": "Give the next step's title in the prompt; the model writes the rest (paper's footnote)."})
    max_previous_steps: int | None = field(default=None, metadata={
        "help": "Show only the last m expert steps in the prompt (default: all)."})
    think: Literal["required", "optional", "off"] = field(default="required", metadata={
        "help": "Output format the prompt asks for: with the <think> monologue (required/optional) or without (off)."})
    template: str | None = field(default=None, metadata={
        "help": "Prompt template file (YAML/JSON with keys system, user, step, no_previous, title_hint)."})
    exclude: str | None = field(default=None, metadata={
        "help": "A file of problems to leave out (matched on the problem text), e.g. MATH-500 when building "
                "from the MATH test split."})
    exclude_field: str = field(default="problem", metadata={"help": "Problem field of the --exclude file."})
    max_chars: int = field(default=50_000, metadata={
        "help": "A problem, solution or step longer than this many characters is an input error."})
    limit: int | None = field(default=None, metadata={"help": "Read at most this many solutions."})

    def __post_init__(self):
        if self.format == "regex" and not self.pattern:
            raise InputError("--format regex needs --pattern", field="pattern")
        if self.max_previous_steps is not None and self.max_previous_steps < 0:
            raise InputError("must be >= 0", field="max_previous_steps")

    def instance_options(self) -> InstanceOptions:
        template = PromptTemplate.from_file(self.template) if self.template else PromptTemplate()
        return InstanceOptions(include_last_step=self.include_last_step, title_hint=self.title_hint,
                               max_previous_steps=self.max_previous_steps, think=self.think, template=template)

    def split_options(self) -> dict[str, Any]:
        return {"gsm8k": {"keep_calculator": self.keep_calculator}, "math": {"unit": self.math_unit},
                "regex": {"pattern": self.pattern}}.get(self.format, {})


def _excluded_problems(cfg: DataConfig) -> set[str]:
    if not cfg.exclude:
        return set()
    return {" ".join(rec.text(cfg.exclude_field).split()) for rec in read_records(cfg.exclude)}


def iter_trajectories(cfg: DataConfig, summary: BuildSummary | None = None):
    """The trajectories of `cfg.input`; excluded problems come out as `("skip", reason)` for the summary."""
    excluded = _excluded_problems(cfg)
    trajectories = load_trajectories(cfg.input, cfg.format, problem_field=cfg.problem_field,
                                     solution_field=cfg.solution_field, answer_field=cfg.answer_field,
                                     id_field=cfg.id_field, system_field=cfg.system_field,
                                     max_chars=cfg.max_chars, **cfg.split_options())
    for i, traj in enumerate(trajectories):
        if cfg.limit is not None and i >= cfg.limit:
            return
        if excluded and " ".join(traj.problem.split()) in excluded:
            yield ("skip", "in --exclude")
        else:
            yield traj


def build(cfg: DataConfig, progress: Callable[[], None] | None = None) -> BuildSummary:
    """Build the instances of `cfg.input` into `cfg.output` (atomically) and return the summary.
    `progress` is called once per trajectory read."""
    summary = BuildSummary()
    options = cfg.instance_options()

    def counted():
        for item in iter_trajectories(cfg, summary):
            if progress:
                progress()
            yield item

    write_rows(build_instances(counted(), options, summary), cfg.output)
    return summary


def count_input_rows(path: str) -> int | None:
    """Number of lines of a JSONL file (for a progress bar), None for other inputs."""
    if not (isinstance(path, str) and path.endswith(".jsonl") and os.path.isfile(path)):
        return None
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())
