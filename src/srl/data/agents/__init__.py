"""Agentic SRL: step-wise instances from multi-turn agent trajectories (the paper's software-engineering setup).

An agent trajectory is a chat: a system text, the task (e.g. a GitHub issue), then assistant turns that each
send an *action* to the environment (a tool call, a shell command) and the environment's *observation*. The
paper trains on such trajectories with one instance per expert action: the prompt is the task plus only the two
most recent action-observation pairs, the target is the action, written as
`<function=bash><parameter=command>...`. This module does that in four parts, top to bottom:

1. **Canonical actions.** Every action becomes one text. A tool call is written in the function-call text
   form of SWE-smith / OpenHands (the paper's form)::

       <function=str_replace_editor>
       <parameter=command>view</parameter>
       <parameter=path>/testbed/arrow/arrow.py</parameter>
       </function>

   (a value containing a newline goes on its own lines; non-string values are JSON, e.g. `[791, 808]`;
   parameters keep the expert's order; several calls of one turn are joined by a newline). A plain command
   (SWE-agent's fenced block, `<command>`) is the command text itself. `parse_action` reads the form back.
2. **Reading an assistant turn.** Extractors find the action of a turn: OpenAI `tool_calls`, function-call
   text (`<function=...>`), CodeAct tags (`<execute_bash>`), `<command>` tags, fenced blocks (the last one,
   as SWE-agent's parser), or a user regex.
3. **Reading records.** A `ChatFormat` says where the messages are, which roles mean what and which
   extractors to try. The built-in formats (`openai-tools`, `openhands`, `swe-agent`, `chat`) are presets of
   it; an unknown format is read by a `ChatFormat` file (YAML/JSON) alone. Only resolved trajectories are
   kept by default.
4. **Instances.** One per expert action: system text + task + the last m action-observation pairs in chat
   form -> the action. Observations are truncated to a budget (characters, or tokens of a tokenizer) with a
   visible marker, never inside a character.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from typing import Any

from srl.errors import InputError
from srl.data.instances import BuildSummary
from srl.data.prompts import ThinkMode
from srl.data.trajectories import Record, read_mapping, read_records, read_string_fields

AGENT_FORMATS = ("openai-tools", "swe-agent", "openhands", "chat")


# =============================================================================================================
# 1. Canonical actions
# =============================================================================================================
@dataclass(frozen=True)
class ToolCall:
    """One function call: its name and its arguments as text, in the expert's order."""

    name: str
    arguments: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, name: str, arguments: dict[str, Any] | None = None) -> "ToolCall":
        """A call from JSON-like arguments: strings stay as they are, `None` means "not given" (dropped),
        anything else is written as JSON (`[791, 808]`, `true`, `5`)."""
        args = tuple((str(k), v if isinstance(v, str) else json.dumps(v, ensure_ascii=False))
                     for k, v in (arguments or {}).items() if v is not None)
        return cls(str(name).strip(), args)

    @property
    def text(self) -> str:
        lines = [f"<function={self.name}>"]
        for key, value in self.arguments:
            lines.append(f"<parameter={key}>\n{value}\n</parameter>" if "\n" in value
                         else f"<parameter={key}>{value}</parameter>")
        lines.append("</function>")
        return "\n".join(lines)


Action = ToolCall | str  # a tool call, or a plain command


def render_action(actions: Iterable[Action]) -> str:
    """The canonical text of one turn's actions."""
    return "\n".join(a.text if isinstance(a, ToolCall) else a for a in actions)


# `<function=NAME>` or `<function name="NAME">`, and the same two forms for parameters.
_FUNCTION_RE = re.compile(r'<function(?:=|\s+name\s*=\s*)"?([^">\n]+?)"?\s*>(.*?)</function>', re.DOTALL)
_PARAMETER_RE = re.compile(r'<parameter(?:=|\s+name\s*=\s*)"?([^">\n]+?)"?\s*>(.*?)</parameter>', re.DOTALL)
MAX_PARSE_CHARS = 200_000  # model outputs longer than this are read through their first 200k characters


