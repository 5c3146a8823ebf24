"""Issue 12 items 1 and 4: only actions that ran. Hand-made trajectories for each reader (mini-swe-agent,
swe-agent, openhands / openai-tools, chat): turns the scaffold rejected by its rule or by its format-error reply,
inline fences in the thought, turns without an action, `--drop_submit`, `--scaffold_instructions`,
`--rejected_turns show`, and the summary's turn counts."""

import doctest
import json
import os

import pytest

import srl.data.agents.scaffolds
from srl.cli import main
from srl.data.agents import AgentOptions, agent_instances, read_agent_trajectories
from srl.data.agents.scaffolds import SCAFFOLD_INSTRUCTIONS_TEXT
from srl.data.build import DataConfig, build

HERE = os.path.dirname(__file__)
NEBIUS = os.path.join(HERE, "data", "swe", "nebius_SWE-agent-trajectories.rows.json")
FORMAT_REPLY = ("Please always provide EXACTLY ONE action in triple backticks, found 2 actions.\n\nPlease format "
                "your action in triple backticks as shown in <response_example>.")
MINI_SYSTEM = ("You are a helpful assistant that can interact multiple times with a computer shell to solve "
               "programming tasks.\nYour response must contain exactly ONE bash code block with ONE command (or "
               "commands connected with && or ||).\n\nInclude a THOUGHT section before your command.\n\n"
               "<format_example>\nTHOUGHT: Your reasoning and analysis here\n\n```bash\nyour_command_here\n```\n"
               "</format_example>\n\nFailure to follow these rules will cause your response to be rejected.")
MINI_TASK = ("<pr_description>\nConsider the following PR description:\nf() returns None\n</pr_description>\n\n"
             "# Task Instructions\n\nFor each response:\n1. Include a THOUGHT section explaining your reasoning\n"
             "2. Provide exactly ONE bash command to execute\n\n## Command Execution Rules\nYou write a single "
             "command.\n\nEach response should include:\n1. A **THOUGHT** section\n2. A single bash code block\n\n"
             "```bash\nyour_command_here\n```\n\n**CRITICAL REQUIREMENTS:**\n- EXACTLY ONE bash code block\n\n"
             "## Environment Details\n- You have a full Linux shell environment")


def mini_record(**extra):
    """A mini-swe-agent run: every kind of turn its parser meets."""
    turns = [
        ("system", MINI_SYSTEM), ("user", MINI_TASK),
        ("assistant", "THOUGHT: Let me look around.\n\n```bash\nls -la\n```"),
        ("user", "<returncode>0</returncode>\n<output>\na.py\n</output>"),
        # two blocks: refused by the rule (and answered with the format error); nothing ran
        ("assistant", "THOUGHT: Two things.\n\n```bash\ncat a.py\n```\n\n```bash\nrm -rf build\n```"),
        ("user", FORMAT_REPLY),
        # no block at all: refused by the rule
        ("assistant", "THOUGHT: I should read a.py first."),
        ("user", FORMAT_REPLY.replace("found 2", "found 0")),
        # a python fence and inline backticks in the thought neither hide nor replace the command
        ("assistant", "THOUGHT: `f()` lacks a return:\n```python\ndef f():\n    pass\n```\nSo I fix it with "
                      "``sed``.\n\n```bash\nsed -i 's/pass/return 1/' a.py\n```"),
        ("user", "<returncode>0</returncode>\n<output>\n</output>"),
        # one block, but the scaffold answered with its format error (output cut at the token limit)
        ("assistant", "THOUGHT: Check.\n\n```bash\npython -c 'import a; print(a.f())'\n```"),
        ("user", "Your previous response reached the output token limit (finish_reason=length) before you "
                 "produced a complete action, so it was cut off."),
        ("assistant", "THOUGHT: Done.\n\n```bash\necho COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT && git diff\n```"),
        ("exit", "diff --git a/a.py b/a.py"),
    ]
    return {"instance_id": "mini-1", "resolved": True,
            "messages": [{"role": r, "content": c} for r, c in turns], **extra}


