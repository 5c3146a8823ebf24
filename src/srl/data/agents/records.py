"""Reading agent trajectories from records: a `ChatFormat` says where the messages are, which roles mean what and
which extractors to try; the built-in formats (`FORMATS`) are presets of it. Only resolved trajectories are kept
by default.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field, fields, replace
from typing import Any

from srl.data.agents.actions import ToolCall, render_action
from srl.data.agents.extractors import EXTRACTORS
from srl.data.agents.messages import MESSAGES_FIELDS, read_turns, render_tools
from srl.data.agents.scaffolds import (FORMAT_ERRORS, SCAFFOLD_INSTRUCTIONS, SCAFFOLD_INSTRUCTIONS_CHOICES,
                                       SCAFFOLD_INSTRUCTIONS_TEXT, SUBMIT_PATTERN, edit_scaffold_instructions,
                                       is_submit)
from srl.data.formats import AGENT_FORMATS, DATA_FORMATS, DataFormat
from srl.errors import InputError
from srl.io import Record, file_stem, read_mapping, read_records

REJECTED_TURNS = ("drop", "show")


@dataclass(frozen=True)
class ChatFormat:
    """How to read agent trajectories from records. Every field has a default that fits common data; a YAML
    or JSON file with any of these keys (`ChatFormat.from_file`) reads a new format without code.

    Args:
        messages_field: the record field holding the list of turns (None: the first of `messages`,
            `conversations`, `conversation`, `trajectory`, `history`, `turns`, `dialog` present).
        role_field: the role key of a turn (None: `role`, else `from`, else `speaker`).
        content_field: the text key of a turn (None: `content`, else `text`, `value`, `system_prompt`).
        system_roles / user_roles / assistant_roles / tool_roles: role values of each kind. User turns before
            the first assistant turn are the task; later user and tool turns are observations.
        actions: extractors tried in order on each assistant turn (see `EXTRACTORS`); the first that finds
            an action wins. A turn without an action is not an instance and is left out of the context.
        action_pattern: a regex (named group `action`, or `name` + parameter groups); if set, it replaces the
            built-in extractors (unless `actions` lists `pattern` among others).
        action_match: which matches of a text extractor are the action: `last` (SWE-agent), `first`, `all`, or
            `one`: exactly one match is required, and a turn with none or several was rejected by the scaffold
            (mini-swe-agent's rule): it is not an action.
        format_error_pattern: a regex searched in the first reply to an assistant turn; a match means the
            scaffold refused the turn (its format-error reply) and nothing ran: the turn is not an action.
            Default (every built-in format): the known replies of SWE-agent and mini-swe-agent
            (`srl.data.agents.scaffolds.FORMAT_ERRORS`), at the start of the reply.
        submit_pattern: a regex searched in a canonical action: a final action matching it is the submit/finish
            action (`--drop_submit`).
        scaffold_instructions_pattern: a regex (DOTALL, MULTILINE) whose matches in the system text and the task
            are the scaffold's own response-format instructions (`--scaffold_instructions remove|replace`).
        scaffold_instructions_text: what replaces them with `--scaffold_instructions replace`.
        exactly_one: extractors whose scaffold parser requires exactly one match (as `action_match: one`, for
            these alone), e.g. SWE-agent's XML function-call parser refuses a turn with several calls.
        command_tool: if set, a plain command becomes a call of this tool, e.g. `bash` ->
            `<function=bash><parameter=command>ls</parameter></function>` (the paper's form).
        resolved_field: field with the resolved flag, dotted for nesting (None: the first of `resolved`,
            `target`, `success`, `is_resolved` present).
        resolved_values: the values of `resolved_field` that mean resolved (any other value then means not
            resolved). Empty: booleans, 0/1 and the words true/yes/resolved/success/passed (false/no/failed/...).
        id_field: field with the trajectory id (None: `id`, `traj_id`, `trajectory_id`, `instance_id`, else
            `<file>-<record>`).
        tools_field: field with OpenAI tool definitions, listed in the system text if present.
    """

    messages_field: str | None = None
    role_field: str | None = None
    content_field: str | None = None
    system_roles: tuple[str, ...] = ("system", "developer")
    user_roles: tuple[str, ...] = ("user", "human")
    assistant_roles: tuple[str, ...] = ("assistant", "ai", "gpt", "agent", "model", "bot")
    tool_roles: tuple[str, ...] = ("tool", "function", "observation", "ipython", "environment", "env")
    actions: tuple[str, ...] = ("tool_calls", "xml_function", "codeact", "command_tag", "fenced")
    action_pattern: str | None = None
    action_match: str = "last"
    command_tool: str | None = None
    resolved_field: str | None = None
    resolved_values: tuple[str, ...] = ()
    id_field: str | None = None
    tools_field: str = "tools"
    format_error_pattern: str | None = FORMAT_ERRORS["any"]
    submit_pattern: str | None = SUBMIT_PATTERN
    scaffold_instructions_pattern: str | None = None
    scaffold_instructions_text: str = SCAFFOLD_INSTRUCTIONS_TEXT
    exactly_one: tuple[str, ...] = ()

    def __post_init__(self):
        for name in ("system_roles", "user_roles", "assistant_roles", "tool_roles", "actions", "resolved_values",
                     "exactly_one"):
            value = getattr(self, name)
            if isinstance(value, str):
                value = (value,)
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, (str, int, bool)) for v in value):
                raise InputError("expected a list of strings", field=name)
            object.__setattr__(self, name, tuple(str(v) for v in value))
        if self.action_pattern:
            if "pattern" not in self.actions:  # a pattern alone replaces the built-in extractors
                object.__setattr__(self, "actions", ("pattern",))
            self.compiled_pattern()
        elif "pattern" in self.actions:
            raise InputError("the `pattern` extractor needs action_pattern", field="actions")
        unknown = [a for a in self.actions + self.exactly_one if a not in EXTRACTORS]
        if unknown:
            raise InputError(f"unknown extractor(s) {unknown} (expected some of {list(EXTRACTORS)})", field="actions")
        if self.action_match not in ("last", "first", "all", "one"):
            raise InputError("expected last, first, all or one", field="action_match")
        for name in ("format_error_pattern", "submit_pattern", "scaffold_instructions_pattern"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise InputError("expected a regex (a string)", field=name)
            try:
                re.compile(value or "")
            except re.error as e:
                raise InputError(f"invalid regex: {e}", field=name) from None
        if not isinstance(self.scaffold_instructions_text, str):
            raise InputError("expected a string", field="scaffold_instructions_text")

    def compiled_pattern(self) -> re.Pattern:
        try:
            pattern = re.compile(self.action_pattern or "", re.MULTILINE)
        except re.error as e:
            raise InputError(f"invalid regex: {e}", field="action_pattern") from None
        if not {"action", "name"} & set(pattern.groupindex):
            raise InputError("needs a named group (?P<action>...) for a command, or (?P<name>...) for a tool name",
                             field="action_pattern")
        return pattern

    @classmethod
    def from_file(cls, path: str, **overrides: Any) -> "ChatFormat":
        """Read a format file (YAML, or JSON by extension); `overrides` that are not None win."""
        data = read_mapping(path, {f.name for f in fields(cls)}, "chat format file")
        try:
            return cls(**{**data, **{k: v for k, v in overrides.items() if v is not None}})
        except InputError as e:
            raise InputError(e.message, path=path, field=e.field) from None


def preset(fmt: DataFormat) -> ChatFormat:
    """The `ChatFormat` of a built-in agent format of `srl.data.formats`: its `chat` fields (`more_tool_roles`:
    roles added to the default tool roles), and its scaffold's response-format instructions."""
    chat = dict(fmt.chat)
    more_tool_roles = tuple(chat.pop("more_tool_roles", ()))
    if more_tool_roles:
        chat["tool_roles"] = ChatFormat.tool_roles + more_tool_roles
    if fmt.scaffold:
        chat["scaffold_instructions_pattern"] = SCAFFOLD_INSTRUCTIONS[fmt.scaffold]
    return ChatFormat(**chat)


# The built-in agent formats: presets of ChatFormat.
FORMATS: dict[str, ChatFormat] = {name: preset(DATA_FORMATS[name]) for name in AGENT_FORMATS}

RESOLVED_FIELDS = ("resolved", "target", "success", "is_resolved")
ID_FIELDS = ("id", "traj_id", "trajectory_id", "instance_id")
TRUE_WORDS = {"true", "yes", "1", "resolved", "success", "succeeded", "pass", "passed"}
FALSE_WORDS = {"false", "no", "0", "unresolved", "failure", "failed", "fail", "none", ""}


@dataclass
class AgentStep:
    """One expert action (canonical text), the expert's text around it, and what the environment answered."""

    action: str
    observation: str | None = None
    thought: str = ""
    rejected: bool = False  # a turn the scaffold refused (nothing ran), kept only to be shown as such
    submit: bool = False  # the action matches the format's `submit_pattern`


@dataclass
class AgentTrajectory:
    """An expert agent run: the system text (instructions, tool list), the task and the actions in order."""

    id: str
    task: str
    steps: list[AgentStep]
    system: str = ""
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def problem(self) -> str:  # the name the math pipeline uses (e.g. for --exclude)
        return self.task


def _lookup(data: dict, dotted: str) -> tuple[bool, Any]:
    value: Any = data
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return False, None
        value = value[part]
    return True, value


def resolved_flag(rec: Record, fmt: ChatFormat) -> bool | None:
    """The record's resolved flag (None if it has none). A value that is not a yes/no is an input error."""
    for name in (fmt.resolved_field,) if fmt.resolved_field else RESOLVED_FIELDS:
        found, value = _lookup(rec.data, name)
        if not found:
            continue
        if isinstance(value, bool):
            return value
        if isinstance(value, (int, float)) and value in (0, 1):
            return bool(value)
        if fmt.resolved_values:  # the user said which values mean resolved: any other means not
            return str(value).strip() in fmt.resolved_values
        if isinstance(value, str):
            word = value.strip().lower()
            if word in TRUE_WORDS:
                return True
            if word in FALSE_WORDS:
                return False
        if value is None:
            return False
        raise rec.error(f"cannot read {value!r} as resolved or not (list the values meaning resolved in "
                        "resolved_values of --chat_config)", name)
    return None


TURN_OUTCOMES = ("action kept", "rejected by the scaffold", "no action found", "dropped by option")


def _turn_actions(turn, fmt: ChatFormat, every: ChatFormat) -> tuple[str, list, str]:
    """(outcome, actions, thought) of one assistant turn by the format's extractors and rule alone (a format-error
    reply to it is looked at later): the first extractor that finds anything decides. `every`: `fmt` with
    `action_match: all`, for the extractors in `fmt.exactly_one`."""
    actions, thought, one = [], turn.text.strip(), fmt.action_match == "one"
    for name in fmt.actions:
        one = fmt.action_match == "one" or name in fmt.exactly_one
        actions, thought = EXTRACTORS[name](turn, every if name in fmt.exactly_one else fmt)
        if actions:
            break
    else:
        one = fmt.action_match == "one"  # nothing found: refused only where exactly one is the format's rule
    if one and len(actions) != 1:
        return "rejected by the scaffold", [], turn.text.strip()  # the scaffold's parser refuses 0 or >1 actions
    if not actions or not any(a if isinstance(a, str) else True for a in actions):
        return "no action found", [], turn.text.strip()
    return "action kept", actions, thought


def record_trajectory(rec: Record, fmt: ChatFormat, *, problem_field: str | None = None,
                      system_field: str | None = None, id_field: str | None = None, rejected_turns: str = "drop",
                      scaffold_instructions: str = "keep") -> AgentTrajectory:
    """One record -> an `AgentTrajectory`: system turns and tools -> system text; user turns before the first
    assistant turn -> task; each assistant turn with an action that ran -> a step, whose observation is every
    later user/tool/system turn up to the next assistant turn.

    An assistant turn the scaffold refused (`fmt.action_match` "one" and not exactly one action, or a first reply
    matching `fmt.format_error_pattern`) is no step: it and the replies to it are left out, or with
    `rejected_turns="show"` kept as a step marked `rejected` (its raw text, never a target). A turn without an
    action is left out with the replies to it. `meta["turns"]` counts the assistant turns by outcome."""
    messages_field, turns = read_turns(rec, fmt)
    every = replace(fmt, action_match="all") if fmt.exactly_one else fmt
    system, task, entries = [], [], []
    current: list | None = None
    started = False
    for turn in turns:
        if turn.kind == "assistant":
            started = True
            current = [*_turn_actions(turn, fmt, every), turn.text.strip(), []]
            entries.append(current)
        elif not started and turn.kind == "system":
            system.append(turn.text.strip())
        elif not started and turn.kind == "user":
            task.append(turn.text.strip())
        elif current is not None:  # an observation: the reply to the last assistant turn
            current[4].append(turn.text)
    format_error = re.compile(fmt.format_error_pattern) if fmt.format_error_pattern else None
    steps, counts = [], {outcome: 0 for outcome in TURN_OUTCOMES}
    for outcome, actions, thought, text, observations in entries:
        if format_error is not None and observations and format_error.search(observations[0]):
            outcome = "rejected by the scaffold"
        counts[outcome] += 1
        observation = "\n\n".join(observations) if observations else None
        if outcome == "action kept":
            if fmt.command_tool:
                actions = [ToolCall(fmt.command_tool, (("command", a),)) if isinstance(a, str) else a
                           for a in actions]
            action = render_action(actions)
            steps.append(AgentStep(action, observation, thought=thought, submit=is_submit(action, fmt.submit_pattern)))
        elif outcome == "rejected by the scaffold" and rejected_turns == "show":
            steps.append(AgentStep(text, observation, rejected=True))
    if problem_field:
        task = [rec.text(problem_field)]
    if not any(task):
        raise rec.error("no task: no user turn before the first assistant turn (or give --problem_field)",
                        messages_field)
    tools = rec.data.get(fmt.tools_field)
    if isinstance(tools, list) and tools:
        system.append(render_tools(tools))
    if system_field:
        system.append(rec.text(system_field, required=False) or "")
    name = file_stem(rec.path)
    id_key = id_field or fmt.id_field or next(
        (k for k in ID_FIELDS if isinstance(rec.data.get(k), int) or str(rec.data.get(k) or "").strip()), None)

    def edited(text: str) -> str:
        return edit_scaffold_instructions(text, fmt.scaffold_instructions_pattern, scaffold_instructions,
                                          fmt.scaffold_instructions_text)

    return AgentTrajectory(
        id=str(rec.text(id_key)) if id_key else f"{name}-{rec.line}",
        task=edited("\n\n".join(t for t in task if t)),
        steps=steps,
        system=edited("\n\n".join(s for s in system if s)),
        source=name,
        meta={"turns_without_action": counts["no action found"], "turns": counts},
    )


def read_agent_trajectories(source: Any, fmt: str | ChatFormat = "chat", *, resolved_only: bool = True,
                            problem_field: str | None = None, system_field: str | None = None,
                            id_field: str | None = None, file_type: str | None = None,
                            rejected_turns: str = "drop", scaffold_instructions: str = "keep"
                            ) -> Iterator[AgentTrajectory | tuple[str, str]]:
    """Agent trajectories of `source` (a path or `datasets.Dataset`, see `srl.data.trajectories.read_records`).

    Args:
        fmt: a built-in format name (`AGENT_FORMATS`) or a `ChatFormat`.
        resolved_only: yield `("skip", "not resolved")` for trajectories not marked resolved; a record without
            a resolved flag is then an input error.
        problem_field / system_field / id_field: record fields for the task, extra system text and the id.
        rejected_turns: `drop` (leave turns the scaffold refused out of the context) or `show` (keep them as steps
            marked `rejected`, shown as such and never targets); see `record_trajectory`.
        scaffold_instructions: `keep`, `remove` or `replace` the scaffold's own response-format instructions in
            the system text and the task (the format's `scaffold_instructions_pattern`).
    """
    if rejected_turns not in REJECTED_TURNS:
        raise InputError(f"expected one of {', '.join(REJECTED_TURNS)}", field="rejected_turns")
    if scaffold_instructions not in SCAFFOLD_INSTRUCTIONS_CHOICES:
        raise InputError(f"expected one of {', '.join(SCAFFOLD_INSTRUCTIONS_CHOICES)}", field="scaffold_instructions")
    if isinstance(fmt, str) and fmt not in FORMATS:
        raise ValueError(f"unknown agent format '{fmt}' (expected one of {', '.join(FORMATS)}, or a ChatFormat)")
    chat = FORMATS[fmt] if isinstance(fmt, str) else fmt
    for rec in read_records(source, file_type):
        if resolved_only:
            flag = resolved_flag(rec, chat)
            if flag is None:
                looked = chat.resolved_field or ", ".join(RESOLVED_FIELDS)
                raise rec.error(f"missing: no resolved flag (looked for {looked}); set --resolved_field, or "
                                "--resolved_only false to keep every trajectory", chat.resolved_field or "resolved")
            if not flag:
                yield ("skip", "not resolved")
                continue
        yield record_trajectory(rec, chat, problem_field=problem_field, system_field=system_field,
                                id_field=id_field, rejected_turns=rejected_turns,
                                scaffold_instructions=scaffold_instructions)