def _function_calls(text: str) -> list[tuple[ToolCall, re.Match]]:
    end = text.rfind("</function>")  # past the last closing tag no call can match: not searched (linear time)
    calls = []
    for match in _FUNCTION_RE.finditer(text, 0, end + len("</function>") if end >= 0 else 0):
        args = []
        for name, value in _PARAMETER_RE.findall(match.group(2)):
            value = value[1:] if value.startswith("\n") else value  # the layout newlines of a block value
            value = value[:-1] if value.endswith("\n") else value
            args.append((name.strip(), value))
        calls.append((ToolCall(match.group(1).strip(), tuple(args)), match))
    return calls


def parse_action(text: str) -> list[ToolCall] | None:
    """The tool calls of a canonical action text, or None if it holds none (a plain command).

    >>> parse_action("<function=bash>\\n<parameter=command>ls -a</parameter>\\n</function>")
    [ToolCall(name='bash', arguments=(('command', 'ls -a'),))]
    >>> parse_action("ls -a") is None
    True
    """
    calls = _function_calls(text[:MAX_PARSE_CHARS] if isinstance(text, str) else "")
    return [call for call, _ in calls] or None


def normalize_shell(command: str) -> str:
    """Whitespace the shell does not care about, made uniform: CRLF -> LF, `\\`-newline continuations joined,
    runs of spaces/tabs outside quotes collapsed to one, trailing spaces and blank first/last lines removed.
    Leading indentation of later lines is kept (it is content in heredocs and SWE-agent `edit` blocks).
    Quotes are tracked per line, so an apostrophe in a heredoc line does not swallow the rest.

    >>> normalize_shell("  grep  -n   'a  b'   file.py \\\\\\n   | head ")
    "grep -n 'a  b' file.py | head"
    """
    text = re.sub(r"\\\r?\n[ \t]*", " ", command.replace("\r\n", "\n"))
    lines = []
    for i, line in enumerate(text.split("\n")):
        body = line.lstrip(" \t")
        indent = "" if i == 0 else line[:len(line) - len(body)]
        out, quote, escaped, space = [], None, False, False
        for ch in body:
            if quote is None and not escaped and ch in " \t":
                space = True
                continue
            if space:
                out.append(" ")
                space = False
            out.append(ch)
            if escaped:
                escaped = False
            elif ch == "\\" and quote != "'":
                escaped = True
            elif quote is None and ch in "'\"":
                quote = ch
            elif ch == quote:
                quote = None
        lines.append(indent + "".join(out) if out else "")
    return "\n".join(lines).strip("\n")


SHELL_PARAMETERS = ("command", "cmd")


def normalize_action(text: str, shell_parameters: tuple[str, ...] = SHELL_PARAMETERS) -> str:
    """`normalize_shell` applied where the text is shell: a plain command, or the `command` parameters of
    tool calls (other parameters, e.g. `old_str`, keep their whitespace)."""
    calls = parse_action(text)
    if calls is None:
        return normalize_shell(text)
    return render_action(ToolCall(c.name, tuple((k, normalize_shell(v) if k in shell_parameters else v)
                                                  for k, v in c.arguments)) for c in calls)


# =============================================================================================================
# 2. Reading one assistant turn: the extractors
# =============================================================================================================
@dataclass
class Turn:
    """A message, normalised: its kind (system, user, assistant, tool), text, and structured tool calls."""

    kind: str
    text: str
    tool_calls: list[ToolCall] = field(default_factory=list)


def _pick(items: list, match: str) -> list:
    if not items:
        return []
    return items if match == "all" else [items[0] if match == "first" else items[-1]]


def _spans_removed(text: str, spans: list[tuple[int, int]]) -> str:
    for start, end in sorted(spans, reverse=True):
        text = text[:start] + text[end:]
    return text.strip()


def extract_tool_calls(turn: Turn, fmt: "ChatFormat") -> tuple[list[Action], str]:
    return list(turn.tool_calls), turn.text.strip()


def extract_xml_function(turn: Turn, fmt: "ChatFormat") -> tuple[list[Action], str]:
    found = _pick(_function_calls(turn.text), fmt.action_match)
    return [c for c, _ in found], _spans_removed(turn.text, [m.span() for _, m in found])


_CODEACT = {"execute_bash": ("execute_bash", "command"), "execute_ipython": ("execute_ipython_cell", "code")}
_CODEACT_RE = re.compile(r"<(execute_bash|execute_ipython)>(.*?)</\1>", re.DOTALL)


