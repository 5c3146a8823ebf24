"""The output format: what a valid response looks like, and how a response is split into its inner monologue
(`<think>...</think>`) and its action, the part the step reward compares with the expert's step.

- ``think="required"`` (the paper): the response must be `<think>...</think>` followed by a non-empty action;
  anything else is a format error (reward -1).
- ``think="optional"``: the action follows `</think>` when the model closed a monologue, else the whole
  response is the action.
- ``think="off"``: the prompt asks for the next step only and the whole response is the action.
"""

from __future__ import annotations

from dataclasses import dataclass

from srl.data.prompts import ThinkMode


@dataclass(frozen=True)
class OutputFormat:
    """What a valid response looks like.

    Args:
        think: "required" (paper), "optional" or "off"; see the module docstring.
        think_open / think_close: the monologue tags.
        solution_open / solution_close: if set, the action must be wrapped in these tags (the paper's figure
            shows `<solution>...</solution>`); the wrapper is removed before scoring.
        think_prefilled: the `<think>` opening tag is part of the prompt, so the response starts inside it.
    """

    think: ThinkMode = "required"
    think_open: str = "<think>"
    think_close: str = "</think>"
    solution_open: str | None = None
    solution_close: str | None = None
    think_prefilled: bool = False


@dataclass(frozen=True)
class Parsed:
    """A parsed response: `action` is None exactly when the format is broken, and `error` says why."""

    action: str | None
    think: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.action is not None


def _unwrap_solution(action: str, fmt: OutputFormat) -> Parsed | str:
    if not fmt.solution_open:
        return action
    start = action.find(fmt.solution_open)
    end = action.find(fmt.solution_close or "", start + len(fmt.solution_open)) if start >= 0 else -1
    if start < 0 or end < 0:
        return Parsed(None, error="missing solution tags")
    return action[start + len(fmt.solution_open):end].strip()


def parse_response(text: str, fmt: OutputFormat = OutputFormat()) -> Parsed:
    """Split a model response into monologue and action, checking the format.

    >>> parse_response("<think>48/2 = 24</think>\\nShe sold 24 clips in May.").action
    'She sold 24 clips in May.'
    >>> parse_response("She sold 24 clips in May.").error
    'no closing </think>'
    >>> parse_response("She sold 24 clips.", OutputFormat(think="optional")).action
    'She sold 24 clips.'
    """
    if not isinstance(text, str):
        return Parsed(None, error="not text")
    think = None
    if fmt.think == "off":
        action = text.strip()
    else:
        close = text.find(fmt.think_close)
        if close < 0:
            if fmt.think == "required":
                return Parsed(None, error=f"no closing {fmt.think_close}")
            action = text.strip()
            if action.startswith(fmt.think_open):  # an unclosed monologue: all of it is the "action"
                action = action[len(fmt.think_open):].strip()
        else:
            head, action = text[:close], text[close + len(fmt.think_close):]
            stripped = head.lstrip()
            if stripped.startswith(fmt.think_open):
                stripped = stripped[len(fmt.think_open):]
            elif fmt.think == "required" and not fmt.think_prefilled:
                return Parsed(None, error=f"does not start with {fmt.think_open}")
            if fmt.think == "required" and (fmt.think_open in stripped or fmt.think_close in action
                                            or fmt.think_open in action):
                return Parsed(None, error="more than one monologue")
            think, action = stripped.strip(), action.strip()
    unwrapped = _unwrap_solution(action, fmt)
    if isinstance(unwrapped, Parsed):
        return unwrapped
    if not unwrapped:
        return Parsed(None, think=think, error="empty action")
    return Parsed(unwrapped, think=think)


def completion_text(completion) -> str:
    """The text of a TRL completion: a plain string, or a chat completion (a list of messages) whose assistant
    contents are joined."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return str(completion.get("content") or "")
    if isinstance(completion, list):
        return "".join(str(m.get("content") or "") for m in completion
                       if isinstance(m, dict) and m.get("role") in (None, "assistant"))
    return ""
