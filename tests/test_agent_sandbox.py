"""The pieces under `srl agent run`: the bubblewrap sandbox's limits, the task file's bad-input messages, diffs
that apply back, the shipped suite's shape, and SWE-bench predictions read by the harness's own loader.
Needs bubblewrap (`apt-get install -y bubblewrap`): without it the sandbox tests FAIL saying so."""

from __future__ import annotations

import json
import os

import pytest

from srl.agent.sandbox import MOUNT, Sandbox, SandboxLimits, bwrap_missing_reason
from srl.agent.swebench import check_predictions, prediction
from srl.agent.tasks import SUITE, apply_patch, diff_trees, load_tasks, parse_pytest_report, patch_files
from srl.errors import InputError


@pytest.fixture
def box(tmp_path):
    reason = bwrap_missing_reason()
    if reason is not None:
        pytest.fail(f"the agent sandbox needs bubblewrap: {reason}")
    work = tmp_path / "work"
    work.mkdir()
    with Sandbox(str(work), SandboxLimits(timeout=5, memory_mb=512, output_chars=1000, processes=64)) as b:
        yield b


def test_sandbox_limits(box, tmp_path):
    r = box.run("pwd; echo hi > mine.txt; cat mine.txt")
    assert r.output == f"{MOUNT}\nhi\n" and r.returncode == 0
    assert (tmp_path / "work" / "mine.txt").read_text() == "hi\n"  # the task's copy is writable
    r = box.run("python -c \"b = bytearray(2 * 1024**3)\"")  # over memory_mb
    assert r.returncode != 0 and "MemoryError" in r.output
    r = box.run("seq 1 100000")
    assert len(r.output) == 1000 and r.dropped_chars > 0 and "output limit" in r.limit_note
    r = box.run("for i in $(seq 200); do sleep 1 & done")  # 200 processes > 64 (bash retries, maybe to the timeout)
    assert "fork" in r.output and "Resource temporarily unavailable" in r.output
    r = box.run("sleep 30")
    assert r.timed_out and r.returncode == -9 and r.seconds < 15 and "time limit" in r.limit_note
    r = box.run("touch /etc/x /usr/x /x 2>&1; ls /root 2>&1 | head -3")
    assert r.output.count("Read-only file system") == 3
    assert {"command": "seq 1 100000", "limit": "output"} in box.events
    assert {"command": "sleep 30", "limit": "timeout"} in box.events


def test_task_file_errors_name_file_line_field(tmp_path):
    row = json.loads(open(SUITE).readline())
    row["source"] = os.path.join(os.path.dirname(SUITE), row["source"])  # an absolute path works too
    bad = tmp_path / "tasks.jsonl"
    bad.write_text(json.dumps(row) + "\n" + json.dumps({**row, "instance_id": "x", "FAIL_TO_PASS": "t"}) + "\n")
    with pytest.raises(InputError, match=r"tasks.jsonl:2: field 'FAIL_TO_PASS': must be a list of strings"):
        load_tasks(str(bad))
    bad.write_text(json.dumps(row) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(InputError, match=r"tasks.jsonl:2: field 'instance_id': duplicate"):
        load_tasks(str(bad))
    with pytest.raises(InputError, match="no task named nope"):
        load_tasks(ids=["nope"])


def test_the_shipped_suite(tmp_path):
    tasks = load_tasks()
    assert len(tasks) >= 20 and len({t.instance_id for t in tasks}) == len(tasks)
    for t in tasks:
        assert t.FAIL_TO_PASS and not set(t.FAIL_TO_PASS) & set(t.PASS_TO_PASS)
        assert t.files == patch_files(t.bug_patch) and all(f.startswith("toolz/") for f in t.files)
        assert "toolz/tests" not in " ".join(t.files)  # the tests are never changed
        for line in t.patch.splitlines():  # the statement shows the failure, never the fixed line
            if line.startswith("+") and not line.startswith("+++") and line[1:].strip():
                assert line[1:].strip() not in t.problem_statement


def test_diff_trees_applies_back(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        (d / "pkg").mkdir(parents=True)
    (a / "pkg" / "m.py").write_text("x = 1\ny = 2\n")
    (b / "pkg" / "m.py").write_text("x = 1\ny = 3")  # and no newline at the end
    (a / "gone.txt").write_text("bye\n")
    (b / "new.txt").write_text("hello\n")
    patch = diff_trees(str(a), str(b))
    assert patch_files(patch) == ["gone.txt", "new.txt", "pkg/m.py"]
    ok, message = apply_patch(patch, str(a))
    assert ok, message
    assert diff_trees(str(a), str(b)) == "" and not (a / "gone.txt").exists()
    assert apply_patch("diff --git a/z b/z\n--- a/z\n+++ b/z\n@@ -1 +1 @@\n-q\n+r\n", str(a))[0] is False


def test_pytest_report_and_swebench_predictions(tmp_path):
    report = "PASSED a.py::t1\nFAILED a.py::t2 - assert 1 == 2\nERROR b.py::t3\nSKIPPED [1] c.py:3: why\n"
    assert parse_pytest_report(report) == {"a.py::t1": "PASSED", "a.py::t2": "FAILED", "b.py::t3": "ERROR"}
    path = tmp_path / "preds.jsonl"
    path.write_text(json.dumps(prediction("astropy__astropy-12907", "m", "diff --git a/x b/x\n")) + "\n")
    assert check_predictions(str(path))[0]["model_patch"].startswith("diff")
    path.write_text(json.dumps({"instance_id": "a", "model_patch": ""}) + "\n")
    with pytest.raises(InputError, match="preds.jsonl:1: field 'model_name_or_path'"):
        check_predictions(str(path))
    path.write_text("[1]")
    (tmp_path / "p.json").write_text("[1]")
    with pytest.raises(InputError, match="the SWE-bench harness cannot read it"):
        check_predictions(str(tmp_path / "p.json"))
    assert not os.path.exists(tmp_path / "logs")


def test_swebench_trajectories_get_resolved_from_the_harness_report(tmp_path, capsys):
    from srl.cli import main

    run = tmp_path / "swebench"
    for iid in ("django__django-1", "sympy__sympy-2"):
        (run / iid).mkdir(parents=True)
        (run / iid / f"{iid}.traj.json").write_text(json.dumps({"messages": [], "info": {"exit_status": "Submitted"},
                                                                "trajectory_format": "mini-swe-agent-1.1"}))
    report = tmp_path / "m.srl.json"
    report.write_text(json.dumps({"resolved_ids": ["sympy__sympy-2"], "unresolved_ids": ["django__django-1"]}))
    assert main(["agent", "swebench", "--label_run", str(run), "--report", str(report)]) == 0
    rows = [json.loads(l) for l in (run / "trajectories.jsonl").read_text().splitlines()]
    assert [(r["instance_id"], r["resolved"]) for r in rows] == [("django__django-1", False), ("sympy__sympy-2", True)]
    assert main(["agent", "swebench", "--label_run", str(run)]) == 2
    assert "--label_run and --report go together" in capsys.readouterr().err


def test_the_oracle_file_setting_names_the_files_to_change():
    from srl.agent.run import task_text

    task = load_tasks(limit=1)[0]
    plain, oracle = task_text(task, False), task_text(task, True)
    assert plain.startswith(task.problem_statement) and "The fix belongs in" not in plain
    assert oracle == plain + "\n\nThe fix belongs in: `toolz/itertoolz.py`."
