"""`srl agent run` end to end with mini-swe-agent against a scripted OpenAI-compatible server on 127.0.0.1
(tests/agent_server.py), on 3 tasks of the shipped toolz suite, in the bubblewrap sandbox:

- the "oracle" script (apply the gold patch, run the tests, submit) resolves all 3; the "null" script none;
- hostile commands (writing outside the task, reading another task's files and the home folder, a fork bomb,
  network access to the host, a command that never ends) are contained and reported, and the run goes on;
- a rerun skips the finished tasks;
- the trajectories round-trip into SRL instances whose targets are exactly the commands that ran.

Needs bubblewrap (`apt-get install -y bubblewrap`; scripts/install.sh installs it as root): without it these tests
FAIL saying so.
"""

from __future__ import annotations

import json
import os

import pytest

from agent_server import SUBMIT, ScriptedServer, hostile_script, null_script, oracle_commands, oracle_script, srl_reply
from srl.agent.run import AgentRunConfig, run_agent
from srl.agent.sandbox import bwrap_missing_reason
from srl.agent.tasks import load_tasks
from srl.cli import main
from srl.data.agents import AgentOptions, build_agent_instances, read_agent_trajectories

TASKS = load_tasks(limit=3)
IDS = ",".join(t.instance_id for t in TASKS)


@pytest.fixture(autouse=True)
def bubblewrap():
    reason = bwrap_missing_reason()
    if reason is not None:
        pytest.fail(f"the agent sandbox needs bubblewrap: {reason}")


def _run(server, out, **kw) -> list[dict]:
    cfg = AgentRunConfig(model=server.model, base_url=server.url, output_dir=str(out), ids=IDS, step_limit=12,
                         command_timeout=kw.pop("command_timeout", 20), **kw)
    results, _ = run_agent(cfg, progress=False)
    return results


def _commands(traj: dict) -> list[str]:
    return [a["command"] for m in traj["messages"] if m.get("role") == "assistant"
            for a in m.get("extra", {}).get("actions", [])]


def test_oracle_resolves_null_does_not_and_trajectories_round_trip(tmp_path):
    with ScriptedServer(oracle_script(TASKS)) as server:
        results = _run(server, tmp_path / "oracle", workers=2)
        assert server.requests == 9  # 3 tasks x (apply, test, submit)
        assert [r["resolved"] for r in results] == [True] * 3
        assert {r["exit_reason"] for r in results} == {"Submitted"}
        assert all(r["steps"] == 3 and r["tokens"]["completion"] > 0 and r["patch_applied"] for r in results)
        # resumable: a rerun finds every task finished and calls nothing
        rerun, skipped = run_agent(AgentRunConfig(model=server.model, base_url=server.url, ids=IDS,
                                                  output_dir=str(tmp_path / "oracle")), progress=False)
        assert skipped == 3 and server.requests == 9 and rerun == results
    summary = json.loads((tmp_path / "oracle" / "summary.json").read_text())
    assert summary["resolved"] == 3 and summary["tasks"] == 3 and summary["wilson_95"][1] == 1.0
    preds = [json.loads(l) for l in (tmp_path / "oracle" / "preds.jsonl").read_text().splitlines()]
    assert [p["model_patch"] for p in preds] == [t.patch for t in TASKS]  # the agent's diff is the gold one

    # trajectories -> SRL instances: one per command that ran, in order, target = that command
    path = str(tmp_path / "oracle" / "trajectories.jsonl")
    trajs = [json.loads(l) for l in open(path)]
    assert all(t["trajectory_format"] == "mini-swe-agent-1.1" and t["resolved"] for t in trajs)
    instances = list(build_agent_instances(read_agent_trajectories(path, "mini-swe-agent")))
    by_traj = {}
    for inst in instances:
        by_traj.setdefault(inst["trajectory_id"], []).append(inst["expert_step"])
    assert [by_traj[t["instance_id"]] for t in trajs] == [_commands(t) for t in trajs]
    assert all(len(v) == 3 and v[-1] == SUBMIT for v in by_traj.values())

    # the same through the CLI (`srl data build --format mini-swe-agent`): the resolved runs only
    out = tmp_path / "steps.jsonl"
    assert main(["data", "build", "--format", "mini-swe-agent", "--input", path, "--output", str(out)]) == 0
    assert [json.loads(l)["expert_step"] for l in out.read_text().splitlines()] == \
        [c for t in trajs for c in _commands(t)]

    with ScriptedServer(null_script) as server:
        results = _run(server, tmp_path / "null")
    assert [r["resolved"] for r in results] == [False] * 3
    assert all(r["patch_chars"] == 0 and r["steps"] == 1 for r in results)
    assert list(read_agent_trajectories(str(tmp_path / "null" / "trajectories.jsonl"), "mini-swe-agent")) == \
        [("skip", "not resolved")] * 3


