"""Reading a record's messages: each message as a `Turn` (its kind, text and structured tool calls), with one-line
errors naming the record and the field; and OpenAI tool definitions as text. (`ChatFormat` is
`srl.data.agents.records.ChatFormat`; only named in annotations here, so that the records module can import this
one.)
"""

from __future__ import annotations

import json
from typing import Any

from srl.data.agents.actions import ToolCall
from srl.data.agents.extractors import Turn
from srl.io import Record

MESSAGES_FIELDS = ("messages", "conversations", "conversation", "trajectory", "history", "turns", "dialog")
ROLE_FIELDS = ("role", "from", "speaker")
CONTENT_FIELDS = ("content", "text", "value", "system_prompt")


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


def read_turns(rec: Record, fmt: "ChatFormat") -> tuple[str, list[Turn]]:
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
        if content is None and not calls:  # only an assistant turn with tool calls may have no text
            looked = fmt.content_field or ", ".join(CONTENT_FIELDS)
            raise rec.error(f"missing: a message without a content string (looked for {looked}; set content_field "
                            "in --chat_config)", f"{where}.{content_key or fmt.content_field or CONTENT_FIELDS[0]}")
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
