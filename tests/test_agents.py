"""Agentic SRL (srl.data.agents): readers of agent trajectories, canonical actions, instances, the action reward,
`srl data build --format openai-tools|swe-agent|openhands|chat`, and a short SRL run on the result."""

import doctest
import json
import os
import re

import pytest

import srl.data.agents
from srl.data.agents import (AgentOptions, AgentStep, AgentTrajectory, ChatFormat, ToolCall, agent_instances,
                        normalize_shell, parse_action, read_agent_trajectories, render_action, truncate_chars,
                        truncate_tokens)
from srl.cli import main
from srl.errors import InputError
from srl.rewards import action_reward, action_similarity, get_action_reward, srl_reward

HERE = os.path.dirname(__file__)
SWE = os.path.join(HERE, "data", "swe")
NEBIUS = os.path.join(SWE, "nebius_SWE-agent-trajectories.rows.json")
OPENHANDS = os.path.join(SWE, "swe-gym_openhands_sampled_trajectories.rows.json")
SWE_SMITH = os.path.join(SWE, "swe-smith.rows.json")
REACT, REACT_CONFIG = os.path.join(SWE, "react_log.jsonl"), os.path.join(SWE, "react_log.yaml")
SHARED = os.path.abspath(os.path.join(HERE, "..", "..", "shared", "data", "swe_adp_samples"))


def call(name, *args):
    """The canonical text of one call, written out by hand."""
    lines = [f"<function={name}>"] + [f"<parameter={k}>\n{v}\n</parameter>" if "\n" in v else
                                      f"<parameter={k}>{v}</parameter>" for k, v in args] + ["</function>"]
    return "\n".join(lines)


def targets(path, fmt, **kw):
    return {t.id: [s.action for s in t.steps] for t in read_agent_trajectories(path, fmt, **kw)}


def test_module_doctests():
    assert doctest.testmod(srl.data.agents).failed == 0


# --- the three real sample formats, against hand-read rows --------------------------------------------------
def test_swe_agent_fenced_commands_are_the_targets():
    got = targets(NEBIUS, "swe-agent")
    assert got["tomerfiliba__plumbum-366_17"] == [
        "ls -F",
        'find_file "image.py" plumbum',
        "open plumbum/cli/image.py",
        "edit 5:5\nimport plumbum.cli as cli\nend_of_edit",
        'python -c "import plumbum.cli.image"',
        "submit",
    ]
    apispec = got["marshmallow-code__apispec-811_21"]
    assert apispec[:3] == ['grep -r "class OpenAPIConverter" src',
                           'grep -r "openapi_version" src/apispec/ext/marshmallow/openapi.py',
                           "open src/apispec/ext/marshmallow/openapi.py"]
    assert apispec[3].startswith("edit 53:61\n    def __init__(\n        self,\n") and apispec[3].endswith(
        "        self.refs: dict = {}\nend_of_edit")
    assert apispec[4] == "submit"


def test_swe_agent_steps_observations_and_prompts():
    traj = next(read_agent_trajectories(NEBIUS, "swe-agent"))
    raw = json.load(open(NEBIUS))[0]["trajectory"]
    assert traj.task == raw[1]["text"].strip() and traj.system == raw[0]["system_prompt"].strip()
    assert traj.steps[0].observation == raw[3]["text"]  # the turn after the action, unchanged
    assert traj.steps[0].thought.startswith("To start addressing the issue") and "```" not in traj.steps[0].thought
    assert traj.steps[-1].observation is None  # `submit` ends the run
    rows = agent_instances(traj)
    assert [r["expert_step"] for r in rows] == [s.action for s in traj.steps]  # one instance per action
    assert [r["step_index"] for r in rows] == [1, 2, 3, 4, 5, 6] and {r["num_steps"] for r in rows} == {6}
    fourth = rows[3]["prompt"]  # the last two pairs (steps 2 and 3), in chat form; step 1 is left out
    assert [m["role"] for m in fourth] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert fourth[2]["content"] == 'find_file "image.py" plumbum' and fourth[3]["content"] == raw[5]["text"]
    assert fourth[4]["content"] == "open plumbum/cli/image.py"
    assert fourth[1]["content"].startswith(traj.task) and "1 earlier action(s)" in fourth[1]["content"]
    system = fourth[0]["content"]
    assert system.startswith("SETTING: You are an autonomous programmer") and "<think>" in system
    assert "command alone" in system and system.index("SETTING") < system.index("<think>")
    assert [m["role"] for m in rows[0]["prompt"]] == ["system", "user"]


