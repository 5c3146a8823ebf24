"""The data formats: every format of expert data that `srl data build --format` and `srl train --data_format`
read, in one table (`DATA_FORMATS`). Everything else derives from it: the command-line choices (`FormatName`,
`TrainDataFormat`), the `--format` help, which formats are agent formats, and each format's reader:

- a **solution format** (`DataFormat.splitter` set) is read by `srl.data.trajectories.load_trajectories`: the
  problem and solution fields (defaults: `problem_field`, `solution_field`), the solution cut into steps by the
  splitter of `srl.data.steps`; its final answers are of the kind `answers` (for the RLVR reward's number fallback);
- an **agent format** (no splitter) is read by `srl.data.agents.read_agent_trajectories` with the `ChatFormat`
  preset built from `chat` (its fields; none: every built-in extractor) and `scaffold` (the agent program whose
  response-format instructions `srl.data.agents.scaffolds` knows).

A new format is one entry here (and its splitter or extractors where it needs new ones).

>>> AGENT_FORMATS
('openai-tools', 'swe-agent', 'mini-swe-agent', 'openhands', 'chat')
>>> data_format("numbered").problem_field, data_format("mini-swe-agent").agent
('problem', True)
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from srl.data.answers import is_number
from srl.data.steps import Split, split_gsm8k, split_list, split_math, split_numbered, split_regex


@dataclass(frozen=True)
class DataFormat:
    """One format of expert data (see the module docstring)."""

    name: str
    help: str
    splitter: Callable[..., Split] | None = None
    problem_field: str = "problem"
    solution_field: str = "solution"
    answers: Literal["gsm8k", "boxed"] | None = None
    options: Mapping[str, str] = field(default_factory=dict)  # splitter option -> `srl data build` option
    chat: Mapping[str, Any] = field(default_factory=dict)
    scaffold: str | None = None

    @property
    def agent(self) -> bool:
        """An agent format (one instance per expert action) rather than a solution format."""
        return self.splitter is None

    def split(self, text, **options) -> Split:
        """`text` cut by this format's splitter with `options`. An option the splitter does not have, or a
        missing required one, is a ValueError.

        >>> [s.action for s in data_format("gsm8k").split("a\\nb\\n#### 3").steps]
        ['a', 'b']
        >>> data_format("gsm8k").split("x", unit="paragraph")
        Traceback (most recent call last):
        ...
        ValueError: the 'gsm8k' splitter has no option 'unit' (its options: keep_calculator)
        """
        if self.splitter is None:
            raise ValueError(f"{self.name!r} is an agent format: its trajectories are not split into steps")
        parameters = list(inspect.signature(self.splitter).parameters.values())[1:]
        known = [p.name for p in parameters]
        unknown = [name for name in options if name not in known]
        if unknown:
            raise ValueError(f"the {self.name!r} splitter has no option {unknown[0]!r} "
                             f"(its options: {', '.join(known) or 'none'})")
        missing = [p.name for p in parameters if p.default is inspect.Parameter.empty and p.name not in options]
        if missing:
            raise ValueError(f"the {self.name!r} splitter needs the option {missing[0]!r}")
        return self.splitter(text, **options)


_FORMATS = (
    # --- solutions: one problem and its worked solution per record ---
    DataFormat("gsm8k", "a step per line, `#### n` answer", split_gsm8k, "question", "answer", "gsm8k",
               options={"keep_calculator": "keep_calculator"}),
    DataFormat("math", "sentences of a MATH solution", split_math, answers="boxed", options={"unit": "math_unit"}),
    DataFormat("numbered", "`1. **Title** action` or `Step 1:` lists", split_numbered, answers="boxed"),
    DataFormat("regex", "--pattern", split_regex, answers="boxed", options={"pattern": "pattern"}),
    DataFormat("steps", "already a list", split_list, solution_field="steps", answers="boxed"),
    # --- agent trajectories: one instance per action (docs/agent_formats.md) ---
    # OpenAI chat messages: assistant `tool_calls` (or `function_call`), results in `tool` turns.
    DataFormat("openai-tools", "chat messages with tool_calls", chat={"actions": ("tool_calls",)}),
    # SWE-agent / SWE-smith: `<function=...>` calls (its XML parser refuses a turn with several), `<command>`
    # tags, or the last fenced block.
    DataFormat("swe-agent", "SWE-agent / SWE-smith text actions", scaffold="swe-agent", chat={
        "actions": ("xml_function", "command_tag", "fenced"), "exactly_one": ("xml_function",)}),
    # mini-swe-agent: a THOUGHT, then exactly one ```bash block (else the turn is refused and nothing runs); v2
    # ends with an `exit` turn.
    DataFormat("mini-swe-agent", "a THOUGHT and exactly one ```bash block", scaffold="mini-swe-agent", chat={
        "actions": ("bash_block",), "action_match": "one", "more_tool_roles": ("exit",)}),
    # OpenHands / SWE-Gym: OpenAI tool calls, the same calls as function-call text, or CodeAct tags.
    DataFormat("openhands", "OpenHands / SWE-Gym", scaffold="openhands", chat={
        "actions": ("tool_calls", "xml_function", "codeact")}),
    # Any chat: every built-in extractor, or the user's --action_pattern / chat format file.
    DataFormat("chat", "any chat; --action_pattern or --chat_config"),
)
DATA_FORMATS: dict[str, DataFormat] = {f.name: f for f in _FORMATS}
FORMAT_NAMES = tuple(DATA_FORMATS)
SOLUTION_FORMATS = tuple(name for name, f in DATA_FORMATS.items() if not f.agent)
AGENT_FORMATS = tuple(name for name, f in DATA_FORMATS.items() if f.agent)
FormatName = Literal[FORMAT_NAMES]  # `srl data build --format`
TRAIN_DATA_FORMATS = ("auto", "instances") + FORMAT_NAMES
TrainDataFormat = Literal[TRAIN_DATA_FORMATS]  # `srl train --data_format`: built instances, or a format above


def data_format(name: str) -> DataFormat:
    """The format called `name` (ValueError naming the known ones otherwise)."""
    try:
        return DATA_FORMATS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown data format {name!r} (expected one of: {', '.join(FORMAT_NAMES)})") from None


def format_help() -> str:
    """What `--format` says about each format."""
    solutions = ", ".join(f"{f.name} ({f.help})" for f in _FORMATS if not f.agent)
    agents = ", ".join(f"{f.name} ({f.help})" for f in _FORMATS if f.agent)
    return (f"How solutions are cut into steps: {solutions}. Agent trajectories (one instance per action, "
            f"docs/agent_formats.md): {agents}.")


def gold_kind_of(final_answer: str | None, format_name: str | None) -> str:
    """The kind of an expert's final answer for `srl.data.answers.use_number_fallback`: the kind its solution
    format states (`gsm8k` for a `#### n` line, `boxed` for MATH-style solutions). Built instances do not record
    the solution format: there (`format_name` None, "auto" or "instances") a plain number counts as GSM8K-style,
    anything else as `plain`.

    >>> gold_kind_of("72", "gsm8k"), gold_kind_of("72", "math"), gold_kind_of("72", None), gold_kind_of("x^2", None)
    ('gsm8k', 'boxed', 'gsm8k', 'plain')
    """
    kind = DATA_FORMATS[format_name].answers if format_name in DATA_FORMATS else None
    if kind:
        return kind
    text = str(final_answer).strip().replace(",", "") if final_answer is not None else ""
    return "gsm8k" if is_number(text) else "plain"