def extract_codeact(turn: Turn, fmt: "ChatFormat") -> tuple[list[Action], str]:
    """OpenHands CodeAct tags: `<execute_bash>cmd</execute_bash>` -> execute_bash(command=cmd),
    `<execute_ipython>code</execute_ipython>` -> execute_ipython_cell(code=code)."""
    found = _pick(list(_CODEACT_RE.finditer(turn.text)), fmt.action_match)
    calls = [ToolCall(_CODEACT[m.group(1)][0], ((_CODEACT[m.group(1)][1], m.group(2).strip()),)) for m in found]
    return calls, _spans_removed(turn.text, [m.span() for m in found])


_COMMAND_TAG_RE = re.compile(r"<command>(.*?)</command>", re.DOTALL)


def extract_command_tag(turn: Turn, fmt: "ChatFormat") -> tuple[list[Action], str]:
    found = _pick([m for m in _COMMAND_TAG_RE.finditer(turn.text) if m.group(1).strip()], fmt.action_match)
    return [m.group(1).strip() for m in found], _spans_removed(turn.text, [m.span() for m in found])


_FENCE_RE = re.compile(r"^```(\S*)\s*\n|^```\s*$", re.MULTILINE)


def extract_fenced(turn: Turn, fmt: "ChatFormat") -> tuple[list[Action], str]:
    """Fenced code blocks (```` ``` ```` or ```` ```bash ````) that are not nested in another block, as
    SWE-agent's `ThoughtActionParser` reads them; by default the last one is the action."""
    stack, blocks = [], []
    for match in _FENCE_RE.finditer(turn.text):
        if stack and not match.group(1):  # a bare fence closes the innermost open block
            start = stack.pop()
            if not stack:
                blocks.append((start, match))
        elif match.group(1) is not None:
            stack.append(match)
    blocks = [(s, e) for s, e in blocks if turn.text[s.end():e.start()].strip()]
    found = _pick(blocks, fmt.action_match)
    return ([turn.text[s.end():e.start()].strip() for s, e in found],
            _spans_removed(turn.text, [(s.start(), e.end()) for s, e in found]))


def extract_pattern(turn: Turn, fmt: "ChatFormat") -> tuple[list[Action], str]:
    """The user's regex: group `action` is a plain command; or group `name` is a tool and every other named
    group a parameter (a group `arguments` holding a JSON object is expanded into parameters)."""
    found = _pick(list(fmt.compiled_pattern().finditer(turn.text)), fmt.action_match)
    actions: list[Action] = []
    for m in found:
        groups = {k: v for k, v in m.groupdict().items() if v is not None}
        if "name" in groups:
            args: dict[str, Any] = {}
            for key, value in groups.items():
                if key == "name":
                    continue
                try:
                    parsed = json.loads(value) if key == "arguments" else None
                except json.JSONDecodeError:
                    parsed = None
                if isinstance(parsed, dict):
                    args.update(parsed)
                else:
                    args[key] = value.strip()
            actions.append(ToolCall.of(groups["name"], args))
        elif groups.get("action", "").strip():
            actions.append(groups["action"].strip())
    return actions, _spans_removed(turn.text, [m.span() for m in found])


EXTRACTORS = {"tool_calls": extract_tool_calls, "xml_function": extract_xml_function, "codeact": extract_codeact,
              "command_tag": extract_command_tag, "fenced": extract_fenced, "pattern": extract_pattern}


# =============================================================================================================
# 3. Reading records
# =============================================================================================================
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
        action_match: which matches of a text extractor are the action: `last` (SWE-agent), `first`, `all`.
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

    def __post_init__(self):
        for name in ("system_roles", "user_roles", "assistant_roles", "tool_roles", "actions", "resolved_values"):
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
        unknown = [a for a in self.actions if a not in EXTRACTORS]
        if unknown:
            raise InputError(f"unknown extractor(s) {unknown} (expected some of {list(EXTRACTORS)})", field="actions")
        if self.action_match not in ("last", "first", "all"):
            raise InputError("expected last, first or all", field="action_match")

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