def test_openhands_tool_calls_are_the_targets():
    got = targets(OPENHANDS, "openhands")
    root = "/workspace/Project-MONAI__MONAI__1.1"
    script = ('import torch\nfrom monai.losses.ssim_loss import SSIMLoss\n\nx = torch.ones([1,1,10,10])/2\n'
              'y = torch.ones([1,1,10,10])/2\ny.requires_grad_(True)\ndata_range = x.max().unsqueeze(0)\n'
              'loss = SSIMLoss(spatial_dims=2)(x,y,data_range)\nprint("Requires grad:", loss.requires_grad)')
    assert got["Project-MONAI__MONAI-5686_4"] == [
        call("str_replace_editor", ("command", "view"), ("path", root), ("view_range", "[0, 50]")),
        call("str_replace_editor", ("command", "view"), ("path", root)),
        call("str_replace_editor", ("command", "create"), ("path", f"{root}/reproduce_ssimloss_issue.py"),
             ("file_text", script)),
        call("execute_bash", ("command", f"python3 {root}/reproduce_ssimloss_issue.py")),
        call("str_replace_editor", ("command", "view"), ("path", f"{root}/monai/losses/ssim_loss.py")),
        call("str_replace_editor", ("command", "view"), ("path", f"{root}/monai/metrics/regression.py")),
        call("str_replace_editor", ("command", "str_replace"), ("path", f"{root}/monai/losses/ssim_loss.py"),
             ("old_str", "loss: torch.Tensor = 1 - ssim_value.mean()"),
             ("new_str", "loss: torch.Tensor = (1 - ssim_value.mean()) * torch.tensor(1.0, requires_grad=True)")),
        call("execute_bash", ("command", f"python3 {root}/reproduce_ssimloss_issue.py")),
        call("finish"),
    ]
    # parallel calls of one turn are one action; the two turns without a tool call are not actions
    mypy = got["python__mypy-15976_0"]
    grep = "grep -n 'slots' /workspace/python__mypy__1.6/mypy/plugins/"
    assert mypy[9] == call("execute_bash", ("command", grep + "attrs.py")) + "\n" + call(
        "execute_bash", ("command", grep + "dataclasses.py"))
    assert len(mypy) == 15 and mypy[-1] == call("finish")
    traj = next(t for t in read_agent_trajectories(OPENHANDS, "openhands") if t.id == "python__mypy-15976_0")
    assert traj.meta["turns_without_action"] == 2
    assert traj.steps[9].observation.count("OBSERVATION:") == 2  # both tool results
    assert "---- BEGIN FUNCTION #1: execute_bash ----" in traj.system  # the `tools` field, listed
    assert targets(OPENHANDS, "openai-tools") == got  # the plain OpenAI reader reads the same calls


