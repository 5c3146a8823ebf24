"""What the built-in formats know about the agent scaffolds that wrote them: how each scaffold's parser finds the
action, the reply it sends when it refuses a turn (a format error: nothing ran), what its final submit action
looks like, and where its own response-format instructions sit in the system text and the task.

Sources (read from the scaffolds' code):

- **mini-swe-agent** (`DefaultAgent.parse_action` in v1, `parse_regex_actions` in v2): the actions are
  `re.findall(action_regex, content, re.DOTALL)` with `action_regex` = ```` ```bash\\s*\\n(.*?)\\n``` ````
  (```` ```mswea_bash_command ```` from v2 on), each stripped; anything but exactly one match raises a
  `FormatError` whose reply starts "Please always provide EXACTLY ONE action in triple backticks" (v1) or
  "Format error:" (v2), and nothing runs. It submits with `echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT` (older:
  `MINI_SWE_AGENT_FINAL_OUTPUT`).
- **SWE-agent** (`sweagent/tools/parsing.py`): `ThoughtActionParser` takes the last top-level fenced block,
  `XMLThoughtActionParser` the last `<command>` tag, `FunctionCallingParser` exactly one tool call; a refused turn
  gets a reply starting "Your output was not formatted correctly", "Your last output did not use any tool
  calls", "Your last output included multiple tool calls" or "Your action could not be parsed properly"; a
  command with a syntax error or a blocked command does not run either ("Your bash command contained syntax
  errors and was NOT executed", "Operation '...' is not supported by this environment"). It submits with
  `submit`.
- **OpenHands / OpenAI tools**: structured tool calls; a turn without one is a message (OpenHands answers "Please
  continue working on the task"), i.e. a turn without an action. They finish with the `finish` tool. For models
  without function calling (and in SFT sets converted that way) OpenHands writes the calls as text
  (`openhands/llm/fn_call_converter.py`): `SYSTEM_PROMPT_SUFFIX_TEMPLATE` appends the function descriptions, the
  `<function=...>` format and an `<IMPORTANT>` reminder to the system text, and the first user turn is wrapped in
  an in-context example ("Here's a running example ... NEW TASK DESCRIPTION") and a closing "END OF NEW TASK
  DESCRIPTION ... PLEASE follow the format strictly!".
"""

from __future__ import annotations

import re

# mini-swe-agent's action regex (v1 `bash`, v2 `mswea_bash_command`), applied with re.DOTALL as its parser does.
MINI_SWE_AGENT_ACTION_RE = re.compile(r"```(?:bash|mswea_bash_command)\s*\n(.*?)\n```", re.DOTALL)

# The replies that mean "your turn was refused, nothing ran", at the start of the observation (after SWE-smith's
# "OBSERVATION:" prefix), so that a command's output that merely quotes such a text is not taken for one.
_START = r"\A\s*(?:OBSERVATION:\s*)?"
FORMAT_ERRORS = {
    "mini-swe-agent": _START + (r"(?:Please always provide EXACTLY ONE action in triple backticks|Format error:"
                                r"|Your previous response reached the output token limit)"),
    "swe-agent": _START + (r"(?:Your output was not formatted correctly|Your last output did not use any tool calls"
                           r"|Your last output included multiple tool calls|Your action could not be parsed properly"
                           r"|Your bash command contained syntax errors and was NOT executed"
                           r"|(?:Interactive )?[Oo]peration '.*?' is not supported by this environment)"),
}
FORMAT_ERRORS["any"] = _START + "(?:" + "|".join(p[len(_START):] for p in FORMAT_ERRORS.values()) + ")"

# A final action that submits or finishes (searched in the canonical action text, see `is_submit`).
SUBMIT_PATTERN = (r"\A\s*(?:submit\s*\Z|<function=(?:submit|finish)>|<function=bash>\s*<parameter=command>\s*submit"
                  r"\s*</parameter>)|\b(?:COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT|MINI_SWE_AGENT_FINAL_OUTPUT)\b")