# The built-in formats: presets of ChatFormat.
FORMATS: dict[str, ChatFormat] = {
    # OpenAI chat messages: assistant `tool_calls` (or `function_call`), results in `tool` turns.
    "openai-tools": ChatFormat(actions=("tool_calls",)),
    # OpenHands / SWE-Gym: OpenAI tool calls, or the same calls as function-call text, or CodeAct tags.
    "openhands": ChatFormat(actions=("tool_calls", "xml_function", "codeact")),
    # SWE-agent / SWE-smith: text actions: `<function=...>` calls, `<command>` tags, or the last fenced block.
    "swe-agent": ChatFormat(actions=("xml_function", "command_tag", "fenced")),
    # Any chat: every built-in extractor, or the user's --action_pattern / chat format file.
    "chat": ChatFormat(),
}

MESSAGES_FIELDS = ("messages", "conversations", "conversation", "trajectory", "history", "turns", "dialog")
ROLE_FIELDS = ("role", "from", "speaker")
CONTENT_FIELDS = ("content", "text", "value", "system_prompt")
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


def _first_key(data: dict, configured: str | None, candidates: tuple[str, ...]) -> str | None:
    if configured:
        return configured if configured in data else None
    return next((k for k in candidates if k in data), None)


def _content_text(rec: Record, where: str, content: Any, calls: list[ToolCall]) -> str:
    """Message content as text: a string, or a list of parts (`text` parts joined; Anthropic `tool_use`
    parts become calls and `tool_result` parts text)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for j, part in enumerate(content):
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict) and part.get("type") == "tool_use":
                calls.append(ToolCall.of(part.get("name") or "", part.get("input") or {}))
            elif isinstance(part, dict) and part.get("type") == "tool_result":
                texts.append(_content_text(rec, f"{where}[{j}].content", part.get("content"), calls))
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                texts.append(part["text"])
        return "\n".join(texts)
    raise rec.error(f"expected text or a list of parts, got {type(content).__name__}", where)


def _openai_calls(rec: Record, where: str, message: dict) -> list[ToolCall]:
    raw = message.get("tool_calls") or []
    if message.get("function_call"):  # the legacy single call
        raw = list(raw) + [{"function": message["function_call"]}]
    if not isinstance(raw, list):
        raise rec.error("expected a list of tool calls", f"{where}.tool_calls")
    calls = []
    for j, call in enumerate(raw):
        spot = f"{where}.tool_calls[{j}]"
        fn = call.get("function", call) if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"].strip():
            raise rec.error("a tool call without a function name", spot)
        args = fn.get("arguments", fn.get("parameters"))
        if isinstance(args, str):
            try:
                args = json.loads(args) if args.strip() else {}
            except json.JSONDecodeError as e:
                raise rec.error(f"arguments are not valid JSON: {e.msg} (column {e.colno})",
                                f"{spot}.function.arguments") from None
        if args is not None and not isinstance(args, dict):
            raise rec.error(f"arguments must be a JSON object, got {type(args).__name__}", f"{spot}.function.arguments")
        calls.append(ToolCall.of(fn["name"], args))
    return calls


def read_turns(rec: Record, fmt: ChatFormat) -> tuple[str, list[Turn]]:
    """The record's messages as `Turn`s (and the name of the messages field, for error messages)."""
    name = _first_key(rec.data, fmt.messages_field, MESSAGES_FIELDS)
    if name is None:
        wanted = fmt.messages_field or f"one of {', '.join(MESSAGES_FIELDS)}"
        raise rec.error(f"missing: no list of messages (looked for {wanted}; set --messages_field)",
                        fmt.messages_field or MESSAGES_FIELDS[0])
    messages = rec.data[name]
    if not isinstance(messages, list) or not messages:
        raise rec.error("expected a non-empty list of messages", name)
    kinds = {**{r: "system" for r in fmt.system_roles}, **{r: "user" for r in fmt.user_roles},
             **{r: "assistant" for r in fmt.assistant_roles}, **{r: "tool" for r in fmt.tool_roles}}
    turns = []
    for i, message in enumerate(messages):
        where = f"{name}[{i}]"
        if not isinstance(message, dict):
            raise rec.error(f"expected an object, got {type(message).__name__}", where)
        role_key = _first_key(message, fmt.role_field, ROLE_FIELDS)
        if role_key is None:
            raise rec.error(f"no role (looked for {fmt.role_field or ', '.join(ROLE_FIELDS)}; set role_field)", where)
        role = message[role_key]
        if not isinstance(role, str) or role not in kinds:
            raise rec.error(f"unknown role {role!r} (map it with system_roles, user_roles, assistant_roles or "
                            "tool_roles in --chat_config)", f"{where}.{role_key}")
        calls = _openai_calls(rec, where, message) if kinds[role] == "assistant" else []
        content_key = fmt.content_field or next((k for k in CONTENT_FIELDS if message.get(k) is not None),
                                                _first_key(message, None, CONTENT_FIELDS))  # nebius: system_prompt
        content = message.get(content_key) if content_key else None
        text = _content_text(rec, f"{where}.{content_key}", content, calls)
        turns.append(Turn(kinds[role], text, calls))
    return name, turns