def test_swe_smith_function_text_is_the_target_byte_for_byte():
    got = targets(SWE_SMITH, "swe-agent")
    arrow = got["arrow-py__arrow.1d70d009.lm_rewrite__nuzjfyur.l13ggwmx_1"]
    assert arrow[:4] == [
        call("bash", ("command", 'find /testbed -type f -name "*.py" | grep -v "__pycache__" | sort')),
        call("str_replace_editor", ("command", "view"), ("path", "/testbed/arrow/arrow.py")),
        call("bash", ("command", 'grep -n "__format__" /testbed/arrow/arrow.py')),
        call("str_replace_editor", ("command", "view"), ("path", "/testbed/arrow/arrow.py"),
             ("view_range", "[791, 808]")),
    ]
    assert arrow[7] == call("bash", ("command", "cd /testbed && python reproduce.py"))
    assert arrow[12:] == [call("submit"), call("bash", ("command", "rm /testbed/reproduce.py /testbed/edge_cases.py")),
                          call("submit")]
    # every target is exactly the function call the expert wrote, as text
    for row in json.load(open(SWE_SMITH)):
        written = [re.search(r"<function=.*?</function>", m["content"], re.DOTALL).group(0)
                   for m in row["messages"] if m["role"] == "assistant"]
        assert got[row["id"]] == written
    edit = parse_action(arrow[8])[0]
    assert dict(edit.arguments)["old_str"].startswith("    def __format__(self, formatstr: str) -> str:")


@pytest.mark.skipif(not os.path.isdir(SHARED), reason="the shared samples are not on this machine")
def test_all_three_shared_sample_files(tmp_path):
    counts = {}
    for name, fmt in [("nebius_SWE-agent-trajectories", "swe-agent"),
                      ("swe-gym_openhands_sampled_trajectories", "openhands"), ("swe-smith", "swe-agent")]:
        out = tmp_path / f"{name}.jsonl"
        assert main(["data", "build", "--format", fmt, "--input", os.path.join(SHARED, f"{name}.sample_raw.json"),
                     "--output", str(out)]) == 0
        rows = [json.loads(line) for line in open(out)]
        counts[name] = len(rows)
        assert all(r["expert_step"].strip() == r["expert_step"] and r["expert_step"] for r in rows)
        if name == "swe-smith":  # every target is the function call the expert wrote, byte for byte
            written = [re.search(r"<function=.*?</function>", m["content"], re.DOTALL).group(0)
                       for row in json.load(open(os.path.join(SHARED, f"{name}.sample_raw.json")))
                       for m in row["messages"] if m["role"] == "assistant"]
            assert [r["expert_step"] for r in rows] == written
    assert counts == {"nebius_SWE-agent-trajectories": 49, "swe-gym_openhands_sampled_trajectories": 80,
                      "swe-smith": 116}


