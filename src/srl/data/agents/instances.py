"""Agent instances, one per expert action: system text + task + the last m action-observation pairs in chat form
-> the action. Observations are truncated to a budget (characters, or tokens of a tokenizer) with a visible
marker, never inside a character.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from srl.data.agents.actions import parse_action
from srl.data.agents.records import AgentStep, AgentTrajectory  # noqa: F401  (AgentStep: used by the doctest)
from srl.data.instances import BuildSummary, counted_rows
from srl.data.prompts import ThinkMode
from srl.errors import InputError
from srl.io import read_string_fields


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
        rejected: a turn the scaffold refused, shown with `--rejected_turns show` (assistant turn); placeholder
            `{text}` (the turn as the expert wrote it). The scaffold's reply follows as its observation.
    """

    instructions: str | None = None
    system: str = "{agent_system}\n\n{instructions}"
    task: str = "{task}{omitted}"
    omitted: str = "\n\n({count} earlier action(s) and their observations are not shown.)"
    action: str = "{action}"
    observation: str = "{observation}"
    empty_observation: str = "(no output)"
    observation_role: str = "user"
    rejected: str = "(Rejected by the agent's scaffold, not run:)\n{text}"

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
            template.rejected.format(text="")
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


@dataclass(frozen=True)
class AgentOptions:
    """How agent trajectories become instances.

    Args:
        last_pairs: how many of the most recent action-observation pairs the prompt shows (the paper: 2).
        observation_chars: budget of one observation in characters (0: no limit).
        observation_tokens: budget of one observation in tokens of `tokenizer` (None: no token budget).
        tokenizer: the tokenizer of `observation_tokens` (an object with character offsets, e.g. a fast
            `transformers` tokenizer: `srl.models.load_tokenizer(name)` gives one).
        think: the output format the prompt asks for (as for math: required / optional / off).
        agent_system: show the trajectory's own system text and tool list before our instructions.
        previous_thoughts: show the expert's text around previous actions (as `<think>`) in their turns.
        drop_submit: the final action, if it submits or finishes the run, is not a target.
        template: the prompt template.
    """

    last_pairs: int = 2
    observation_chars: int = 4000
    observation_tokens: int | None = None
    tokenizer: Any = None
    think: ThinkMode = "required"
    agent_system: bool = True
    previous_thoughts: bool = False
    drop_submit: bool = False
    template: AgentTemplate = field(default_factory=AgentTemplate)

    def __post_init__(self):
        if self.last_pairs < 0:
            raise InputError("must be >= 0", field="last_pairs")
        if self.observation_chars < 0:
            raise InputError("must be >= 0", field="observation_chars")
        if self.observation_tokens is not None:
            if self.observation_tokens < 1:
                raise InputError("must be >= 1", field="observation_tokens")
            if self.tokenizer is None or isinstance(self.tokenizer, str):
                raise InputError("a token budget needs a tokenizer object (srl.models.load_tokenizer(name) loads "
                                 "the one of --tokenizer)", field="observation_tokens")

    def truncate(self, text: str) -> str:
        text = truncate_chars(text, self.observation_chars)
        if self.observation_tokens is not None:
            text = truncate_tokens(text, self.observation_tokens, self.tokenizer)
        return text


def _targets(traj: AgentTrajectory, options: AgentOptions) -> list[int]:
    """Indices in `traj.steps` of the actions that are targets: every action that ran (not a rejected turn),
    but the final one if it submits and `options.drop_submit`."""
    ran = [i for i, s in enumerate(traj.steps) if not s.rejected]
    if options.drop_submit and ran and traj.steps[ran[-1]].submit:
        ran.pop()
    return ran