def render_tools(tools: list) -> str:
    """OpenAI tool definitions as text, in the layout SWE-smith's system prompts use."""
    lines = ["You have access to the following functions:", ""]
    for i, tool in enumerate((t for t in tools if isinstance(t, dict)), start=1):
        fn = tool.get("function") if isinstance(tool.get("function"), dict) else tool
        lines += [f"---- BEGIN FUNCTION #{i}: {fn.get('name')} ----",
                  f"Description: {str(fn.get('description') or '').strip()}"]
        params = fn.get("parameters") if isinstance(fn.get("parameters"), dict) else {}
        props = {k: v for k, v in (params.get("properties") or {}).items() if isinstance(v, dict)}
        required = set(params.get("required") or [])
        if props:
            lines += ["", "Parameters:"]
            for j, (pname, p) in enumerate(props.items(), start=1):
                need = "required" if pname in required else "optional"
                lines.append(f"  ({j}) {pname} ({p.get('type') or 'any'}, {need}): "
                             f"{str(p.get('description') or '').strip()}")
                if p.get("enum"):
                    lines.append("Allowed values: [" + ", ".join(f"`{v}`" for v in p["enum"]) + "]")
        else:
            lines.append("No parameters are required for this function.")
        lines += [f"---- END FUNCTION #{i} ----", ""]
    return "\n".join(lines).rstrip()


def record_trajectory(rec: Record, fmt: ChatFormat, *, problem_field: str | None = None,
                      system_field: str | None = None, id_field: str | None = None) -> AgentTrajectory:
    """One record -> an `AgentTrajectory`: system turns and tools -> system text; user turns before the first
    assistant turn -> task; each assistant turn with an action -> a step, whose observation is every later
    user/tool/system turn up to the next assistant turn."""
    messages_field, turns = read_turns(rec, fmt)
    extractors = [EXTRACTORS[name] for name in fmt.actions]
    system, task, steps, without_action = [], [], [], 0
    current: tuple[AgentStep, list[str]] | None = None
    started = False
    for turn in turns:
        if turn.kind == "assistant":
            started = True
            actions, thought = [], turn.text.strip()
            for extract in extractors:
                actions, thought = extract(turn, fmt)
                if actions:
                    break
            if not actions:
                without_action += 1
                current = None
                continue
            if fmt.command_tool:
                actions = [ToolCall(fmt.command_tool, (("command", a),)) if isinstance(a, str) else a
                           for a in actions]
            current = (AgentStep(render_action(actions), thought=thought), [])
            steps.append(current)
        elif not started and turn.kind == "system":
            system.append(turn.text.strip())
        elif not started and turn.kind == "user":
            task.append(turn.text.strip())
        elif current is not None:  # an observation (the answer to a turn without an action is dropped)
            current[1].append(turn.text)
    for step, observations in steps:
        step.observation = "\n\n".join(observations) if observations else None
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
    name = os.path.splitext(os.path.basename(rec.path))[0]
    id_key = id_field or fmt.id_field or next(
        (k for k in ID_FIELDS if isinstance(rec.data.get(k), int) or str(rec.data.get(k) or "").strip()), None)
    return AgentTrajectory(
        id=str(rec.text(id_key)) if id_key else f"{name}-{rec.line}",
        task="\n\n".join(t for t in task if t),
        steps=[step for step, _ in steps],
        system="\n\n".join(s for s in system if s),
        source=name,
        meta={"turns_without_action": without_action},
    )