# --- a format no built-in reader knows: configuration alone --------------------------------------------------
def test_unknown_format_by_configuration_alone(tmp_path, capsys):
    out = tmp_path / "react.jsonl"
    assert main(["data", "build", "--format", "chat", "--chat_config", REACT_CONFIG, "--input", REACT,
                 "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "skipped: not resolved" in printed and "instances written" in printed
    rows = [json.loads(line) for line in open(out)]
    assert [(r["trajectory_id"], r["expert_step"]) for r in rows] == [
        ("ep-001", call("shell", ("input", "find . -name '*.py' | wc -l"))),
        ("ep-001", call("shell", ("input", "find . -path ./.venv -prune -o -name '*.py' -print | wc -l"))),
        ("ep-001", call("finish", ("input", "17"))),
        ("ep-003", call("shell", ("input", "git rev-parse --abbrev-ref HEAD"))),
        ("ep-003", call("finish", ("input", "main"))),  # the turn without an action and its reply are left out
    ]
    last = rows[2]["prompt"]
    assert [m["content"] for m in last[1:]] == ["How many Python files does the repository contain?",
                                                rows[0]["expert_step"], "42", rows[1]["expert_step"], "17"]
    assert last[0]["content"].startswith("You operate a Linux shell")
    # the same data with flags only: a plain-command pattern (`action` group), every trajectory kept
    flags = ["--messages_field", "log", "--action_pattern", r"^Action: (?P<action>\w+\[.*\])$",
             "--resolved_only", "false"]
    cfg = tmp_path / "roles.yaml"
    cfg.write_text("role_field: who\ncontent_field: says\nsystem_roles: [instructions]\nuser_roles: [task]\n"
                   "assistant_roles: [agent]\ntool_roles: [shell]\n")
    assert main(["data", "build", "--format", "chat", "--chat_config", str(cfg), "--input", REACT,
                 "--output", str(out)] + flags) == 0
    rows = [json.loads(line) for line in open(out)]
    assert [r["expert_step"] for r in rows] == ["shell[find . -name '*.py' | wc -l]",
                                                "shell[find . -path ./.venv -prune -o -name '*.py' -print | wc -l]",
                                                "finish[17]", "shell[ss -ltnp | grep 8080]",
                                                "shell[git rev-parse --abbrev-ref HEAD]", "finish[main]"]


def test_sharegpt_chat_with_pattern_flag_only(tmp_path):
    record = {"id": "c1", "success": True, "conversations": [
        {"from": "system", "value": "Use <execute_bash> tags."},
        {"from": "human", "value": "List the files."},
        {"from": "gpt", "value": "Let me look.\n<run>ls -la</run>"},
        {"from": "human", "value": "a.py\nb.py"},
        {"from": "gpt", "value": "Now the first one.\n<run>\ncat a.py\n</run>"}]}
    path = tmp_path / "chats.jsonl"
    path.write_text(json.dumps(record) + "\n")
    fmt = ChatFormat(action_pattern=r"<run>(?P<action>(?s:.*?))</run>")
    (traj,) = read_agent_trajectories(str(path), fmt)
    assert [s.action for s in traj.steps] == ["ls -la", "cat a.py"] and traj.steps[0].thought == "Let me look."
    anthropic = {"id": "c2", "success": "yes", "messages": [
        {"role": "user", "content": [{"type": "text", "text": "List the files."}]},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Listing."},
            {"type": "tool_use", "id": "t1", "name": "bash", "input": {"command": "ls"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "a.py"}]}]}
    path.write_text(json.dumps(anthropic) + "\n")
    (traj,) = read_agent_trajectories(str(path), "openai-tools")
    assert traj.task == "List the files." and traj.steps[0].action == call("bash", ("command", "ls"))
    assert traj.steps[0].observation == "a.py" and traj.steps[0].thought == "Listing."
    path.write_text(json.dumps(record) + "\n")
    bash = ChatFormat(action_pattern=fmt.action_pattern, command_tool="bash")
    (traj,) = read_agent_trajectories(str(path), bash)
    assert traj.steps[0].action == call("bash", ("command", "ls -la"))  # the paper's form


# --- extractors and the canonical form -----------------------------------------------------------------------
def turn_actions(text, fmt="chat", **kw):
    from srl.data.agents import FORMATS, Turn, EXTRACTORS

    chat = ChatFormat(**kw) if kw else FORMATS[fmt]
    for name in chat.actions:
        actions, _ = EXTRACTORS[name](Turn("assistant", text), chat)
        if actions:
            return render_action(actions)
    return None


def test_text_action_forms():
    assert turn_actions("DISCUSSION\nfirst\n```\nls\n```\nthen\n```bash\ncat a.py\n```\n") == "cat a.py"
    nested = "Try:\n```\nouter\n```python\ninner\n```\n```\n"  # SWE-agent: a block inside a block is skipped
    assert turn_actions(nested) is not None
    assert turn_actions("<command>\npwd\n</command>") == "pwd"
    assert turn_actions('I will look.\n<function name="bash">\n<parameter name="command">ls</parameter>\n'
                        "</function>") == call("bash", ("command", "ls"))
    assert turn_actions("<execute_bash>\nls /\n</execute_bash>") == call("execute_bash", ("command", "ls /"))
    assert turn_actions("<execute_ipython>\nprint(1)\n</execute_ipython>") == call("execute_ipython_cell",
                                                                                   ("code", "print(1)"))
    assert turn_actions("no action here") is None
    assert turn_actions("```\na\n```\n```\nb\n```", action_match="first", actions=("fenced",)) == "a"
    assert turn_actions("```\na\n```\n```\nb\n```", action_match="all", actions=("fenced",)) == "a\nb"
    pattern = r'CALL (?P<name>\w+) (?P<arguments>\{.*\})'
    assert turn_actions('CALL search {"query": "x", "k": 3}', action_pattern=pattern) == call(
        "search", ("query", "x"), ("k", "3"))


def test_canonical_form_round_trip():
    c = ToolCall.of("str_replace_editor", {"command": "str_replace", "path": "/a.py", "old_str": "    x = 1\n",
                                           "new_str": "\n  y\n", "view_range": [1, 2], "insert_line": None,
                                           "flag": True, "empty": ""})
    assert dict(c.arguments)["view_range"] == "[1, 2]" and "insert_line" not in dict(c.arguments)
    assert parse_action(c.text) == [c] and parse_action(render_action([c, ToolCall.of("finish")])) == [
        c, ToolCall("finish")]
    assert "<parameter=old_str>\n    x = 1\n\n</parameter>" in c.text  # indentation and newlines kept
    assert parse_action("plain command") is None


def test_shell_normalisation():
    assert normalize_shell("  find .  -name   '*.py'  |  wc -l  ") == "find . -name '*.py' | wc -l"
    assert normalize_shell('grep "a    b" \\\n    f.txt') == 'grep "a    b" f.txt'
    assert normalize_shell("cat <<EOF > a.py\n    x  =  1\nEOF\r\n") == "cat <<EOF > a.py\n    x = 1\nEOF"


# --- observations: budgets, markers, characters -----------------------------------------------------------------
def split_at_marker(cut, unit):
    """(kept head, omitted count, kept tail) of a truncated text: the marker is on a line of its own."""
    (m,) = re.finditer(rf"\[\.\.\. ([\d,]+) {unit} truncated \.\.\.\]\n", cut)
    head = cut[:m.start()]
    assert head.endswith("\n")
    return head if head.endswith("\r\n") else head[:-1], int(m.group(1).replace(",", "")), cut[m.end():]


def test_observation_truncation_is_visible_and_never_inside_a_character():
    text = "".join(f"line {i}: café e\u0301 ☕ 数据\r\n" for i in range(300))
    short = truncate_chars(text, 400)
    head, omitted, tail = split_at_marker(short, "characters")
    assert text.startswith(head) and text.endswith(tail) and len(head) + len(tail) <= 400
    assert omitted == len(text) - len(head) - len(tail)
    assert not tail.startswith(("\u0301", "\n")) and head.endswith("\r\n")  # whole lines, whole characters
    assert truncate_chars("short", 400) == "short" and truncate_chars(text, 0) == text
    from srl.tiny import tiny_tokenizer

    tok = tiny_tokenizer()
    cut = truncate_tokens(text, 60, tok)
    head, omitted, tail = split_at_marker(cut, "tokens")
    assert text.startswith(head) and text.endswith(tail) and "\ufffd" not in cut and omitted > 0
    assert len(tok(head + tail, add_special_tokens=False)["input_ids"]) <= 64
    traj = AgentTrajectory("t", "task", [AgentStep("ls", "x" * 10_000), AgentStep("pwd", "/")])
    rows = agent_instances(traj, AgentOptions(observation_chars=100))
    assert "characters truncated" in rows[1]["prompt"][3]["content"] and len(rows[1]["prompt"][3]["content"]) < 160


def test_options_pairs_thoughts_and_think_off():
    steps = [AgentStep(f"cmd {i}", f"out {i}", thought=f"why {i}") for i in range(1, 6)]
    traj = AgentTrajectory("t", "Do it.", steps, system="You have a shell.")
    rows = agent_instances(traj, AgentOptions(last_pairs=0))
    assert all(len(r["prompt"]) == 2 for r in rows) and "4 earlier action(s)" in rows[4]["prompt"][1]["content"]
    rows = agent_instances(traj, AgentOptions(last_pairs=10, previous_thoughts=True, think="off"))
    assert len(rows[4]["prompt"]) == 2 + 8 and rows[4]["prompt"][2]["content"] == "<think>\nwhy 1\n</think>\ncmd 1"
    assert "<think>" not in rows[0]["prompt"][0]["content"].split("You have a shell.")[1]
    assert agent_instances(traj, AgentOptions(agent_system=False))[0]["prompt"][0]["content"].startswith("You are")


# --- the action reward ------------------------------------------------------------------------------------------
def test_action_reward_options():
    expert = call("bash", ("command", "grep -n  x a.py"))
    same_text = "<think>look</think>\n" + expert
    assert action_reward(same_text, expert) == 1.0 == srl_reward(same_text, expert)
    assert action_reward("no think " + expert, expert) == -1.0
    other_tool = call("str_replace_editor", ("command", "grep -n  x a.py"))
    assert action_similarity(other_tool, expert) > 0.5 and action_similarity(other_tool, expert, structure=True) == 0
    reordered = call("edit", ("b", "2"), ("a", "1"))
    assert action_similarity(reordered, call("edit", ("a", "1"), ("b", "2")), structure=True) == 1.0
    assert action_similarity("grep -n x a.py", expert, structure=True) == 0.0  # a command is not a call
    assert action_similarity(call("bash", ("command", "grep -n x a.py")), expert, shell=True) == 1.0
    assert action_similarity("ls   -a", "ls -a", shell=True, structure=True) == 1.0
    reward = get_action_reward(structure=True)
    assert reward(["<think>.</think>" + expert, "oops"], [expert, expert]) == [1.0, -1.0]
    assert reward.__name__ == "action_similarity"


# --- the command line -------------------------------------------------------------------------------------------
def bad_agent_inputs(tmp_path):
    good = {"id": "a", "resolved": True, "messages": [
        {"role": "user", "content": "Fix it."},
        {"role": "assistant", "content": None, "tool_calls": [{"function": {"name": "bash",
                                                                            "arguments": '{"command": "ls"}'}}]},
        {"role": "tool", "content": "a.py"}]}
    bad_json = json.loads(json.dumps(good))
    bad_json["messages"][1]["tool_calls"][0]["function"]["arguments"] = '{"command": "ls"'
    bad_role = json.loads(json.dumps(good))
    bad_role["messages"][2]["role"] = "robot"
    no_task = {**good, "messages": good["messages"][1:]}
    no_flag = {k: v for k, v in good.items() if k != "resolved"}
    cases = {
        "bad arguments": ([good, bad_json], "field 'messages[1].tool_calls[0].function.arguments': arguments are "
                                            "not valid JSON", 2, []),
        "unknown role": ([bad_role], "field 'messages[2].role': unknown role 'robot'", 1, []),
        "no task": ([good, no_task], "field 'messages': no task", 2, []),
        "no resolved flag": ([no_flag], "field 'resolved': missing: no resolved flag", 1, []),
        "no messages": ([{"resolved": True, "turns_x": []}], "no list of messages", 1, []),
        "bad pattern": ([good], "field 'action_pattern': invalid regex", None, ["--action_pattern", "(?P<action>"]),
        "solution option": ([good], "field 'title_hint': is for solution formats", None, ["--title_hint", "true"]),
    }
    for name, (records, message, line, extra) in cases.items():
        path = tmp_path / f"{name.replace(' ', '_')}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
        yield name, str(path), message, line, extra


def test_cli_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys):
    for name, path, message, line, extra in bad_agent_inputs(tmp_path):
        out_file = tmp_path / "out" / f"{name}.jsonl"
        code = main(["data", "build", "--format", "openai-tools", "--input", path, "--output", str(out_file)] + extra)
        err = capsys.readouterr().err
        assert code == 2, (name, err)
        assert len(err.strip().splitlines()) == 1 and message in err, (name, err)
        if line is not None:
            assert f"{path}:{line}:" in err, (name, err)
        assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir()), name