SWE_AGENT_RECORD = {"instance_id": "swe-1", "target": True, "trajectory": [
    {"role": "system", "text": None, "system_prompt": "SETTING: a shell.\n\nCOMMANDS:\nsubmit: submits\n\n"
                                                       "RESPONSE FORMAT:\nOne discussion and one command:\n```\nls\n```"
                                                       "\n\nNOTES:\nNo interactive commands."},
    {"role": "user", "text": "ISSUE:\nf() returns None\n\nINSTRUCTIONS:\nSolve it."},
    {"role": "ai", "text": "DISCUSSION\nList files.\n```\nls -F\n```"},
    {"role": "user", "text": "a.py\n(Open file: n/a)\nbash-$"},
    {"role": "ai", "text": "I think the answer is obvious."},  # no block: SWE-agent's format-error reply
    {"role": "user", "text": "Your output was not formatted correctly. You must always include one discussion and "
                             "one command as part of your response."},
    {"role": "ai", "text": "DISCUSSION\nEdit.\n```\nedit 2:2\n    return 1\nend_of_edit\n"},  # unclosed block
    {"role": "user", "text": "Your bash command contained syntax errors and was NOT executed. Please fix the syntax "
                             "errors and try again."},
    {"role": "ai", "text": "The code is:\n```python\ndef f():\n    pass\n```\nNow open it:\n```\nopen a.py\n```"},
    {"role": "user", "text": "[File: /a.py (2 lines total)]"},
    {"role": "ai", "text": "Thanks, nothing else to run here."},  # no action, and a plain reply: no action found
    {"role": "user", "text": "(Open file: /a.py)\nbash-$"},
    {"role": "ai", "text": "DISCUSSION\nDone.\n```\nsubmit\n```"},
    {"role": "user", "text": "diff --git a/a.py b/a.py"},
]}

OPENHANDS_RECORD = {"instance_id": "oh-1", "resolved": True, "messages": [
    {"role": "system", "content": "You are OpenHands."},
    {"role": "user", "content": "Fix f()."},
    {"role": "assistant", "content": None, "tool_calls": [
        {"function": {"name": "execute_bash", "arguments": json.dumps({"command": "ls"})}}]},
    {"role": "tool", "content": "a.py"},
    {"role": "assistant", "content": "I have looked at the files."},  # a message: no action
    {"role": "user", "content": "Please continue working on the task on whatever approach you think is suitable."},
    {"role": "assistant", "content": "Editing.", "tool_calls": [
        {"function": {"name": "str_replace_editor", "arguments": json.dumps(
            {"command": "str_replace", "path": "/a.py", "old_str": "pass", "new_str": "return 1"})}}]},
    {"role": "tool", "content": "The file /a.py has been edited."},
    {"role": "assistant", "content": None, "tool_calls": [{"function": {"name": "finish", "arguments": "{}"}}]},
]}

CHAT_CONFIG = ("messages_field: log\nrole_field: who\ncontent_field: says\nuser_roles: [task]\nassistant_roles: "
               "[agent]\ntool_roles: [shell]\naction_pattern: '^Action: (?P<action>.*)$'\naction_match: one\n"
               "format_error_pattern: '^Invalid: '\nresolved_field: ok\n")
CHAT_RECORD = {"ok": True, "log": [
    {"who": "task", "says": "Count the files."},
    {"who": "agent", "says": "Action: ls\nAction: wc -l"},  # two actions: refused by `action_match: one`
    {"who": "shell", "says": "Invalid: one action per turn"},
    {"who": "agent", "says": "Action: ls | wc -l"},
    {"who": "shell", "says": "Invalid: pipes are not allowed"},  # refused by its reply
    {"who": "agent", "says": "Action: ls -1"},
    {"who": "shell", "says": "a.py\nb.py"},
    {"who": "agent", "says": "Action: submit"},
    {"who": "shell", "says": "ok"},
]}


