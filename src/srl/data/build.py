"""The data stage: expert solutions in a file -> step-wise instances in a file (`srl data build`), and the same
instances in memory for `srl train` (`instance_rows`)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

from srl.data.benchmarks import normalize_problem, resolve_data, warn_benchmark_overlap
from srl.data.formats import AGENT_FORMATS, FormatName, data_format, format_help
from srl.errors import InputError
from srl.data.instances import BuildSummary, InstanceOptions, build_instances, check_output_target, write_rows
from srl.data.prompts import PromptTemplate, ThinkMode
from srl.data.trajectories import read_trajectories
from srl.io import check_writable_folder, read_records, remove_stale_temporaries


@dataclass
class DataOptions:
    """How expert solutions are read and cut into step-wise instances: every option of `srl data build` but the
    files, the format and the output format. `srl train` has them too (`RunArguments` extends this class), so that
    training builds its instances exactly as `srl data build` does (`instance_rows`)."""

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
    template: str | None = field(default=None, metadata={
        "help": "Prompt template file (YAML/JSON with keys system, user, step, no_previous, title_hint)."})
    exclude: str | None = field(default=None, metadata={
        "help": "Problems to leave out (matched on the problem text): a file, or a benchmark name (gsm8k, "
                "math500, ...: its test split), e.g. math500 when building from the MATH test split."})
    exclude_field: str = field(default="problem", metadata={"help": "Problem field of the --exclude file."})
    max_chars: int = field(default=50_000, metadata={
        "help": "A problem, solution or step longer than this many characters is an input error."})
    limit: int | None = field(default=None, metadata={"help": "Read at most this many solutions."})
    # --- agent trajectories (the agent formats of srl.data.formats) ---
    last_pairs: int = field(default=2, metadata={
        "help": "Agent formats: show the last m action-observation pairs in the prompt (the paper: 2)."})
    observation_chars: int = field(default=4000, metadata={
        "help": "Agent formats: cut an observation longer than this many characters in the middle, with a "
                "visible marker (0: no limit)."})
    observation_tokens: int | None = field(default=None, metadata={
        "help": "Agent formats: also cut observations to this many tokens of --tokenizer."})
    tokenizer: str | None = field(default=None, metadata={
        "help": "Agent formats: the tokenizer of --observation_tokens (a model name, folder, or `tiny`)."})
    resolved_only: bool = field(default=True, metadata={
        "help": "Agent formats: keep only trajectories marked resolved (a record without a resolved flag is an "
                "error; false keeps every trajectory)."})
    resolved_field: str | None = field(default=None, metadata={
        "help": "Agent formats: field of the resolved flag, dotted for nesting (default: resolved, target, "
                "success or is_resolved)."})
    messages_field: str | None = field(default=None, metadata={
        "help": "Agent formats: field of the list of turns (default: messages, conversations, trajectory, "
                "history, ...)."})
    action_pattern: str | None = field(default=None, metadata={
        "help": "Agent formats: a regex that extracts the action from an assistant turn: named group `action` "
                "(a command), or `name` (a tool) and one group per parameter. Replaces the built-in extractors."})
    chat_config: str | None = field(default=None, metadata={
        "help": "Agent formats: a YAML/JSON file describing an unknown trajectory format (roles, fields, "
                "extractors, pattern; see docs/agent_formats.md)."})
    command_tool: str | None = field(default=None, metadata={
        "help": "Agent formats: write plain commands as calls of this tool, e.g. `bash` gives "
                "`<function=bash><parameter=command>ls</parameter></function>`."})
    agent_system: bool = field(default=True, metadata={
        "help": "Agent formats: show the trajectory's own system text and tool list before the SRL instructions."})
    previous_thoughts: bool = field(default=False, metadata={
        "help": "Agent formats: show the expert's reasoning with its previous actions (as <think>...</think>)."})
    rejected_turns: Literal["drop", "show"] = field(default="drop", metadata={
        "help": "Agent formats: a turn the agent's scaffold rejected (not exactly one command block, or answered "
                "with its format-error reply; nothing ran) is never a target; drop: left out of the context, "
                "show: shown in the context marked as rejected, with the scaffold's reply."})
    drop_submit: bool = field(default=False, metadata={
        "help": "Agent formats: the final action, if it submits or finishes the run (submit, finish, echo "
                "COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT), is not a target."})
    scaffold_instructions: Literal["keep", "remove", "replace"] = field(default="keep", metadata={
        "help": "Agent formats: the scaffold's own response-format instructions in the system text and the task "
                "(e.g. 'exactly one fenced block with a THOUGHT'), which contradict the SRL instructions: keep, "
                "remove, or replace them with a line pointing to the SRL format (swe-agent, mini-swe-agent, openhands, "
                "or a --chat_config with scaffold_instructions_pattern)."})


AGENT_ONLY = ("last_pairs", "observation_chars", "observation_tokens", "tokenizer", "resolved_only", "resolved_field",
              "messages_field", "action_pattern", "chat_config", "command_tool", "agent_system", "previous_thoughts",
              "rejected_turns", "drop_submit", "scaffold_instructions")


@dataclass
class DataConfig(DataOptions):
    """`srl data build`: turn expert solutions into step-wise instances."""

    input: str = field(kw_only=True, metadata={
        "help": "Expert solutions: .jsonl, .json, .parquet or a `datasets` folder."})
    output: str = field(kw_only=True, metadata={
        "help": "Where to write instances: .jsonl, .json, .parquet, or a folder (`datasets.save_to_disk`)."})
    format: FormatName = field(default="gsm8k", metadata={"help": format_help()})
    think: ThinkMode = field(default="required", metadata={
        "help": "Output format the prompt asks for: with the <think> monologue (required/optional) or without (off)."})

    @property
    def is_agent(self) -> bool:
        return data_format(self.format).agent

    def __post_init__(self):
        if not self.input.strip():
            raise InputError("empty: name the file of expert solutions", field="input")
        if self.max_chars < 1:
            raise InputError(f"must be >= 1, got {self.max_chars}", field="max_chars")
        if self.format == "regex" and not self.pattern:
            raise InputError("--format regex needs --pattern", field="pattern")
        if self.limit is not None and self.limit < 1:
            raise InputError("must be >= 1 (leave it out to read everything)", field="limit")
        if self.max_previous_steps is not None and self.max_previous_steps < 0:
            raise InputError("must be >= 0", field="max_previous_steps")
        if self.observation_tokens is not None and not self.tokenizer:
            raise InputError("a token budget needs --tokenizer", field="observation_tokens")
        if self.chat_config and self.format != "chat":
            raise InputError(f"is for --format chat (it describes a format of its own), not --format {self.format}",
                             field="chat_config")
        if self.is_agent:
            solution_only = {"pattern": self.pattern, "title_hint": self.title_hint,
                             "include_last_step": self.include_last_step, "max_previous_steps": self.max_previous_steps,
                             "solution_field": self.solution_field, "answer_field": self.answer_field,
                             "keep_calculator": self.keep_calculator, "math_unit": self.math_unit != "sentence"}
            for name, value in solution_only.items():
                if value:
                    raise InputError(f"is for solution formats, not --format {self.format} (agent formats make one "
                                     "instance per action; see --last_pairs, --action_pattern)", field=name)
            fmt = self.chat_format()  # a bad --chat_config or --action_pattern fails here, before anything is read
            if self.scaffold_instructions != "keep" and not fmt.scaffold_instructions_pattern:
                raise InputError(f"--format {self.format} knows no scaffold format instructions to "
                                 f"{self.scaffold_instructions} (use --format chat with a --chat_config that sets "
                                 "scaffold_instructions_pattern)", field="scaffold_instructions")
        else:
            defaults = {f.name: f.default for f in fields(DataOptions) if f.name in AGENT_ONLY}
            for name in AGENT_ONLY:
                if getattr(self, name) != defaults[name]:
                    raise InputError(f"is for agent formats ({', '.join(AGENT_FORMATS)}), not --format "
                                     f"{self.format}", field=name)

    def chat_format(self):
        """The agent format: the built-in preset, or the --chat_config file, with the flags on top."""
        from srl.data.agents import FORMATS, ChatFormat

        overrides = {"messages_field": self.messages_field, "action_pattern": self.action_pattern,
                     "resolved_field": self.resolved_field, "command_tool": self.command_tool}
        if self.chat_config:
            return ChatFormat.from_file(self.chat_config, **overrides)
        return replace(FORMATS[self.format], **{k: v for k, v in overrides.items() if v is not None})

    def agent_options(self, load_tokenizer: Callable[[str], Any] | None = None):
        """The options of agent instances; `load_tokenizer(name)` gives the tokenizer of --observation_tokens
        (e.g. `srl.models.load_tokenizer`: the data stage loads no model files itself)."""
        from srl.data.agents import AgentOptions, AgentTemplate

        template = AgentTemplate.from_file(self.template) if self.template else AgentTemplate()
        tokenizer = None
        if self.observation_tokens is not None and self.tokenizer and load_tokenizer is not None:
            tokenizer = load_tokenizer(self.tokenizer)
        return AgentOptions(last_pairs=self.last_pairs, observation_chars=self.observation_chars,
                            observation_tokens=self.observation_tokens, tokenizer=tokenizer, think=self.think,
                            agent_system=self.agent_system, previous_thoughts=self.previous_thoughts,
                            drop_submit=self.drop_submit, template=template)

    def instance_options(self) -> InstanceOptions:
        template = PromptTemplate.from_file(self.template) if self.template else PromptTemplate()
        return InstanceOptions(include_last_step=self.include_last_step, title_hint=self.title_hint,
                               max_previous_steps=self.max_previous_steps, think=self.think, template=template)

    def split_options(self) -> dict[str, Any]:
        return {option: getattr(self, name) for option, name in data_format(self.format).options.items()}


def _excluded_problems(cfg: DataConfig) -> set[str]:
    """The problems of `--exclude` (a file, or a benchmark name: its test split), normalised for matching."""
    if not cfg.exclude:
        return set()
    path, spec = resolve_data(cfg.exclude, field="exclude")
    name = spec.problem_field if spec is not None and cfg.exclude_field == "problem" else cfg.exclude_field
    return {normalize_problem(rec.text(name)) for rec in read_records(path)}


def iter_trajectories(cfg: DataConfig, summary: BuildSummary | None = None):
    """The trajectories of `cfg.input`; excluded problems come out as `("skip", reason)` for the summary."""
    excluded = _excluded_problems(cfg)
    if cfg.is_agent:
        from srl.data.agents import read_agent_trajectories

        trajectories = read_agent_trajectories(cfg.input, cfg.chat_format(), resolved_only=cfg.resolved_only,
                                               problem_field=cfg.problem_field, system_field=cfg.system_field,
                                               id_field=cfg.id_field, rejected_turns=cfg.rejected_turns,
                                               scaffold_instructions=cfg.scaffold_instructions)
    else:
        trajectories = read_trajectories(cfg.input, cfg.format, problem_field=cfg.problem_field,
                                         solution_field=cfg.solution_field, answer_field=cfg.answer_field,
                                         id_field=cfg.id_field, system_field=cfg.system_field,
                                         max_chars=cfg.max_chars, **cfg.split_options())
    problems = []
    for i, traj in enumerate(trajectories):
        if cfg.limit is not None and i >= cfg.limit:
            break
        if excluded and not isinstance(traj, tuple) and normalize_problem(traj.problem) in excluded:
            yield ("skip", "in --exclude")
        else:
            if not isinstance(traj, tuple):
                problems.append(traj.problem)
            yield traj
    warn_benchmark_overlap(problems, cfg.input)


def load_trajectories(source: str, fmt: str = "gsm8k", **options: Any) -> list:
    """Every expert trajectory of `source`, as a list: the one entry point for every format, read exactly as
    `srl data build --format fmt` reads it.

    Args:
        source: a file (.jsonl, .json, .parquet) or a `datasets` folder.
        fmt: a solution format (gsm8k, math, numbered, regex, steps: `Trajectory` objects) or an agent format
            (openai-tools, swe-agent, mini-swe-agent, openhands, chat: `AgentTrajectory` objects).
        options: the options of `srl data build` (`DataOptions`: field names, `pattern`, `keep_calculator`,
            `limit`, `exclude`, agent options such as `resolved_only` or `chat_config`, ...), checked as the command
            checks them; trajectories it would skip (not resolved, excluded) are left out.

    A list, so that looking at the first one (`trajectories[0]`) loses none. `srl.data.trajectories.read_trajectories`
    streams solution formats one at a time.

    >>> from srl.data import BUNDLED_GSM8K
    >>> trajectories = load_trajectories(BUNDLED_GSM8K, "gsm8k")
    >>> len(trajectories), trajectories[0].steps[0].text
    (256, 'Natalia sold 48/2 = 24 clips in May.')
    """
    cfg = DataConfig(input=source, output="", format=fmt, **options)
    return [t for t in iter_trajectories(cfg) if not isinstance(t, tuple)]  # ("skip", reason): left out


def instance_rows(cfg: DataConfig, summary: BuildSummary | None = None, progress: Callable[[], None] | None = None,
                  load_tokenizer: Callable[[str], Any] | None = None) -> Iterator[dict[str, Any]]:
    """The step-wise instances of `cfg.input`, built by `cfg`'s options: what `srl data build` writes, and what
    `srl train` trains on when given solutions. `progress` is called once per trajectory read; `load_tokenizer`
    loads the tokenizer of a token budget (`DataConfig.agent_options`)."""
    summary = summary if summary is not None else BuildSummary()

    def counted():
        for item in iter_trajectories(cfg, summary):
            if progress:
                progress()
            yield item

    if cfg.is_agent:
        from srl.data.agents import build_agent_instances

        return build_agent_instances(counted(), cfg.agent_options(load_tokenizer), summary, max_chars=cfg.max_chars)
    return build_instances(counted(), cfg.instance_options(), summary)


def build(cfg: DataConfig, progress: Callable[[], None] | None = None,
          load_tokenizer: Callable[[str], Any] | None = None) -> BuildSummary:
    """Build the instances of `cfg.input` into `cfg.output` (atomically) and return the summary.
    `progress` is called once per trajectory read; `load_tokenizer` as for `instance_rows`."""
    if not cfg.output.strip():
        raise InputError("empty: name the file or folder to write", field="output")
    check_output_target(cfg.output, [cfg.input, cfg.exclude, cfg.template, cfg.chat_config])
    check_writable_folder(os.path.dirname(os.path.abspath(cfg.output)), "output")  # before the input is read
    remove_stale_temporaries(cfg.output)
    summary = BuildSummary()
    write_rows(_not_empty(instance_rows(cfg, summary, progress, load_tokenizer), cfg, summary), cfg.output)
    return summary


def _not_empty(rows, cfg: DataConfig, summary: BuildSummary):
    """`rows`, raising (so that the writer leaves nothing behind) when there are none: an empty output is
    always a mistake worth one clear line."""
    any_row = False
    for row in rows:
        any_row = True
        yield row
    if any_row:
        return
    if summary.read == 0:
        raise InputError("no records: the input is empty", path=cfg.input)
    reasons = ", ".join(f"{reason} ({n})" for reason, n in summary.skipped.most_common(3)) or "no steps"
    raise InputError(f"0 instances: every one of the {summary.read} trajectories was skipped — {reasons}; is "
                     f"--format {cfg.format} right?", path=cfg.input)


def count_input_rows(path: str) -> int | None:
    """Number of lines of a JSONL file (for a progress bar), None for other inputs."""
    if not (isinstance(path, str) and path.endswith(".jsonl") and os.path.isfile(path)):
        return None
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())