def read_agent_trajectories(source: Any, fmt: str | ChatFormat = "chat", *, resolved_only: bool = True,
                            problem_field: str | None = None, system_field: str | None = None,
                            id_field: str | None = None, file_type: str | None = None
                            ) -> Iterator[AgentTrajectory | tuple[str, str]]:
    """Agent trajectories of `source` (a path or `datasets.Dataset`, see `srl.data.trajectories.read_records`).

    Args:
        fmt: a built-in format name (`AGENT_FORMATS`) or a `ChatFormat`.
        resolved_only: yield `("skip", "not resolved")` for trajectories not marked resolved; a record without
            a resolved flag is then an input error.
        problem_field / system_field / id_field: record fields for the task, extra system text and the id.
    """
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
                                id_field=id_field)


# =============================================================================================================
# 4. Instances
# =============================================================================================================
# Our adaptation of the paper's system prompt (Appendix B.2.1) to agents; the paper does not print its SWE one.
AGENT_INSTRUCTIONS = (
    "You are a helpful assistant acting as an agent in a computer environment. A user will provide a task and, "
    "possibly, the most recent actions taken so far with their observations (the environment's output). Your "
    "task is to continue by providing the very next action.\n"
    "\n"
    "A user will ask you to solve a task. You should first draft your thinking process (inner monologue). Then, "
    "generate the action.\n"
    "\n"
    "Your response format must follow the template below:\n"
    "<think>\n"
    "Your thoughts or/and draft, like working through an exercise on scratch paper. Be as casual and as long as you "
    "want until you are confident to generate a correct action.\n"
    "</think>\n"
    "Provide only the single, next action. Do not solve the entire task.\n"
    "\n"
    "{action_format}"
)
AGENT_INSTRUCTIONS_NO_THINK = (
    "You are a helpful assistant acting as an agent in a computer environment. A user will provide a task and, "
    "possibly, the most recent actions taken so far with their observations (the environment's output). Your "
    "task is to continue by providing the very next action.\n"
    "\n"
    "Provide only the single, next action. Do not solve the entire task.\n"
    "\n"
    "{action_format}"
)
_CALL_FORM = "<function=FUNCTION_NAME>\n<parameter=PARAMETER_NAME>value</parameter>\n</function>"
ACTION_FORMATS = {  # how the action is written, by the kind of the trajectory's actions
    "function": "Write the action as one function call (several only if they are independent):\n" + _CALL_FORM,
    "command": "Write the action as the command alone, exactly as it is sent to the environment (no code fences).",
    "mixed": ("Write the action as the command alone, exactly as it is sent to the environment (no code fences), "
              "or as one function call:\n" + _CALL_FORM),
}


@dataclass(frozen=True)
class AgentTemplate:
    """How an agent instance is shown. `str.format` templates; a template file (YAML/JSON) overrides them.

    Args:
        instructions: our instructions (None: `AGENT_INSTRUCTIONS`, or its no-think variant for think="off");
            placeholder `{action_format}`.
        system: the system turn; placeholders `{agent_system}` (the trajectory's own system text and tool
            list, empty with agent_system=False) and `{instructions}`.
        task: the first user turn; placeholders `{task}`, `{omitted}`.
        omitted: appended to the task when earlier pairs are not shown; placeholder `{count}`.
        action: a previous expert action (assistant turn); placeholders `{action}`, `{thought}`.
        observation: an observation turn; placeholder `{observation}`. `empty_observation` if there was none.
        observation_role: the role of observation turns ("user", or "tool" for templates that accept it).
    """

    instructions: str | None = None
    system: str = "{agent_system}\n\n{instructions}"
    task: str = "{task}{omitted}"
    omitted: str = "\n\n({count} earlier action(s) and their observations are not shown.)"
    action: str = "{action}"
    observation: str = "{observation}"
    empty_observation: str = "(no output)"
    observation_role: str = "user"

    def system_text(self, agent_system: str, think: ThinkMode, action_format: str) -> str:
        instructions = self.instructions or (AGENT_INSTRUCTIONS_NO_THINK if think == "off" else AGENT_INSTRUCTIONS)
        instructions = instructions.format(action_format=action_format)
        if not agent_system:
            return instructions
        return self.system.format(agent_system=agent_system, instructions=instructions)

    @classmethod
    def from_file(cls, path: str) -> "AgentTemplate":
        """Read a template file: YAML (or JSON by extension) with keys among the fields above."""
        template = read_string_fields(cls, path, "template file")
        try:  # fail now, not in the middle of a build
            template.system_text("x", "required", "y")
            template.task.format(task="", omitted="")
            template.omitted.format(count=1)
            template.action.format(action="", thought="")
            template.observation.format(observation="")
        except (KeyError, IndexError, ValueError) as e:
            raise InputError(f"bad placeholder {e}", path=path) from None
        return template


