"""Prompts: the paper's system prompts and the user turn of a step instance (`PromptTemplate`).

`ThinkMode` is the output format a prompt asks for; checking a response against it is `srl.rewards.format`.
Small models rarely write the paper's tags, so it is configurable (see `docs/format.md`):

- ``think="required"`` (the paper): the response must be `<think>...</think>` followed by a non-empty action;
  anything else is a format error (reward -1).
- ``think="optional"``: the action follows `</think>` when the model closed a monologue, else the whole
  response is the action.
- ``think="off"``: the prompt asks for the next step only and the whole response is the action.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from srl.errors import InputError
from srl.io import read_string_fields

THINK_MODES = ("required", "optional", "off")
ThinkMode = Literal[THINK_MODES]  # the one spelling of the choices: option types, CLI choices and checks use these

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