def write(tmp_path, name, records):
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def read_one(path, fmt, **kw):
    (traj,) = list(read_agent_trajectories(path, fmt, **kw))
    return traj


def test_scaffold_doctests():
    assert doctest.testmod(srl.data.agents.scaffolds).failed == 0


def test_mini_swe_agent_only_the_commands_that_ran(tmp_path):
    traj = read_one(write(tmp_path, "mini.jsonl", [mini_record()]), "mini-swe-agent")
    assert [s.action for s in traj.steps] == ["ls -la", "sed -i 's/pass/return 1/' a.py",
                                              "echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT && git diff"]
    assert "```python" in traj.steps[1].thought and "``sed``" in traj.steps[1].thought
    assert traj.meta["turns"] == {"action kept": 3, "rejected by the scaffold": 3, "no action found": 0,
                                  "dropped by option": 0}
    assert traj.steps[2].submit and not traj.steps[0].submit
    rows = agent_instances(traj)
    assert [r["expert_step"] for r in rows] == [s.action for s in traj.steps]
    # the context of the sed command: the `ls` pair only; the refused turns never appear as actions
    context = rows[1]["prompt"][2:]
    assert [m["content"] for m in context] == ["ls -la", "<returncode>0</returncode>\n<output>\na.py\n</output>"]
    assert not any("rm -rf" in m["content"] or "EXACTLY ONE" in m["content"] for r in rows for m in r["prompt"][2:])


def test_swe_agent_reader_reads_mini_swe_agent_runs_wrongly_which_is_why_it_has_its_own_format(tmp_path):
    """The issue's campaign: `--format swe-agent` on mini-swe-agent runs took a refused turn's last block as a
    command that ran. Its format-error reply now rejects the turn there too."""
    record = mini_record()
    record["messages"][-1]["role"] = "user"  # mini-swe-agent v2's `exit` turn: a role only its format knows
    traj = read_one(write(tmp_path, "mini.jsonl", [record]), "swe-agent")
    assert [s.action for s in traj.steps] == ["ls -la", "sed -i 's/pass/return 1/' a.py",
                                              "echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT && git diff"]


def test_mini_swe_agent_rejected_turns_shown(tmp_path):
    traj = read_one(write(tmp_path, "mini.jsonl", [mini_record()]), "mini-swe-agent", rejected_turns="show")
    assert [s.rejected for s in traj.steps] == [False, True, True, False, True, False]
    rows = agent_instances(traj, AgentOptions(last_pairs=1))
    assert [r["expert_step"] for r in rows] == ["ls -la", "sed -i 's/pass/return 1/' a.py",
                                                "echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT && git diff"]
    assert [r["step_index"] for r in rows] == [1, 2, 3] and {r["num_steps"] for r in rows} == {3}
    # last_pairs=1 counts actions that ran; the rejected turns after it are shown, marked, with the replies
    context = [m["content"] for m in rows[1]["prompt"][2:]]
    assert context[0] == "ls -la" and len(context) == 6
    assert context[2].startswith("(Rejected by the agent's scaffold, not run:)\nTHOUGHT: Two things.")
    assert context[3] == FORMAT_REPLY
    assert rows[2]["prompt"][1]["content"].endswith("(1 earlier action(s) and their observations are not shown.)")
    assert rows[2]["prompt"][2]["content"] == "sed -i 's/pass/return 1/' a.py"
    assert rows[2]["prompt"][4]["content"].startswith("(Rejected by the agent's scaffold, not run:)\nTHOUGHT: Check.")


