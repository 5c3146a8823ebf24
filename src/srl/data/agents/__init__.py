"""Agentic SRL: step-wise instances from multi-turn agent trajectories (the paper's software-engineering setup).

An agent trajectory is a chat: a system text, the task (e.g. a GitHub issue), then assistant turns that each
send an *action* to the environment (a tool call, a shell command) and the environment's *observation*. The
paper trains on such trajectories with one instance per expert action: the prompt is the task plus only the two
most recent action-observation pairs, the target is the action, written as
`<function=bash><parameter=command>...`. This package does that in four modules, top to bottom:

1. **Canonical actions** (`actions`). Every action becomes one text. A tool call is written in the function-call
   text form of SWE-smith / OpenHands (the paper's form)::

       <function=str_replace_editor>
       <parameter=command>view</parameter>
       <parameter=path>/testbed/arrow/arrow.py</parameter>
       </function>

   (a value containing a newline goes on its own lines; non-string values are JSON, e.g. `[791, 808]`;
   parameters keep the expert's order; several calls of one turn are joined by a newline). A plain command
   (SWE-agent's fenced block, `<command>`) is the command text itself. `parse_action` reads the form back.
2. **Reading an assistant turn** (`extractors`). Extractors find the action of a turn: OpenAI `tool_calls`,
   function-call text (`<function=...>`), CodeAct tags (`<execute_bash>`), `<command>` tags, fenced blocks (the
   last one, as SWE-agent's parser), mini-swe-agent's ```bash blocks, or a user regex. What each scaffold's
   parser accepts, refuses and answers is in `scaffolds`.
3. **Reading records** (`messages`, `records`). A `ChatFormat` says where the messages are, which roles mean what
   and which extractors to try. The built-in formats (`openai-tools`, `openhands`, `swe-agent`, `mini-swe-agent`,
   `chat`) are presets of it; an unknown format is read by a `ChatFormat` file (YAML/JSON) alone. Only resolved
   trajectories are kept by default, and only actions that ran: a turn the scaffold rejected (by its rule, or
   answered with its format-error reply) is no step (or a step marked `rejected`, shown but never a target).
4. **Instances** (`instances`). One per expert action: system text + task + the last m action-observation pairs
   in chat form -> the action. Observations are truncated to a budget (characters, or tokens of a tokenizer) with
   a visible marker, never inside a character.
"""

from srl.data.agents.actions import (MAX_PARSE_CHARS, SHELL_PARAMETERS, Action, ToolCall, normalize_action,
                                     normalize_shell, parse_action, render_action)
from srl.data.agents.extractors import EXTRACTORS, Turn
from srl.data.agents.instances import (ACTION_FORMATS, AGENT_INSTRUCTIONS, AGENT_INSTRUCTIONS_NO_THINK, AgentOptions,
                                       AgentTemplate, agent_instances, build_agent_instances,
                                       truncate_chars, truncate_tokens)
from srl.data.agents.records import (AGENT_FORMATS, FORMATS, REJECTED_TURNS, TURN_OUTCOMES, AgentStep,
                                     AgentTrajectory, ChatFormat, read_agent_trajectories, read_turns,
                                     record_trajectory, render_tools, resolved_flag)
from srl.data.agents.scaffolds import is_submit

__all__ = ["ACTION_FORMATS", "AGENT_FORMATS", "AGENT_INSTRUCTIONS", "AGENT_INSTRUCTIONS_NO_THINK", "EXTRACTORS",
           "FORMATS", "MAX_PARSE_CHARS", "REJECTED_TURNS", "TURN_OUTCOMES", "SHELL_PARAMETERS", "Action", "AgentOptions", "AgentStep", "AgentTemplate",
           "AgentTrajectory", "ChatFormat", "ToolCall", "Turn", "agent_instances", "build_agent_instances",
           "is_submit", "normalize_action", "normalize_shell", "parse_action", "read_agent_trajectories",
           "read_turns", "record_trajectory", "render_action", "render_tools", "resolved_flag", "truncate_chars",
           "truncate_tokens"]
