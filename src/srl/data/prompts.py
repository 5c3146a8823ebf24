"""Prompts and output parsing: the paper's system prompt, the user turn of a step instance, and how a model
response is split into its inner monologue (`<think>...</think>`) and its action.

The format check is configurable because small models rarely write the paper's tags (see `docs/format.md`):

- ``think="required"`` (the paper): the response must be `<think>...</think>` followed by a non-empty action;
  anything else is a format error (reward -1).
- ``think="optional"``: the action follows `</think>` when the model closed a monologue, else the whole
  response is the action.
- ``think="off"``: the prompt asks for the next step only and the whole response is the action.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ThinkMode = Literal["required", "optional", "off"]
THINK_MODES = ("required", "optional", "off")

# Appendix B.2.1 of the paper, verbatim.
SYSTEM_PROMPT = (
    "You are a helpful assistant for solving mathematical problems. A user will provide a math problem, which may "
    "include a partial solution. Your task is to continue the solution by providing the very next logical step.\n"
    "\n"
    "A user will ask you to solve a task. You should first draft your thinking process (inner monologue). Then, "
    "generate the solution.\n"
    "\n"
    "Your response format must follow the template below:\n"
    "<think>\n"
    "Your thoughts or/and draft, like working through an exercise on scratch paper. Be as casual and as long as you "
    "want until you are confident to generate a correct solution.\n"
    "</think>\n"
    "Provide only the single, next step to continue the solution. Do not solve the entire problem."
)

# The same instructions without the monologue, for think="off".
SYSTEM_PROMPT_NO_THINK = (
    "You are a helpful assistant for solving mathematical problems. A user will provide a math problem, which may "
    "include a partial solution. Your task is to continue the solution by providing the very next logical step.\n"
    "\n"
    "Provide only the single, next step to continue the solution. Do not solve the entire problem."
)

# The paper's evaluation prompt (Section 5 / Qwen2.5-Math conventions), used by RLVR and evaluation.
EVAL_SYSTEM_PROMPT = (
    "Please reason step by step, and put your final answer within \\boxed{}. You can draft your thinking process "
    "inside <think> </think> tags anywhere. This is your 'scratch paper'."
)


@dataclass(frozen=True)
class PromptTemplate:
    """How a step instance is shown to the model. The paper prints the system prompt but not the user turn;
    the user turn below is our choice. Fields are `str.format` templates; a template file (YAML or JSON with
    any of these keys) overrides them.

    Args:
        system: system prompt; None means the paper's (or its no-think variant for think="off").
        user: the user turn; placeholders `{problem}`, `{previous_steps}`, `{step_number}`, `{title_hint}`.
        step: one previous expert step; placeholders `{number}`, `{text}`.
        no_previous: shown as `{previous_steps}` when the model writes the first step.
        title_hint: shown as `{title_hint}` when the next step's title is given; placeholder `{title}`.
    """

    system: str | None = None
    user: str = "Problem:\n{problem}\n\nSolution so far:\n{previous_steps}\n\nWrite step {step_number} only.{title_hint}"
    step: str = "{number}. {text}"
    no_previous: str = "(no steps yet)"
    title_hint: str = "\nIts title is: {title}"

    def system_prompt(self, think: ThinkMode = "required") -> str:
        if self.system is not None:
            return self.system
        return SYSTEM_PROMPT_NO_THINK if think == "off" else SYSTEM_PROMPT

    @classmethod
    def from_file(cls, path: str) -> "PromptTemplate":
        """Read a template file: YAML or JSON with keys among system, user, step, no_previous, title_hint."""
        from srl.errors import InputError
        from srl.data.trajectories import read_string_fields

        template = read_string_fields(cls, path, "template file")
        try:  # fail now, not in the middle of a build
            template.user.format(problem="", previous_steps="", step_number=1, title_hint="")
            template.step.format(number=1, text="")
            template.title_hint.format(title="")
        except (KeyError, IndexError, ValueError) as e:
            raise InputError(f"bad placeholder {e} (use {{problem}}, {{previous_steps}}, {{step_number}}, "
                             "{{title_hint}}, {{number}}, {{text}}, {{title}})", path=path) from None
        return template

    def user_turn(self, problem: str, previous: list[str], step_number: int, first_number: int = 1,
                  title: str | None = None) -> str:
        """Render the user turn. `previous` are the shown expert steps, numbered from `first_number`."""
        shown = "\n".join(self.step.format(number=first_number + i, text=t) for i, t in enumerate(previous))
        hint = self.title_hint.format(title=title) if title else ""
        return self.user.format(problem=problem, previous_steps=shown or self.no_previous,
                                step_number=step_number, title_hint=hint)


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