def test_drop_submit(tmp_path):
    traj = read_one(write(tmp_path, "mini.jsonl", [mini_record()]), "mini-swe-agent")
    rows = agent_instances(traj, AgentOptions(drop_submit=True))
    assert [r["expert_step"] for r in rows] == ["ls -la", "sed -i 's/pass/return 1/' a.py"]
    assert {r["num_steps"] for r in rows} == {2}
    oh = read_one(write(tmp_path, "oh.jsonl", [OPENHANDS_RECORD]), "openhands")
    assert oh.steps[-1].action == "<function=finish>\n</function>" and oh.steps[-1].submit
    assert len(agent_instances(oh, AgentOptions(drop_submit=True))) == len(oh.steps) - 1
    swe = read_one(write(tmp_path, "swe.jsonl", [SWE_AGENT_RECORD]), "swe-agent")
    assert swe.steps[-1].action == "submit" and len(agent_instances(swe, AgentOptions(drop_submit=True))) == 2


def test_swe_agent_rejected_by_its_replies_and_fences_in_the_thought(tmp_path):
    traj = read_one(write(tmp_path, "swe.jsonl", [SWE_AGENT_RECORD]), "swe-agent")
    assert [s.action for s in traj.steps] == ["ls -F", "open a.py", "submit"]
    assert traj.meta["turns"] == {"action kept": 3, "rejected by the scaffold": 2, "no action found": 1,
                                  "dropped by option": 0}
    rows = agent_instances(traj)
    assert [m["content"] for m in rows[1]["prompt"][2:]] == ["ls -F", "a.py\n(Open file: n/a)\nbash-$"]
    # the no-action turn and its reply are left out too
    assert [m["content"] for m in rows[2]["prompt"][2:]] == ["ls -F", "a.py\n(Open file: n/a)\nbash-$", "open a.py",
                                                             "[File: /a.py (2 lines total)]"]


def test_swe_smith_function_calls_rejected_by_rule_and_by_reply(tmp_path):
    record = {"id": "smith-1", "resolved": True, "messages": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Fix f()."},
        {"role": "assistant", "content": "Two at once.\n<function=bash>\n<parameter=command>ls</parameter>\n"
                                         "</function>\n<function=bash>\n<parameter=command>pwd</parameter>\n</function>"},
        {"role": "user", "content": "OBSERVATION:\nYour last output included multiple tool calls!\nPlease make sure "
                                    "your output includes a thought and exactly _ONE_ function call."},
        {"role": "assistant", "content": "Look.\n<function=bash>\n<parameter=command>ls</parameter>\n</function>"},
        {"role": "user", "content": "OBSERVATION:\na.py"},
    ]}
    traj = read_one(write(tmp_path, "smith.jsonl", [record]), "swe-agent")
    assert [s.action for s in traj.steps] == ["<function=bash>\n<parameter=command>ls</parameter>\n</function>"]
    assert traj.meta["turns"]["rejected by the scaffold"] == 1
    # the same two calls answered by something else: SWE-agent's XML parser refuses several calls (its rule)
    record["messages"][3]["content"] = "OBSERVATION:\n/testbed"
    traj = read_one(write(tmp_path, "smith.jsonl", [record]), "swe-agent")
    assert len(traj.steps) == 1 and traj.meta["turns"]["rejected by the scaffold"] == 1


def test_openhands_and_openai_tools_no_action_turns(tmp_path):
    path = write(tmp_path, "oh.jsonl", [OPENHANDS_RECORD])
    for fmt in ("openhands", "openai-tools"):
        traj = read_one(path, fmt)
        assert [s.action.split("\n")[0] for s in traj.steps] == ["<function=execute_bash>",
                                                                "<function=str_replace_editor>", "<function=finish>"]
        assert traj.meta["turns"] == {"action kept": 3, "rejected by the scaffold": 0, "no action found": 1,
                                      "dropped by option": 0}
        rows = agent_instances(traj)
        assert "Please continue" not in json.dumps([r["prompt"] for r in rows])


def test_chat_config_rule_and_format_error_pattern(tmp_path):
    config = tmp_path / "fmt.yaml"
    config.write_text(CHAT_CONFIG)
    from srl.data.agents import ChatFormat

    fmt = ChatFormat.from_file(str(config))
    traj = read_one(write(tmp_path, "chat.jsonl", [CHAT_RECORD]), fmt)
    assert [s.action for s in traj.steps] == ["ls -1", "submit"]
    assert traj.meta["turns"]["rejected by the scaffold"] == 2
    shown = read_one(write(tmp_path, "chat.jsonl", [CHAT_RECORD]), fmt, rejected_turns="show")
    assert [s.rejected for s in shown.steps] == [True, True, False, False]


