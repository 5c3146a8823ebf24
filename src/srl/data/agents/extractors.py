"""Reading one assistant turn: the extractors that find its action (OpenAI `tool_calls`, function-call text,
CodeAct tags, `<command>` tags, fenced blocks, or a user regex). Each takes a `Turn` and the `ChatFormat` and
returns (actions, the rest of the text). `fmt.action_match` picks among the matches: `last`, `first`, `all`, or
`one` (all of them, and the reader rejects the turn unless there is exactly one, as mini-swe-agent's parser). (`ChatFormat` is `srl.data.agents.records.ChatFormat`; only named in
annotations here, so that the records module can import this one.)
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from srl.data.agents.actions import Action, ToolCall, find_function_calls
from srl.data.agents.scaffolds import MINI_SWE_AGENT_ACTION_RE


@dataclass
class Turn:
    """A message, normalised: its kind (system, user, assistant, tool), text, and structured tool calls."""

    kind: str
    text: str
    tool_calls: list[ToolCall] = field(default_factory=list)


def _pick(items: list, match: str) -> list:
    if not items:
        return []
    return items if match in ("all", "one") else [items[0] if match == "first" else items[-1]]


def _spans_removed(text: str, spans: list[tuple[int, int]]) -> str:
    for start, end in sorted(spans, reverse=True):
        text = text[:start] + text[end:]
    return text.strip()


def extract_tool_calls(turn: Turn, fmt: "ChatFormat") -> tuple[list[Action], str]:
    return list(turn.tool_calls), turn.text.strip()


def extract_xml_function(turn: Turn, fmt: "ChatFormat") -> tuple[list[Action], str]:
    found = _pick(find_function_calls(turn.text), fmt.action_match)
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


def extract_bash_block(turn: Turn, fmt: "ChatFormat") -> tuple[list[Action], str]:
    """mini-swe-agent's parser: `re.findall(r"```bash\\s*\\n(.*?)\\n```", text, re.DOTALL)` (or the v2 fence
    `mswea_bash_command`), each match stripped. Fences of other languages and inline backticks in the thought are
    not matches, so they never hide or replace the command."""
    found = _pick(list(MINI_SWE_AGENT_ACTION_RE.finditer(turn.text)), fmt.action_match)
    return [m.group(1).strip() for m in found], _spans_removed(turn.text, [m.span() for m in found])


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
              "command_tag": extract_command_tag, "fenced": extract_fenced, "bash_block": extract_bash_block, "pattern": extract_pattern}
