import json
import os
import subprocess
import sys

import pytest

from srl.cli import main


def run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_build_and_show(tmp_path, gsm8k_sample, capsys):
    out_file = tmp_path / "inst.jsonl"
    code, out, err = run(["data", "build", "--input", gsm8k_sample, "--format", "gsm8k", "--output", str(out_file)],
                         capsys)
    assert code == 0, err
    rows = [json.loads(line) for line in open(out_file)]
    assert "trajectories read" in out and "instances written" in out and f"{len(rows):,}" in out
    code, out, err = run(["data", "show", str(out_file), "-n", "2"], capsys)
    assert code == 0 and "expert step" in out and out.count("step ") >= 2


def test_yaml_config_and_flag_override(tmp_path, gsm8k_sample, capsys):
    cfg = tmp_path / "data.yaml"
    cfg.write_text(f"input: {gsm8k_sample}\nformat: gsm8k\noutput: {tmp_path / 'a.jsonl'}\ninclude_last_step: true\n")
    assert main(["data", "build", "--config", str(cfg), "--output", str(tmp_path / "b.jsonl")]) == 0
    assert not (tmp_path / "a.jsonl").exists()
    rows = [json.loads(line) for line in open(tmp_path / "b.jsonl")]
    first = [r for r in rows if r["trajectory_id"] == rows[0]["trajectory_id"]]
    assert len(first) == first[0]["num_steps"]  # include_last_step from the YAML file


def bad_input_cases(tmp_path):
    good = {"question": "What is 1+1?", "answer": "1 plus 1 is 2.\nSo it is 2.\n#### 2"}
    cases = {
        "missing file": (None, "no such file", None),
        "invalid json": ([json.dumps(good), "{not json"], "invalid JSON", 2),
        "missing field": ([json.dumps(good), json.dumps({"question": "q"})], "field 'answer': missing", 2),
        "empty field": ([json.dumps({**good, "question": "  "})], "field 'question': empty", 1),
        "huge step": ([json.dumps(good), json.dumps({**good, "answer": "x" * 60_000 + "\ny\n#### 1"})],
                      "field 'answer'", 2),
    }
    for name, (lines, message, line) in cases.items():
        path = tmp_path / f"{name.replace(' ', '_')}.jsonl"
        if lines is not None:
            path.write_text("\n".join(lines) + "\n")
        yield name, str(path), message, line
    raw = tmp_path / "latin1.jsonl"
    raw.write_bytes(json.dumps(good).encode() + b"\n" + b'{"question": "caf\xe9", "answer": "a\\nb"}\n')
    yield "non-utf8", str(raw), "not UTF-8", 2


def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys):
    for name, path, message, line in bad_input_cases(tmp_path):
        out_file = tmp_path / "out" / f"{name}.jsonl"
        code, out, err = run(["data", "build", "--input", path, "--format", "gsm8k", "--output", str(out_file)],
                             capsys)
        assert code == 2, name
        assert len(err.strip().splitlines()) == 1, (name, err)
        assert message in err and path in err, (name, err)
        if line is not None:
            assert f"{path}:{line}:" in err, (name, err)
        out_dir = tmp_path / "out"
        assert not out_file.exists() and not (out_dir.exists() and any(out_dir.iterdir())), name  # no temp file


def test_unknown_option_and_bad_config(tmp_path, gsm8k_sample, capsys):
    code, _, err = run(["data", "build", "--input", gsm8k_sample, "--output", "x.jsonl", "--nope", "1"], capsys)
    assert code == 2 and "--nope" in err and len(err.strip().splitlines()) == 1
    cfg = tmp_path / "c.yaml"
    cfg.write_text("input: a\nformatt: gsm8k\n")
    code, _, err = run(["data", "build", "--config", str(cfg), "--output", "x.jsonl"], capsys)
    assert code == 2 and "field 'formatt': unknown option" in err
    code, _, err = run(["data", "build", "--input", gsm8k_sample, "--output", "x.jsonl", "--format", "regex"], capsys)
    assert code == 2 and "--pattern" in err


def test_console_script_help():
    exe = os.path.join(os.path.dirname(sys.executable), "srl")
    result = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "data build" in result.stdout
    result = subprocess.run([exe, "data", "build", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "--include_last_step" in result.stdout and "--keep_calculator" in result.stdout


def test_progress_outside_a_terminal_prints_plain_lines_at_an_interval(monkeypatch):
    """In a log file rich shows nothing until the end; LineProgress prints a line at most every interval, and the
    final count at the end."""
    import io

    from srl.console import LineProgress

    clock = [0.0]
    monkeypatch.setattr("time.time", lambda: clock[0])
    out = io.StringIO()
    progress = LineProgress(interval=30, stream=out)
    task = progress.add_task("gsm8k: generating", total=40)
    for _ in range(4):  # at t = 10, 20, 30, 40 s
        clock[0] += 10
        progress.advance(task, 10)
    progress.stop()
    lines = out.getvalue().splitlines()
    assert lines == ["gsm8k: generating 30/40 (75%) 30s elapsed, ~10s left",
                     "gsm8k: generating 40/40 (100%) 40s elapsed"]


def test_training_progress_line_carries_the_latest_status(monkeypatch):
    import io

    from srl.console import LineProgress

    out = io.StringIO()
    progress = LineProgress(interval=0, stream=out)
    task = progress.add_task("srl", total=3, completed=0, status="")
    progress.update(task, completed=1)  # step end: waits for the log line
    progress.update(task, completed=1, status="reward 0.210")
    progress.stop()
    assert out.getvalue().splitlines() == [out.getvalue().splitlines()[0]]
    assert out.getvalue().startswith("srl 1/3 (33%)") and out.getvalue().rstrip().endswith("reward 0.210")


def test_build_never_destroys_user_data(tmp_path, gsm8k_sample, capsys):
    """Issue 12 item 0: an --output that is not a previous output of ours is refused (exit 2, one line) and left
    exactly as it was — a user's folder holding the input file, a folder of other files, a non-instance file, the
    input itself. Our own outputs (files and `datasets` folders) are replaced on a rerun."""
    import shutil

    user_dir = tmp_path / "mydata"
    user_dir.mkdir()
    inp = user_dir / "train.jsonl"
    shutil.copy(gsm8k_sample, inp)
    other_dir = tmp_path / "notes"
    other_dir.mkdir()
    (other_dir / "todo.txt").write_text("keep me")
    other_file = tmp_path / "results.jsonl"
    other_file.write_text('{"score": 1}\n')
    for target, input_path in [(user_dir, inp), (other_dir, gsm8k_sample), (other_file, gsm8k_sample),
                               (inp, inp)]:
        before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
        code, _, err = run(["data", "build", "--input", str(input_path), "--format", "gsm8k", "--output",
                            str(target)], capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1 and "output" in err, (target, err)
        after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
        assert after == before, target
    # our own outputs are rebuilt in place: a folder (`datasets`) and a file
    for name in ["ds", "inst.jsonl", "inst.parquet"]:
        out = tmp_path / name
        for _ in range(2):
            code, _, err = run(["data", "build", "--input", gsm8k_sample, "--format", "gsm8k", "--output", str(out),
                                "--limit", "3"], capsys)
            assert code == 0, err
    assert (tmp_path / "ds" / "srl_instances.json").exists()