def test_scaffold_instructions_keep_remove_replace(tmp_path):
    path = write(tmp_path, "mini.jsonl", [mini_record()])
    keep = read_one(path, "mini-swe-agent")
    assert keep.system == MINI_SYSTEM and keep.task == MINI_TASK
    removed = read_one(path, "mini-swe-agent", scaffold_instructions="remove")
    for text in (removed.system, removed.task):
        assert "EXACTLY ONE" not in text.upper()
        assert "```bash" not in text and "<format_example>" not in text
    assert "Your response must contain" not in removed.system and "interact multiple times" in removed.system
    assert "f() returns None" in removed.task and "## Environment Details" in removed.task
    assert "## Command Execution Rules\nYou write a single command." in removed.task
    assert "For each response" not in removed.task and "CRITICAL" not in removed.task
    replaced = read_one(path, "mini-swe-agent", scaffold_instructions="replace")
    assert replaced.task.count(SCAFFOLD_INSTRUCTIONS_TEXT) == 1 and SCAFFOLD_INSTRUCTIONS_TEXT in replaced.system
    assert "```bash" not in replaced.task
    # SWE-agent (the real nebius row): the RESPONSE FORMAT section of its system text
    nebius = next(read_agent_trajectories(NEBIUS, "swe-agent", scaffold_instructions="remove"))
    original = next(read_agent_trajectories(NEBIUS, "swe-agent"))
    assert "RESPONSE FORMAT:" in original.system and "RESPONSE FORMAT:" not in nebius.system
    assert "COMMANDS:" in nebius.system and "_one_ discussion" not in nebius.system
    assert [s.action for s in nebius.steps] == [s.action for s in original.steps]
    # SWE-smith (real row): its function-call format and reminder block, replaced by one line
    smith = next(read_agent_trajectories(os.path.join(HERE, "data", "swe", "swe-smith.rows.json"), "swe-agent",
                                         scaffold_instructions="replace"))
    assert "If you choose to call a function ONLY reply" not in smith.system and "Reminder:" not in smith.system
    assert smith.system.endswith("---- END FUNCTION #3 ----\n\n" + SCAFFOLD_INSTRUCTIONS_TEXT)


def test_build_summary_counts_turns(tmp_path, capsys):
    path = write(tmp_path, "mini.jsonl", [mini_record(), mini_record(instance_id="mini-2")])
    summary = build(DataConfig(input=path, output=str(tmp_path / "out.jsonl"), format="mini-swe-agent",
                               drop_submit=True))
    assert summary.instances == 4
    assert dict(summary.turns) == {"action kept": 4, "rejected by the scaffold": 6, "no action found": 0,
                                   "dropped by option": 2}
    assert summary.as_dict()["assistant_turns"]["dropped by option"] == 2
    assert main(["data", "build", "--format", "mini-swe-agent", "--input", path, "--output",
                 str(tmp_path / "out2.jsonl"), "--rejected_turns", "show"]) == 0
    out = capsys.readouterr().out
    for line in ("turns: action kept", "turns: rejected by the scaffold", "turns: no action found",
                 "turns: dropped by option"):
        assert line in out
    rows = [json.loads(line) for line in open(tmp_path / "out2.jsonl")]
    assert len(rows) == 6 and all("Rejected" not in r["expert_step"] for r in rows)