def agent_instances(traj: AgentTrajectory, options: AgentOptions = AgentOptions()) -> list[dict[str, Any]]:
    """One instance per expert action: the prompt shows the system text, the task and the last
    `options.last_pairs` action-observation pairs as chat turns (with any rejected turn among or after them,
    marked as such); the target is the action.

    >>> t = AgentTrajectory("t1", "Fix the bug.", [AgentStep("ls", "a.py"), AgentStep("cat a.py", "x = 1")])
    >>> [(r["step_index"], r["expert_step"], [m["role"] for m in r["prompt"]]) for r in agent_instances(t)]
    [(1, 'ls', ['system', 'user']), (2, 'cat a.py', ['system', 'user', 'assistant', 'user'])]
    """
    template = options.template
    steps = traj.steps
    calls = [parse_action(s.action) is not None for s in steps if not s.rejected]
    action_format = ACTION_FORMATS["function" if calls and all(calls) else "mixed" if any(calls) else "command"]
    system = template.system_text(traj.system if options.agent_system else "", options.think, action_format)
    observations = [None if s.observation is None else options.truncate(s.observation) for s in steps]
    targets = _targets(traj, options)
    rows = []
    n = len(targets)
    for k, p in enumerate(targets, start=1):
        ran = [i for i in range(p) if not steps[i].rejected]  # the actions before the target
        shown = ran[max(0, len(ran) - options.last_pairs):] if options.last_pairs else []
        first = p if not options.last_pairs else 0 if len(shown) == len(ran) else shown[0]
        omitted = template.omitted.format(count=len(ran) - len(shown)) if len(ran) > len(shown) else ""
        prompt = [{"role": "system", "content": system},
                  {"role": "user", "content": template.task.format(task=traj.task, omitted=omitted)}]
        for j in range(first, p):
            step = steps[j]
            if step.rejected:
                content = template.rejected.format(text=step.action)
            else:
                action = step.action
                if options.previous_thoughts and step.thought:
                    action = f"<think>\n{step.thought}\n</think>\n{action}"
                content = template.action.format(action=action, thought=step.thought)
            obs = observations[j]
            prompt.append({"role": "assistant", "content": content})
            prompt.append({"role": template.observation_role,
                           "content": template.observation.format(observation=obs) if obs
                           else template.empty_observation})
        rows.append({
            "prompt": prompt,
            "expert_step": steps[p].action,
            "step_index": k,
            "num_steps": n,
            "trajectory_id": traj.id,
            "final_answer": None,
            "problem": traj.problem,
            "source": traj.source,
        })
    return rows


def build_agent_instances(items: Iterable[AgentTrajectory | tuple[str, str]], options: AgentOptions = AgentOptions(),
                          summary: BuildSummary | None = None, max_chars: int | None = None
                          ) -> Iterator[dict[str, Any]]:
    """Instances of many trajectories, counting in `summary` what was read
    and why anything was skipped: `("skip", reason)` items, trajectories without any action, and (with
    `max_chars`) trajectories with an action longer than that; and, in `summary.turns`, the assistant turns of
    every trajectory read by outcome (action kept, rejected by the scaffold, no action found, dropped by
    option)."""
    summary = summary if summary is not None else BuildSummary()

    def skip_reason(traj: AgentTrajectory) -> str | None:
        if not _targets(traj, options):
            return "no actions"
        if max_chars is not None and any(len(s.action) > max_chars for s in traj.steps if not s.rejected):
            return f"an action over {max_chars:,} characters (--max_chars)"
        return None

    def counted(items):
        for traj in items:
            if isinstance(traj, AgentTrajectory):
                for outcome, count in traj.meta.get("turns", {}).items():
                    summary.turns[outcome] += count
                dropped = sum(1 for s in traj.steps if not s.rejected) - len(_targets(traj, options))
                summary.turns["action kept"] -= dropped
                summary.turns["dropped by option"] += dropped
            yield traj

    return counted_rows(counted(items), summary, lambda traj: agent_instances(traj, options), skip_reason,
                        steps_of=lambda traj: sum(1 for s in traj.steps if not s.rejected))