def truncate_chars(text: str, budget: int) -> str:
    """`text` cut to `budget` characters in the middle (head and tail kept, at line ends when one is near),
    with a visible marker; never inside a character (a combining mark stays with its base, CRLF whole)."""
    if budget <= 0 or len(text) <= budget:
        return text
    head, tail = budget - budget // 2, budget // 2
    newline = text.rfind("\n", 0, head)
    if newline >= head * 0.8:
        head = newline + 1
    start = len(text) - tail
    newline = text.find("\n", start, start + max(tail // 5, 1))
    if newline >= 0:
        start = newline + 1
    head, start = _char_boundary(text, head), _char_boundary(text, start)
    return _with_marker(text[:head], f"[... {start - head:,} characters truncated ...]", text[start:])


def _with_marker(head: str, marker: str, tail: str) -> str:
    """The marker on a line of its own between head and tail."""
    separator = "" if not head or head.endswith("\n") else "\n"
    return f"{head}{separator}{marker}\n{tail}"


def _char_boundary(text: str, i: int) -> int:
    """Move a cut position left so that it does not separate a combining mark, or CR LF."""
    while 0 < i < len(text) and (unicodedata.combining(text[i]) or text[i - 1:i + 1] == "\r\n"
                                 or 0xDC00 <= ord(text[i]) <= 0xDFFF):
        i -= 1
    return i


def truncate_tokens(text: str, budget: int, tokenizer) -> str:
    """`text` cut to `budget` tokens of `tokenizer` in the middle, with a visible marker. Cuts fall on the
    character offsets of token boundaries, so a character split over several byte tokens is never cut."""
    if budget <= 0 or not text:
        return text
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    offsets = enc["offset_mapping"]
    n = len(offsets)
    if n <= budget:
        return text
    head, tail = budget - budget // 2, budget // 2
    end = offsets[head - 1][1] if head else 0
    start = offsets[n - tail][0] if tail else len(text)
    start = max(start, end)
    end, start = _char_boundary(text, end), _char_boundary(text, start)
    return _with_marker(text[:end], f"[... {n - head - tail:,} tokens truncated ...]", text[start:])


def load_tokenizer(name: str):
    """A fast tokenizer for token budgets: `tiny`, a known model name, a folder or a cached Hub id."""
    from srl.models import TINY, resolve_model

    try:
        path = resolve_model(name)
    except InputError as e:
        raise InputError(e.message, path=e.path, field="tokenizer") from None
    if path == TINY:
        from srl.tiny import tiny_tokenizer

        return tiny_tokenizer()
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if not tokenizer.is_fast:
        raise InputError("token budgets need a fast tokenizer (with character offsets)", path=name, field="tokenizer")
    return tokenizer


@dataclass(frozen=True)
class AgentOptions:
    """How agent trajectories become instances.

    Args:
        last_pairs: how many of the most recent action-observation pairs the prompt shows (the paper: 2).
        observation_chars: budget of one observation in characters (0: no limit).
        observation_tokens: budget of one observation in tokens of `tokenizer` (None: no token budget).
        tokenizer: a tokenizer object or name (see `load_tokenizer`), needed for `observation_tokens`.
        think: the output format the prompt asks for (as for math: required / optional / off).
        agent_system: show the trajectory's own system text and tool list before our instructions.
        previous_thoughts: show the expert's text around previous actions (as `<think>`) in their turns.
        template: the prompt template.
    """

    last_pairs: int = 2
    observation_chars: int = 4000
    observation_tokens: int | None = None
    tokenizer: Any = None
    think: ThinkMode = "required"
    agent_system: bool = True
    previous_thoughts: bool = False
    template: AgentTemplate = field(default_factory=AgentTemplate)

    def __post_init__(self):
        if self.last_pairs < 0:
            raise InputError("must be >= 0", field="last_pairs")
        if self.observation_chars < 0:
            raise InputError("must be >= 0", field="observation_chars")
        if self.observation_tokens is not None:
            if self.observation_tokens < 1:
                raise InputError("must be >= 1", field="observation_tokens")
            if self.tokenizer is None:
                raise InputError("a token budget needs --tokenizer (a model name or folder)",
                                 field="observation_tokens")
            if isinstance(self.tokenizer, str):
                object.__setattr__(self, "tokenizer", load_tokenizer(self.tokenizer))

    def truncate(self, text: str) -> str:
        text = truncate_chars(text, self.observation_chars)
        if self.observation_tokens is not None:
            text = truncate_tokens(text, self.observation_tokens, self.tokenizer)
        return text


def agent_instances(traj: AgentTrajectory, options: AgentOptions = AgentOptions()) -> list[dict[str, Any]]:
    """One instance per expert action: the prompt shows the system text, the task and the last
    `options.last_pairs` action-observation pairs as chat turns; the target is the action.

    >>> t = AgentTrajectory("t1", "Fix the bug.", [AgentStep("ls", "a.py"), AgentStep("cat a.py", "x = 1")])
    >>> [(r["step_index"], r["expert_step"], [m["role"] for m in r["prompt"]]) for r in agent_instances(t)]
    [(1, 'ls', ['system', 'user']), (2, 'cat a.py', ['system', 'user', 'assistant', 'user'])]
    """
    template = options.template
    calls = [parse_action(s.action) is not None for s in traj.steps]
    action_format = ACTION_FORMATS["function" if all(calls) else "mixed" if any(calls) else "command"]
    system = template.system_text(traj.system if options.agent_system else "", options.think, action_format)
    observations = [None if s.observation is None else options.truncate(s.observation) for s in traj.steps]
    rows = []
    n = len(traj.steps)
    for k in range(1, n + 1):
        first = max(1, k - options.last_pairs)
        omitted = template.omitted.format(count=first - 1) if first > 1 else ""
        prompt = [{"role": "system", "content": system},
                  {"role": "user", "content": template.task.format(task=traj.task, omitted=omitted)}]
        for j in range(first, k):
            step = traj.steps[j - 1]
            action = step.action
            if options.previous_thoughts and step.thought:
                action = f"<think>\n{step.thought}\n</think>\n{action}"
            obs = observations[j - 1]
            prompt.append({"role": "assistant", "content": template.action.format(action=action, thought=step.thought)})
            prompt.append({"role": template.observation_role,
                           "content": template.observation.format(observation=obs) if obs
                           else template.empty_observation})
        rows.append({
            "prompt": prompt,
            "expert_step": traj.steps[k - 1].action,
            "step_index": k,
            "num_steps": n,
            "trajectory_id": traj.id,
            "final_answer": None,
            "problem": traj.task,
            "source": traj.source,
        })
    return rows


def build_agent_instances(items: Iterable[AgentTrajectory | tuple[str, str]], options: AgentOptions = AgentOptions(),
                          summary: BuildSummary | None = None, max_chars: int | None = None
                          ) -> Iterator[dict[str, Any]]:
    """Instances of many trajectories, counting in `summary` what was read
    and why anything was skipped: `("skip", reason)` items, trajectories without any action, and (with
    `max_chars`) trajectories with an action longer than that."""
    summary = summary if summary is not None else BuildSummary()
    for traj in items:
        summary.read += 1
        if isinstance(traj, tuple):
            summary.skipped[traj[1]] += 1
            continue
        if not traj.steps:
            summary.skipped["no actions"] += 1
            continue
        if max_chars is not None and any(len(s.action) > max_chars for s in traj.steps):
            summary.skipped[f"an action over {max_chars:,} characters (--max_chars)"] += 1
            continue
        rows = agent_instances(traj, options)
        summary.steps_per_trajectory.append(len(traj.steps))
        summary.instances += len(rows)
        yield from rows