def test_every_turn_rejected_is_a_clear_error(tmp_path, capsys):
    record = mini_record()
    record["messages"] = record["messages"][:2] + [{"role": "assistant", "content": "THOUGHT: no block"},
                                                   {"role": "user", "content": FORMAT_REPLY}]
    path = write(tmp_path, "mini.jsonl", [record])
    assert main(["data", "build", "--format", "mini-swe-agent", "--input", path, "--output",
                 str(tmp_path / "out.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "0 instances" in err and "no actions" in err and not (tmp_path / "out.jsonl").exists()


def test_help_says_n_instances_for_agent_formats(capsys):
    with pytest.raises(SystemExit):
        main(["data", "build", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "Agent formats: N actions -> N instances" in out and "mini-swe-agent" in out


# OpenHands for models without function calling (openhands/llm/fn_call_converter.py, quoted): the system suffix
# and the in-context example around the first user turn.
OPENHANDS_SYSTEM = (
    "You are OpenHands agent, a helpful AI assistant that can interact with a computer to solve tasks.\n"
    "\nYou have access to the following functions:\n\n---- BEGIN FUNCTION #1: execute_bash ----\n"
    "Description: Execute a bash command in the terminal.\nParameters:\n"
    "  (1) command (string, required): The bash command to execute.\n---- END FUNCTION #1 ----\n\n"
    "If you choose to call a function ONLY reply in the following format with NO suffix:\n\n"
    "<function=example_function_name>\n<parameter=example_parameter_1>value_1</parameter>\n</function>\n\n"
    "<IMPORTANT>\nReminder:\n- Function calls MUST follow the specified format, start with <function= and end "
    "with </function>\n- Only call one function at a time\n</IMPORTANT>\n")
OPENHANDS_TASK = (
    "Here's a running example of how to perform a task with the provided tools.\n\n"
    "--------------------- START OF EXAMPLE ---------------------\n\n"
    "USER: Create a list of numbers from 1 to 10, and display them in a web page at port 5000.\n\n"
    "ASSISTANT: Sure! Let me first check the current directory:\n<function=execute_bash>\n<parameter=command>\n"
    "pwd && ls\n</parameter>\n</function>\n\nUSER: EXECUTION RESULT of [execute_bash]:\n/workspace\n\n"
    "--------------------- END OF EXAMPLE ---------------------\n\n"
    "Do NOT assume the environment is the same as in the example above.\n\n"
    "--------------------- NEW TASK DESCRIPTION ---------------------\n"
    "<pr_description>\nf() returns None\n</pr_description>\n"
    "--------------------- END OF NEW TASK DESCRIPTION ---------------------\n\n"
    "PLEASE follow the format strictly! PLEASE EMIT ONE AND ONLY ONE FUNCTION CALL PER MESSAGE.\n")


def test_openhands_text_function_calls_scaffold_instructions(tmp_path):
    """OpenHands' text function-call format: its format block and in-context example go (or become one line); the
    function descriptions, the task and the actions stay."""
    record = {"instance_id": "oh-1", "resolved": True, "messages": [
        {"role": "system", "content": OPENHANDS_SYSTEM}, {"role": "user", "content": OPENHANDS_TASK},
        {"role": "assistant", "content": "Let me look.\n<function=execute_bash>\n<parameter=command>\nls\n"
                                         "</parameter>\n</function>"},
        {"role": "user", "content": "EXECUTION RESULT of [execute_bash]:\na.py"},
        {"role": "assistant", "content": "<function=finish>\n</function>"}]}
    path = write(tmp_path, "oh.jsonl", [record])
    keep = read_one(path, "openhands")
    assert keep.system == OPENHANDS_SYSTEM.strip() and keep.task == OPENHANDS_TASK.strip()
    removed = read_one(path, "openhands", scaffold_instructions="remove")
    assert removed.system.endswith("---- END FUNCTION #1 ----") and "<IMPORTANT>" not in removed.system
    assert removed.task == "<pr_description>\nf() returns None\n</pr_description>"
    assert [s.action for s in removed.steps] == [s.action for s in keep.steps] and len(keep.steps) == 2
    replaced = read_one(path, "openhands", scaffold_instructions="replace")
    assert replaced.task == SCAFFOLD_INSTRUCTIONS_TEXT + "\n<pr_description>\nf() returns None\n</pr_description>"