def test_cli_resolved_only_and_show(tmp_path, capsys):
    rows = []
    for i, resolved in enumerate([True, "False", "true", 0]):
        rows.append({"traj_id": f"t{i}", "resolved": resolved, "messages": [
            {"role": "system", "content": "You have a shell."}, {"role": "user", "content": f"Task {i}"},
            {"role": "assistant", "content": "", "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "bash", "arguments": {"command": "ls"}}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "a.py"},
            {"role": "assistant", "content": "Done."}]})
    path = tmp_path / "runs.json"
    path.write_text(json.dumps(rows))
    out = tmp_path / "inst.jsonl"
    assert main(["data", "build", "--format", "openai-tools", "--input", str(path), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"skipped: not resolved\s*│\s*2", printed) and re.search(r"instances written\s*│\s*2", printed)
    assert [json.loads(line)["trajectory_id"] for line in open(out)] == ["t0", "t2"]
    assert main(["data", "build", "--format", "openai-tools", "--input", str(path), "--output", str(out),
                 "--resolved_only", "false"]) == 0
    assert len(open(out).readlines()) == 4
    capsys.readouterr()
    assert main(["data", "show", str(out), "-n", "1"]) == 0
    assert "<function=bash>" in capsys.readouterr().out


@pytest.mark.slow  # a training run
def test_srl_train_on_agent_instances(tmp_path):
    import torch

    # the short custom-format trajectories: SWE tasks are ~3k tokens of the tiny tokenizer, too long for a test
    data = tmp_path / "agent.jsonl"
    assert main(["data", "build", "--format", "chat", "--chat_config", REACT_CONFIG, "--input", REACT,
                 "--output", str(data), "--think", "optional"]) == 0
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        code = main(["train", "--stage", "srl", "--model", "tiny", "--train_data", str(data), "--think", "optional",
                     "--use_cpu", "true", "--bf16", "false", "--per_device_train_batch_size", "8",
                     "--num_generations", "4", "--max_completion_length", "16", "--max_steps", "2",
                     "--tiny_warm_up_steps", "3", "--max_generation_rounds", "2", "--dataloader_pin_memory", "false",
                     "--output_dir", str(tmp_path / "run")])
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    metrics = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    assert any("reward" in m for m in metrics)
    completions = [json.loads(line) for line in open(tmp_path / "run" / "completions.jsonl")]
    experts = {r["expert_step"] for r in map(json.loads, open(data))}
    assert completions and all(c["expert_step"] in experts for c in completions)  # agent actions were the targets
    assert os.path.exists(tmp_path / "run" / "final" / "config.json")


def test_token_budget_through_data_build_and_train(tmp_path):
    """--observation_tokens cuts observations to tokens of --tokenizer: the data stage receives the loader
    (srl.models.load_tokenizer) from its caller, `srl data build` and `srl train` alike, and builds the same rows."""
    from srl.training.presets import stage_arguments
    from srl.training.rows import srl_rows

    flags = ["--format", "swe-agent", "--observation_tokens", "5", "--tokenizer", "tiny"]
    out = tmp_path / "inst.jsonl"
    assert main(["data", "build", "--input", NEBIUS, "--output", str(out), *flags]) == 0
    built = [json.loads(line) for line in open(out, encoding="utf-8")]
    assert any("tokens truncated" in m["content"] for r in built for m in r["prompt"])
    train_flags = ["--data_format" if f == "--format" else f for f in flags]
    run, _ = stage_arguments("srl", ["--model", "tiny", "--use_cpu", "true", "--train_data", NEBIUS, *train_flags,
                                 "--output_dir", str(tmp_path / "r")])
    assert srl_rows(run) == built
    with pytest.raises(InputError, match="tokenizer object"):
        AgentOptions(observation_tokens=3, tokenizer="tiny")