def test_hostile_commands_are_contained_and_reported(tmp_path):
    outside = tmp_path / "outside.txt"
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "key").write_text("TOP-SECRET-42")
    home = os.path.expanduser("~")
    other_task_file = tmp_path / "out" / TASKS[0].instance_id / "repo" / "toolz" / "itertoolz.py"
    with ScriptedServer(lambda m: "") as probe:  # a live port on the host's loopback
        hostile = [
            f"echo pwned > {outside}; echo pwned > /usr/pwned; ls -la {tmp_path}",     # write outside the task
            f"cat {secret}/key; ls {home}; cat {home}/.bashrc",                        # another folder, $HOME
            f"head -3 {other_task_file}",                                               # another task's copy
            f"python -c \"import urllib.request; urllib.request.urlopen('{probe.url}/models', timeout=3)\"",
            ":(){ :|:& };:",                                                           # fork bomb
            "sleep 600",                                                               # never ends
        ]
        with ScriptedServer(hostile_script(hostile, TASKS)) as server:
            results = _run(server, tmp_path / "out", command_timeout=4, keep_repos=True)
        assert probe.requests == 0  # the sandbox never reached the host's server
    assert not outside.exists() and not os.path.exists("/usr/pwned")
    # the run went on: after the hostile commands the oracle fix resolved every task
    assert [r["resolved"] for r in results] == [True] * 3
    assert all(r["limit_hits"].get("timeout", 0) >= 1 for r in results)  # sleep 600 (and the bomb) were killed
    traj = json.loads((tmp_path / "out" / TASKS[0].instance_id / f"{TASKS[0].instance_id}.traj.json").read_text())
    observations = [m["content"] for m in traj["messages"] if m["role"] == "user"][1:]
    text = "\n".join(observations)
    assert "TOP-SECRET-42" not in text
    assert "Read-only file system" in observations[0] or "No such file" in observations[0]
    assert "No such file" in observations[1]
    # the last task ran while the first task's copy was on the host (--keep_repos): not visible in the sandbox
    assert other_task_file.exists()
    last = json.loads((tmp_path / "out" / TASKS[2].instance_id / f"{TASKS[2].instance_id}.traj.json").read_text())
    assert "No such file" in [m["content"] for m in last["messages"] if m["role"] == "user"][3]
    assert "URLError" in observations[3] or "refused" in observations[3]
    assert "killed" in observations[5] and "time limit" in observations[5]  # reported to the agent
    assert {"command": "sleep 600", "limit": "timeout"} in traj["info"]["srl"]["limit_hits"]


def test_srl_action_style_and_data_output_in_one_command(tmp_path):
    """A model that answers as SRL trains it (<think>...</think> then the command) runs with --action_style srl, and
    --data_output turns its resolved runs into instances whose targets are its commands (self-improvement)."""
    task = TASKS[0]
    with ScriptedServer(oracle_script([task], srl_reply)) as server:
        out, steps = tmp_path / "run", tmp_path / "steps.jsonl"
        assert main(["agent", "run", "--model", server.model, "--base_url", server.url, "--output_dir", str(out),
                     "--ids", task.instance_id, "--action_style", "srl", "--data_output", str(steps)]) == 0
    traj = json.loads((out / "trajectories.jsonl").read_text())
    assert traj["resolved"] and "<think>" in traj["messages"][0]["content"]  # the SRL instructions were given
    assert [json.loads(l)["expert_step"] for l in steps.read_text().splitlines()] == oracle_commands(task)


def test_an_interrupted_task_is_recorded_as_an_error_and_runs_again(tmp_path):
    import threading

    from srl.agent.run import mini_config, run_task

    task = TASKS[0]
    stop = threading.Event()
    stop.set()  # Ctrl-C came: the task stops before its first command
    config = mini_config()
    with ScriptedServer(oracle_script([task])) as server:
        cfg = AgentRunConfig(model=server.model, base_url=server.url, output_dir=str(tmp_path), ids=task.instance_id)
        result = run_task(task, cfg, {k: v for k, v in config["agent"].items() if k != "mode"}, config["model"], stop)
        assert result["exit_reason"] == "RunInterrupted" and result["error"] == "interrupted"
        assert not result["resolved"] and server.requests == 1
        results, skipped = run_agent(cfg, progress=False)  # the rerun runs it again, to the end
    assert skipped == 0 and results[0]["resolved"] and results[0]["error"] is None
