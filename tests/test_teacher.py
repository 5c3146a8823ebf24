"""Teacher data (`srl data generate`, `srl data rewrite`, srl.teacher) against a small FAKE OpenAI-compatible
server started here on 127.0.0.1 (a free port, stdlib http.server in a thread). The fake answers from a script
per problem: good answers, 429s with Retry-After, 500s, answers slower than the client's timeout, bodies that are
not JSON, replies without choices, 401s. Each is retried or reported and nothing is lost; a SIGKILL of a real
`srl data generate` process mid-run, then a rerun, leaves no duplicate and no missing row; the API key never
appears in any output, log or file. The real server (vLLM with SmolLM2) is tested in test_teacher_server.py.

Problems are real GSM8K train rows (the bundled sample)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from srl.cli import main
from srl.errors import InputError
from srl.teacher import (EndpointConfig, GenerateConfig, RewriteConfig, check_rewrite, generate_solutions,
                         rewrite_solutions)
from srl.teacher.journal import Journal, check_output
from srl.teacher.prompt import TeacherPrompt
from srl.teacher.rewrite import Source

from conftest import BUNDLED_GSM8K, REPO

ROWS = [json.loads(line) for line in open(BUNDLED_GSM8K, encoding="utf-8")]
GOLD = {r["question"]: r["answer"].rsplit("#### ", 1)[1].strip() for r in ROWS}


# --- the fake server ----------------------------------------------------------------------------------------
class Fake:
    """A fake chat-completions server. `plan(problem, attempt, body)` (attempt: 0-based count of requests seen for
    that problem) returns an action: ("ok", text[, finish_reason]), ("status", code[, retry_after]),
    ("sleep", seconds, text), ("bad_json",), ("no_choices",). Every request is recorded (body and headers)."""

    def __init__(self, plan, problems):
        self.plan, self.problems = plan, list(problems)
        self.requests: list[dict] = []
        self.attempts: Counter = Counter()
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                try:
                    fake.answer(self, body)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def problem_of(self, body) -> str:
        content = body["messages"][-1]["content"]
        return next((p for p in self.problems if p in content), "?")

    def answer(self, handler, body):
        problem = self.problem_of(body)
        with self.lock:
            attempt = self.attempts[problem]
            self.attempts[problem] += 1
            self.requests.append({"body": body, "auth": handler.headers.get("Authorization"), "problem": problem})
        action = self.plan(problem, attempt, body)
        kind = action[0]
        if kind == "sleep":
            time.sleep(action[1])
            action = ("ok", action[2])
            kind = "ok"
        if kind == "status":
            data = json.dumps({"error": {"message": f"fake {action[1]}", "type": "fake"}}).encode()
            handler.send_response(action[1])
            if len(action) > 2:
                handler.send_header("Retry-After", str(action[2]))
        else:
            if kind == "bad_json":
                data = b'{"id": "x", "choices": [{"message": {"content": "tr'
            else:
                choices = [] if kind == "no_choices" else [{
                    "index": 0, "message": {"role": "assistant", "content": action[1]},
                    "finish_reason": action[2] if len(action) > 2 else "stop"}]
                data = json.dumps({"id": "fake", "object": "chat.completion", "created": 0, "model": body["model"],
                                   "choices": choices,
                                   "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}).encode()
            handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def count(self, problem=None) -> int:
        return sum(1 for r in self.requests if problem is None or r["problem"] == problem)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_server():
    made = []

    def start(plan, problems):
        made.append(Fake(plan, problems))
        return made[-1]

    yield start
    for f in made:
        f.close()


def problems_file(tmp_path, rows, name="problems.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def read_jsonl(path):
    return [json.loads(line) for line in open(path, encoding="utf-8")]


def right(problem):
    return f"Working it out step by step, the result is \\boxed{{{GOLD[problem]}}}."


def wrong(problem):
    return f"I think the answer is \\boxed{{{int(float(GOLD[problem])) + 1}}}."


def endpoint(fake, **kw):
    kw.setdefault("concurrency", 4)
    kw.setdefault("timeout", 5.0)
    return EndpointConfig(model="fake-teacher", base_url=fake.url, **kw)


# --- generate -----------------------------------------------------------------------------------------------
def test_generate_keeps_verified_samples_and_counts_correct_per_problem(tmp_path, fake_server):
    rows = ROWS[:6]
    qs = [r["question"] for r in rows]
    # per problem: attempts 0 and 2 right, 1 wrong; problem 4 answers `#### n` (right), problem 5 no answer
    def plan(problem, attempt, body):
        if problem == qs[4]:
            return ("ok", f"So in total it is\n#### {GOLD[problem]}")
        if problem == qs[5]:
            return ("ok", "I cannot tell.")
        return ("ok", wrong(problem) if attempt == 1 else right(problem))

    fake = fake_server(plan, qs)
    out = str(tmp_path / "kept.jsonl")
    cfg = GenerateConfig(input=problems_file(tmp_path, rows), output=out, n=3, temperature=1.0, max_tokens=64)
    summary = generate_solutions(cfg, endpoint(fake))

    assert fake.count() == 18 and summary.calls.called == 18 and not summary.calls.failed
    assert summary.samples == 18 and summary.correct == 4 * 2 + 3 and summary.kept == 11
    assert summary.wrong == {"answer differs from the reference": 4, "no final answer found": 3}
    assert summary.problems_with_correct == 5
    kept = read_jsonl(out)
    assert len(kept) == 11 and len({r["id"] for r in kept}) == 11
    for r in kept:
        assert r["answer"] == GOLD[r["problem"]] and r["correct_samples"] == (3 if r["problem"] == qs[4] else 2)
        assert r["samples"] == 3 and GOLD[r["problem"]] in r["solution"]
    counts = json.load(open(tmp_path / "kept.summary.json"))["per_problem"]
    assert sorted(counts.values()) == [[0, 3], [2, 3], [2, 3], [2, 3], [2, 3], [3, 3]]
    # the request: the default prompt, the sampling settings, the model
    body = fake.requests[0]["body"]
    assert body["model"] == "fake-teacher" and body["temperature"] == 1.0 and body["max_tokens"] == 64
    assert body["messages"][-1]["content"].endswith("put your final answer within \\boxed{}.")

    # a rerun calls nothing and writes the same kept rows
    again = generate_solutions(cfg, endpoint(fake))
    assert fake.count() == 18 and again.calls.done_before == 18 and again.calls.called == 0
    assert read_jsonl(out) == kept
    # other sampling settings are other calls; the rows of the first settings stay in the journal
    generate_solutions(GenerateConfig(input=cfg.input, output=out, n=1, temperature=0.5, max_tokens=64), endpoint(fake))
    assert fake.count() == 24 and len(read_jsonl(tmp_path / "kept.calls.jsonl")) == 24


FAILURES = ["429 then ok", "500, 503 then ok", "slower than the timeout then ok", "not JSON then ok",
            "no choices then ok", "500 forever", "not JSON forever", "ok"]


def failure_plan(qs, healthy=lambda: False):
    kinds = dict(zip(qs, FAILURES))

    def plan(problem, attempt, body):
        kind = "ok" if healthy() else kinds[problem]
        steps = {"429 then ok": [("status", 429, 0)], "500, 503 then ok": [("status", 500), ("status", 503)],
                 "slower than the timeout then ok": [("sleep", 3.0, right(problem))],
                 "not JSON then ok": [("bad_json",)], "no choices then ok": [("no_choices",)],
                 "500 forever": [("status", 500)] * 100, "not JSON forever": [("bad_json",)] * 100}.get(kind, [])
        return steps[attempt] if attempt < len(steps) else ("ok", right(problem))

    return plan


def test_failed_calls_are_retried_or_reported_and_a_rerun_calls_exactly_them(tmp_path, fake_server, capsys):
    rows = ROWS[10:10 + len(FAILURES)]
    qs = [r["question"] for r in rows]
    healthy = {"now": False}
    fake = fake_server(failure_plan(qs, lambda: healthy["now"]), qs)
    out = str(tmp_path / "kept.jsonl")
    argv = ["data", "generate", "--input", problems_file(tmp_path, rows), "--output", out, "--n", "1",
            "--model", "fake-teacher", "--base_url", fake.url, "--timeout", "1", "--max_retries", "2",
            "--bad_reply_retries", "2", "--concurrency", "4"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert f"2 call(s) failed after all retries; the answered ones are in {tmp_path / 'kept.calls.jsonl'}: rerun " \
           "the same command to call the failed ones again" in err

    by_kind = dict(zip(FAILURES, qs))
    assert fake.count(by_kind["429 then ok"]) == 2 and fake.count(by_kind["500, 503 then ok"]) == 3
    assert fake.count(by_kind["slower than the timeout then ok"]) == 2
    assert fake.count(by_kind["not JSON then ok"]) == 2 and fake.count(by_kind["no choices then ok"]) == 2
    assert fake.count(by_kind["500 forever"]) == 3  # the first try and --max_retries 2 (the openai client's)
    assert fake.count(by_kind["not JSON forever"]) == 3  # the first try and --bad_reply_retries 2 (ours)
    summary = json.load(open(tmp_path / "kept.summary.json"))
    assert summary["calls"]["failed"] == {"HTTP 500": 1, "malformed reply: not JSON": 1}
    assert summary["correct"] == 6 and len(read_jsonl(out)) == 6
    assert {r["problem"] for r in read_jsonl(out)} == set(qs) - {by_kind["500 forever"], by_kind["not JSON forever"]}

    healthy["now"] = True
    before = fake.count()
    assert main(argv) == 0
    assert fake.count() - before == 2  # exactly the two failed calls
    journal = read_jsonl(tmp_path / "kept.calls.jsonl")
    assert len(journal) == len(qs) == len({r["key"] for r in journal})
    assert {r["problem"] for r in read_jsonl(out)} == set(qs)


def test_a_refused_key_stops_the_run_with_one_line(tmp_path, fake_server, capsys):
    rows = ROWS[:5]
    fake = fake_server(lambda p, a, b: ("status", 401), [r["question"] for r in rows])
    out = str(tmp_path / "kept.jsonl")
    code = main(["data", "generate", "--input", problems_file(tmp_path, rows), "--output", out, "--n", "2",
                 "--model", "fake-teacher", "--base_url", fake.url, "--concurrency", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and fake.count() == 1  # not retried, and nothing else was called
    assert err[-1].startswith("srl: error: field 'api_key_env': the endpoint refused the call: HTTP 401: the API "
                              "key was refused")
    assert err[-1].endswith("; nothing was written")
    assert sorted(os.listdir(tmp_path)) == ["problems.jsonl"]  # no output, no journal, no summary


# Issue 24 item 8: a run ends with exit code 2 and nothing written when no call was answered (a configuration
# error: a refused key, an unknown model, a server that is down or does not speak the API); with a journal to
# resume from, said in the message, when some were.
NOTHING_ANSWERED = [
    ("HTTP 404", lambda p, a, b: ("status", 404), "field 'model': the endpoint refused the call: HTTP 404: no such "
                                                  "model or URL"),
    ("not JSON", lambda p, a, b: ("bad_json",), "field 'base_url': no call was answered: malformed reply: not JSON "
                                                "("),
    ("no choices", lambda p, a, b: ("no_choices",), "field 'base_url': no call was answered: reply without choices"),
    ("HTTP 500", lambda p, a, b: ("status", 500), "field 'base_url': no call was answered: HTTP 500 ("),
    ("unreachable", None, "field 'base_url': no call was answered: connection error ("),
]


@pytest.mark.parametrize("name,plan,message", NOTHING_ANSWERED, ids=[c[0] for c in NOTHING_ANSWERED])
@pytest.mark.parametrize("command", ["generate", "rewrite"])
def test_no_call_answered_is_exit_2_and_nothing_written(name, plan, message, command, tmp_path, fake_server, capsys):
    rows = ROWS[:2]
    url = fake_server(plan, [r["question"] for r in rows]).url if plan else "http://127.0.0.1:9/v1"  # discard port
    argv = ["data", command, "--input", problems_file(tmp_path, rows), "--output", str(tmp_path / "out.jsonl"),
            "--model", "fake-teacher", "--base_url", url, "--max_retries", "0", "--bad_reply_retries", "0",
            "--concurrency", "1"]
    argv += ["--n", "2"] if command == "generate" else ["--solution_field", "answer"]
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("srl: error: ") and message in err[-1], err
    assert err[-1].endswith("; nothing was written") and len([e for e in err if e.startswith("srl:")]) == 1, err
    assert sorted(os.listdir(tmp_path)) == ["problems.jsonl"]


def test_a_refusal_after_answered_calls_keeps_the_journal_and_says_so(tmp_path, fake_server, capsys):
    rows = ROWS[:4]
    first = rows[0]["question"]
    fake = fake_server(lambda p, a, b: ("ok", right(p)) if p == first else ("status", 404),
                       [r["question"] for r in rows])
    out = tmp_path / "kept.jsonl"
    argv = ["data", "generate", "--input", problems_file(tmp_path, rows), "--output", str(out), "--n", "1",
            "--model", "fake-teacher", "--base_url", fake.url, "--concurrency", "1", "--limit", "4"]
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    journal = tmp_path / "kept.calls.jsonl"
    answered = len(read_jsonl(journal))
    assert code == 2 and answered >= 1, err
    assert err[-1].endswith(f"the {answered} answered calls are kept in {journal}: rerun the same command to "
                            "continue"), err
    assert not out.exists()  # the outputs are written when a run ends, not after a refusal


def test_no_key_for_the_default_endpoint_is_an_input_error(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("SRL_TEST_NO_SUCH_KEY", raising=False)
    code = main(["data", "generate", "--input", problems_file(tmp_path, ROWS[:2]), "--output",
                 str(tmp_path / "k.jsonl"), "--model", "gpt-x", "--api_key_env", "SRL_TEST_NO_SUCH_KEY"])
    assert code == 2
    assert "no API key: set $SRL_TEST_NO_SUCH_KEY" in capsys.readouterr().err


def srl_process(args, env_extra=None, **kw):
    env = dict(os.environ, PYTHONPATH=os.path.join(REPO, "src"), OMP_NUM_THREADS="1", NO_COLOR="1")
    env.update(env_extra or {})
    return subprocess.Popen([sys.executable, "-m", "srl.cli", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def test_the_api_key_is_sent_but_never_printed_logged_or_written(tmp_path, fake_server):
    rows = ROWS[20:23]
    fake = fake_server(lambda p, a, b: ("ok", right(p)), [r["question"] for r in rows])
    secret = "sk-srl-test-9f8e7d6c5b4a-SECRET"
    out = tmp_path / "out" / "kept.jsonl"
    args = ["data", "generate", "--input", problems_file(tmp_path, rows), "--output", str(out), "--n", "2",
            "--model", "fake-teacher", "--base_url", fake.url, "--api_key_env", "MY_TEACHER_KEY"]
    env = {"MY_TEACHER_KEY": secret, "OPENAI_LOG": "debug"}  # openai's own debug logging asked for
    texts = []
    for extra in (["--dry_run"], []):
        proc = srl_process(args + extra, env)
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr
        texts += [stdout, stderr]
    assert '"authorization": "Bearer $MY_TEACHER_KEY (not shown)"' in texts[0]
    assert {r["auth"] for r in fake.requests} == {f"Bearer {secret}"}
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"kept.jsonl", "kept.calls.jsonl", "kept.summary.json"}
    texts += [p.read_text(encoding="utf-8", errors="replace") for p in files]
    assert not [t for t in texts if secret in t or secret[-10:] in t]


def test_dry_run_prints_the_first_request_and_calls_nothing(tmp_path, fake_server, capsys):
    rows = ROWS[:3]
    fake = fake_server(lambda p, a, b: ("ok", right(p)), [r["question"] for r in rows])
    out = tmp_path / "kept.jsonl"
    assert main(["data", "generate", "--input", problems_file(tmp_path, rows), "--output", str(out), "--n", "4",
                 "--model", "fake-teacher", "--base_url", fake.url, "--dry_run"]) == 0
    printed = capsys.readouterr().out
    request = json.loads(printed[: printed.rindex("}") + 1])
    assert request["url"] == fake.url + "/chat/completions"
    assert request["body"]["messages"][-1]["content"].startswith(rows[0]["question"])
    assert "dry run: 12 of 12 calls to make" in printed
    assert fake.count() == 0 and sorted(os.listdir(tmp_path)) == ["problems.jsonl"]


def test_sigkill_mid_run_then_rerun_gives_every_row_once(tmp_path, fake_server):
    rows = ROWS[30:42]
    qs = [r["question"] for r in rows]
    slow = {"delay": 0.4}

    def plan(problem, attempt, body):
        time.sleep(slow["delay"])
        return ("ok", right(problem) if attempt % 2 == 0 else wrong(problem))

    fake = fake_server(plan, qs)
    out = tmp_path / "kept.jsonl"
    journal = tmp_path / "kept.calls.jsonl"
    args = ["data", "generate", "--input", problems_file(tmp_path, rows), "--output", str(out), "--n", "2",
            "--model", "fake-teacher", "--base_url", fake.url, "--concurrency", "2"]
    proc = srl_process(args)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.exists() and journal.read_bytes().count(b"\n") >= 6:
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"the run ended before it could be killed: {proc.communicate()}"
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    lines_before = journal.read_bytes().count(b"\n")
    assert 6 <= lines_before < 24 and not out.exists()
    with open(journal, "ab") as f:  # what a kill inside a write would leave: a torn last line
        f.write(b'{"key": "torn-by-the-kill", "problem_id": ')
    calls_before = fake.count()

    slow["delay"] = 0.0
    proc = srl_process(args)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert "journal repaired" in stdout
    assert fake.count() - calls_before == 24 - lines_before  # only what was missing was called
    lines = journal.read_text(encoding="utf-8").splitlines()
    keys = [json.loads(line)["key"] for line in lines]
    assert len(keys) == 24 == len(set(keys))
    assert Counter(json.loads(line)["problem_id"] for line in lines) == {f"problems-{i}": 2 for i in range(1, 13)}
    kept = read_jsonl(out)
    assert len(kept) == len({r["id"] for r in kept}) and {r["problem"] for r in kept} <= set(qs)
    assert all(r["answer"] == GOLD[r["problem"]] for r in kept)


def test_ctrl_c_stops_at_once_without_waiting_for_calls_in_flight(tmp_path, fake_server):
    rows = ROWS[70:76]
    qs = [r["question"] for r in rows]

    def plan(problem, attempt, body):  # one quick answer, then calls that would take a minute
        time.sleep(0.0 if problem == qs[0] else 60)
        return ("ok", right(problem))

    fake = fake_server(plan, qs)
    journal = tmp_path / "kept.calls.jsonl"
    proc = srl_process(["data", "generate", "--input", problems_file(tmp_path, rows), "--output",
                        str(tmp_path / "kept.jsonl"), "--n", "1", "--model", "fake-teacher", "--base_url", fake.url,
                        "--concurrency", "3"],
                       # a terminal's Ctrl-C: SIGINT handled as Python does by default, even when pytest runs as a
                       # background job (`make test &`), whose children inherit SIGINT ignored (POSIX) -- then
                       # Python installs no KeyboardInterrupt handler and the child never stops
                       preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not (journal.exists() and journal.read_bytes().count(b"\n") == 1):
        time.sleep(0.05)
    while fake.count() < 3 and time.monotonic() < deadline:  # two calls in flight
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=50)  # the calls in flight would take a minute: not waited for
    assert proc.returncode == 130
    assert stderr.strip().splitlines()[-1].startswith("srl: interrupted; the answered calls are in")
    assert [json.loads(line)["problem"] for line in journal.read_text().splitlines()] == [qs[0]]


def test_user_check_replaces_math_verify(tmp_path, fake_server):
    rows = ROWS[50:53]
    fake = fake_server(lambda p, a, b: ("ok", "LONG " * (a + 1)), [r["question"] for r in rows])
    check = tmp_path / "check.py"
    check.write_text("def long_enough(text, reference):\n    return text.count('LONG') >= 2\n")
    out = str(tmp_path / "kept.jsonl")
    summary = generate_solutions(GenerateConfig(input=problems_file(tmp_path, rows), output=out, n=2,
                                      check=f"{check}:long_enough"), endpoint(fake, concurrency=1))
    assert summary.correct == 3 and all(r["solution"].count("LONG") == 2 for r in read_jsonl(out))
    with pytest.raises(InputError, match="field 'check': .* has no function nope"):
        GenerateConfig(input="x", output=out, check=f"{check}:nope")


# --- rewrite ------------------------------------------------------------------------------------------------
def titled(solution: str, answer: str) -> str:
    """A faithful rewrite of a GSM8K solution: one titled step per line, the answer boxed at the end."""
    lines = [re.sub(r"<<[^>]*>>", "", l) for l in solution.split("\n#### ")[0].splitlines() if l.strip()]
    steps = [f"{i}. **Step {i}** {l}" for i, l in enumerate(lines, start=1)]
    return "\n".join(steps) + f"\n{len(steps) + 1}. **Answer** The answer is \\boxed{{{answer}}}."


REWRITES = {
    "kept": lambda r, a: titled(r["answer"], a),
    "kept with a preamble": lambda r, a: "Here are the steps:\n" + titled(r["answer"], a),
    "answer changed": lambda r, a: titled(r["answer"], str(int(float(a)) + 7)),
    "untitled": lambda r, a: "1. First compute things.\n2. Then more, \\boxed{%s}." % a,
    "one step": lambda r, a: "1. **All** It is \\boxed{%s}." % a,
    "truncated": lambda r, a: titled(r["answer"], a)[:40],
    "unrelated": lambda r, a: f"1. **Guess** Think of a number.\n2. **Say it** Output \\boxed{{{a}}}.",
    "not numbered": lambda r, a: f"The answer is \\boxed{{{a}}}.",
}


def test_rewrite_accepts_faithful_titled_steps_and_counts_rejects_by_reason(tmp_path, fake_server):
    rows = ROWS[60:60 + len(REWRITES)]
    kinds = dict(zip((r["question"] for r in rows), REWRITES))
    by_q = {r["question"]: r for r in rows}

    def plan(problem, attempt, body):
        kind = kinds[problem]
        text = REWRITES[kind](by_q[problem], GOLD[problem])
        return ("ok", text, "length" if kind == "truncated" else "stop")

    fake = fake_server(plan, list(kinds))
    out = tmp_path / "steps.jsonl"
    cfg = RewriteConfig(input=problems_file(tmp_path, rows), output=str(out), solution_field="answer",
                        min_similarity=0.3)
    summary = rewrite_solutions(cfg, endpoint(fake))
    assert summary.read == summary.rewritten == len(rows) and summary.kept == 2
    assert summary.rejected == {"final answer changed": 1, "a step without a **title**": 1,
                                "fewer than --min_steps numbered steps": 2, "truncated at --max_tokens": 1,
                                "below --min_similarity to the source": 1}
    # the request: the paper-style prompt with the problem and the solution, greedy
    body = fake.requests[0]["body"]
    assert body["temperature"] == 0.0 and "Do not solve the task by your own" in body["messages"][-1]["content"]
    assert by_q[fake.requests[0]["problem"]]["answer"] in body["messages"][-1]["content"]
    kept = read_jsonl(out)
    assert [kinds[r["problem"]] for r in kept] == ["kept", "kept with a preamble"]
    assert all(r["solution"].startswith("1. **Step 1** ") and r["similarity"] >= 0.3 for r in kept)

    # the output feeds `srl data build --format numbered` (and --title_hint) as it is
    instances = tmp_path / "instances.jsonl"
    assert main(["data", "build", "--input", str(out), "--format", "numbered", "--output", str(instances),
                 "--title_hint"]) == 0
    built = read_jsonl(instances)
    assert len(built) == sum(r["num_steps"] - 1 for r in kept)
    assert {b["final_answer"] for b in built} == {r["answer"] for r in kept}
    assert any("Step 2" in m["content"] for b in built for m in b["prompt"])  # the next step's title as a hint

    # other checks are applied to the journal without calling again
    relaxed = rewrite_solutions(RewriteConfig(input=cfg.input, output=str(out), solution_field="answer", min_steps=1),
                      endpoint(fake))
    assert fake.count() == len(rows) and relaxed.calls.called == 0
    assert relaxed.kept == 4 and "below --min_similarity to the source" not in relaxed.rejected


def test_rewrite_reads_free_text_and_skips_sources_without_an_answer(tmp_path, fake_server):
    trace = ("<think>Hmm, 48 clips in April. May is half: 24. Wait, let me double-check: 48/2 = 24. Total 72."
             "</think> Natalia sold 48 + 24 = 72 clips, so the answer is \\boxed{72}.")
    rows = [{"problem": ROWS[0]["question"], "solution": trace},
            {"problem": ROWS[1]["question"], "solution": "She earned ten dollars."}]
    fake = fake_server(lambda p, a, b: ("ok", "1. **May** 48 / 2 = 24.\n2. **Total** 48 + 24 = \\boxed{72}."),
                       [r["problem"] for r in rows])
    summary = rewrite_solutions(RewriteConfig(input=problems_file(tmp_path, rows), output=str(tmp_path / "s.jsonl")),
                      endpoint(fake))
    assert summary.skipped == {"no final answer in the source (give --answer_field)": 1}
    assert summary.kept == 1 and fake.count() == 1
    assert trace in fake.requests[0]["body"]["messages"][-1]["content"]


@pytest.mark.parametrize("text, finish, verdict", [
    ("1. **A** x = 2.\n2. **B** so \\boxed{4}.", "stop", "kept"),
    ("1. **A** x = 2.\n2. **B** so it is 4.", "stop", "kept"),  # no box: the last number
    ("**Step 1: A** x = 2.\n**Step 2: B** so \\boxed{4}.", "stop", "kept"),  # another numbered style
    ("1. **A** x = 2.\n2. **B** so \\boxed{4}.", "length", "truncated at --max_tokens"),
    ("1. **A** x = 2.\n2. **B** so \\boxed{5}.", "stop", "final answer changed"),
    ("1. **A** compute x.\n2. **B** no idea.", "stop", "no final answer"),
    ("1. **A** x = 2.\n2. so \\boxed{4}.", "stop", "a step without a **title**"),
    ("So \\boxed{4}.", "stop", "fewer than --min_steps numbered steps"),
    ("", "stop", "fewer than --min_steps numbered steps"),
])
def test_check_rewrite_verdicts(text, finish, verdict):
    source = Source("s", "What is 2+2?", "x = 2, so the answer is 4.", "4", 1)
    assert check_rewrite(text, finish, source)["verdict"] == verdict


# --- files, prompts, configuration --------------------------------------------------------------------------
def test_journal_cuts_a_torn_last_line_and_refuses_foreign_lines(tmp_path):
    path = tmp_path / "j.jsonl"
    with Journal.open(str(path)) as j:
        j.append({"key": "a#0@h", "teacher_settings": "h", "text": "é"})
        j.append({"key": "b#0@h", "teacher_settings": "h"})
    path.write_bytes(path.read_bytes() + b'{"key": "c#0@h", "teach')
    j = Journal.open(str(path))
    assert sorted(j.rows) == ["a#0@h", "b#0@h"] and j.repaired_bytes == 23
    j.append({"key": "c#0@h", "teacher_settings": "h"})
    j.close()
    assert [json.loads(line)["key"] for line in path.read_text(encoding="utf-8").splitlines()] == \
        ["a#0@h", "b#0@h", "c#0@h"]
    user = tmp_path / "mine.jsonl"
    user.write_text('{"question": "mine"}\n')
    with pytest.raises(InputError, match="mine.jsonl:1: not a line written by srl"):
        Journal.open(str(user))
    with pytest.raises(InputError, match="field 'output': exists and was not written by"):
        check_output(str(user))
    check_output(str(path))  # ours: may be replaced


def test_outputs_never_overwrite_user_files(tmp_path, capsys):
    problems = problems_file(tmp_path, ROWS[:2])
    assert main(["data", "generate", "--input", problems, "--output", problems, "--model", "m", "--base_url",
                 "http://127.0.0.1:9/v1"]) == 2
    assert "field 'output': is also an input" in capsys.readouterr().err
    assert open(problems).read().count("\n") == 2


def test_prompt_files_and_bad_options_are_one_line_errors(tmp_path, capsys):
    bad = tmp_path / "prompt.yaml"
    bad.write_text("user: Solve this.\n")
    with pytest.raises(InputError, match="prompt.yaml: field 'user': the user template must contain {problem}"):
        TeacherPrompt.load(str(bad), "generate.yaml", ("problem",))
    good = tmp_path / "good.yaml"
    good.write_text("system: Be brief.\nuser: 'Q: {problem} (in \\boxed{})'\n")
    prompt = TeacherPrompt.load(str(good), "generate.yaml", ("problem",))
    assert prompt.messages(problem="{solution} 1+1") == [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Q: {solution} 1+1 (in \\boxed{})"}]
    rewrite_prompt = TeacherPrompt.load(None, "rewrite.yaml", ("problem", "solution"))
    assert "1. **{step title}** {step action}" in rewrite_prompt.user
    for argv, message in [(["--n", "0"], "field 'n': must be >= 1"),
                          (["--concurrency", "0"], "field 'concurrency': must be >= 1"),
                          (["--output", "x.parquet"], "field 'output': must be a .jsonl file"),
                          (["--nope", "1"], "unknown option(s): --nope")]:
        base = {"--input": "gsm8k", "--output": str(tmp_path / "k.jsonl"), "--model": "m"}
        flags = dict(base, **{argv[0]: argv[1]}) if argv[0] in base else base
        extra = [] if argv[0] in base else argv
        assert main(["data", "generate", *[x for kv in flags.items() for x in kv], *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err


def test_module_doctests():
    import doctest

    import srl.teacher.journal
    import srl.teacher.prompt
    import srl.teacher.rewrite

    for module in (srl.teacher.journal, srl.teacher.prompt, srl.teacher.rewrite):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__


def test_a_full_disk_mid_run_keeps_whole_journal_lines_and_says_so(disks, fake_server, capsys):
    """Issue 24 item 3: the journal fills a 64 KiB disk; the run stops with one line (exit 2) naming the journal
    and what it keeps, and the journal holds whole lines only (a rerun continues from it)."""
    rows = ROWS[:40]
    long_right = lambda p: "Let me think. " + "x" * 3000 + right(p)  # noqa: E731  (3 KB replies fill it fast)
    fake = fake_server(lambda p, a, b: ("ok", long_right(p)), [r["question"] for r in rows])
    argv = ["data", "generate", "--input", problems_file(disks, rows), "--output", str(disks / "full" / "k.jsonl"),
            "--n", "1", "--model", "fake-teacher", "--base_url", fake.url, "--concurrency", "1"]
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    journal = disks / "full" / "k.calls.jsonl"
    kept = read_jsonl(journal)  # every line whole
    assert code == 2 and 1 <= len(kept) < len(rows), err
    assert err[-1] == (f"srl: error: {journal}: no space left on the device (disk full); the {len(kept)} answered "
                       f"calls are kept in {journal}: rerun the same command to continue"), err
    assert sorted(os.listdir(disks / "full")) == ["k.calls.jsonl"]
