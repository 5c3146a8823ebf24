"""Agent actions in one canonical text: a tool call is written in the function-call text form of SWE-smith /
OpenHands (the paper's form), a plain command (SWE-agent's fenced block, `<command>`) is the command itself.
`parse_action` reads the form back; `normalize_action` makes shell whitespace uniform for comparisons.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


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


def find_function_calls(text: str) -> list[tuple[ToolCall, re.Match]]:
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
    calls = find_function_calls(text[:MAX_PARSE_CHARS] if isinstance(text, str) else "")
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