# The scaffolds' own response-format instructions in the system text or the task (for --scaffold_instructions).
# OpenHands' text function-call format (fn_call_converter.SYSTEM_PROMPT_SUFFIX_TEMPLATE), which SWE-smith reuses.
_FUNCTION_CALL_FORMAT = r"^If you choose to call a function ONLY reply in the following format.*?(?:</IMPORTANT>|\Z)"
SCAFFOLD_INSTRUCTIONS = {
    "mini-swe-agent": (
        # system template: "Your response must contain exactly ONE bash code block ... will be rejected."
        r"Your response must contain exactly ONE bash code block.*?will cause your response to be rejected\.[^\n]*"
        # task: "For each response: 1. Include a THOUGHT ... 2. Provide exactly ONE bash command to execute"
        r"|For each response:\s*\n\s*1\. Include a THOUGHT[^\n]*\n\s*2\. Provide exactly ONE bash command[^\n]*"
        # task: from "Each response should include:" (format example, rules, examples) to the next `## ` heading
        r"|Each response should include:.*?(?=^##[ \t]|\Z)"
    ),
    "swe-agent": (
        # SWE-agent's system text: the RESPONSE FORMAT section, up to the next CAPITALISED heading or the end
        r"^RESPONSE FORMAT:\n.*?(?=^[A-Z][A-Z ]{3,}:\n|\Z)"
        # SWE-smith's function-call format (system text), with its reminder block
        r"|" + _FUNCTION_CALL_FORMAT
    ),
}
SCAFFOLD_INSTRUCTIONS["openhands"] = (
    # fn_call_converter's system suffix: the call format and its reminder (the function descriptions stay)
    _FUNCTION_CALL_FORMAT
    # its in-context example before the task, up to the NEW TASK DESCRIPTION header
    + r"|^Here's a running example of how to [^\n]* with the provided tools\..*?^-{5,} NEW TASK DESCRIPTION -{5,}\n"
    # and its closing after the task
    + r"|^-{5,} END OF NEW TASK DESCRIPTION -{5,}\s*PLEASE follow the format strictly![^\n]*"
)
SCAFFOLD_INSTRUCTIONS_TEXT = "(Respond in the format the system prompt asks for.)"
SCAFFOLD_INSTRUCTIONS_CHOICES = ("keep", "remove", "replace")


def is_submit(action: str, pattern: str | None = SUBMIT_PATTERN) -> bool:
    """Whether a canonical action submits or finishes the run (`pattern` searched in it; None: never).

    >>> [is_submit(a) for a in ("submit", "<function=finish>\\n</function>", "ls", "echo submit",
    ...                          "echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT && git diff")]
    [True, True, False, False, True]
    """
    return bool(pattern) and re.search(pattern, action) is not None


def edit_scaffold_instructions(text: str, pattern: str | None, mode: str, replacement: str) -> str:
    """`text` with the scaffold's format instructions (matches of `pattern`) kept, removed or replaced by
    `replacement` (the first match replaced, later ones removed). Blank lines left behind are folded to one.

    >>> edit_scaffold_instructions("Fix it.\\nRESPONSE FORMAT:\\nOne block.\\nNOTES:\\nx", SCAFFOLD_INSTRUCTIONS[
    ...     "swe-agent"], "replace", "(Use our format.)")
    'Fix it.\\n(Use our format.)\\nNOTES:\\nx'
    """
    if mode == "keep" or not pattern or not text:
        return text
    parts, end = [], 0
    for i, match in enumerate(re.finditer(pattern, text, flags=re.DOTALL | re.MULTILINE)):
        parts.append(text[end:match.start()])
        if mode == "replace" and i == 0:  # the first match is replaced, later ones removed
            parts.append(replacement + "\n")
        end = match.end()
    if not parts:
        return text
    return re.sub(r"\n{3,}", "\n\n", "".join(parts) + text[end:]).strip()
