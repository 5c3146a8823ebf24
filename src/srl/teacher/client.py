"""Calling a teacher: many chat requests to any OpenAI-compatible endpoint, robustly, with a resumable journal.

The `openai` client does the HTTP work and the standard retries: 408, 409, 429 and 5xx answers, timeouts and
connection errors are retried `--max_retries` times with exponential back-off (honouring `Retry-After`), and it
redacts the `Authorization` header in its own debug logs. This module adds what a batch of thousands of calls
needs on top:

- a concurrency limit (`--concurrency` worker threads, each one call at a time);
- retries of the answers the client accepts but that hold no answer: a body that is not JSON, no `choices`,
  no message text (`--bad_reply_retries`, with the same kind of back-off);
- a call that still fails is *reported*, never written: the run ends with the count of failed calls by reason
  and exit code 1, and a rerun of the same command calls exactly those again (nothing is lost);
- fatal answers stop the run at once with one line (401/403: the key; 404: the model or URL);
- the journal (`srl.teacher.journal`): a rerun skips every call already answered;
- progress with calls/s and token counts; `--dry_run` prints the first request and calls nothing.

The API key is read from the environment variable named by `--api_key_env` (default `OPENAI_API_KEY`) when the
client is made; it is never stored in a config, printed, logged or written to a file. The `openai`, `httpx`
and `httpcore` loggers are kept at WARNING (their DEBUG output would include request details).
"""

from __future__ import annotations

import logging
import os
import queue
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from srl.errors import InputError, file_system_error
from srl.teacher.journal import MARK, Journal

NO_KEY = "EMPTY"  # sent to a --base_url server when no key is set: local servers (vLLM, llama.cpp) accept any
FATAL_STATUS = {401: "the API key was refused", 403: "the API key may not use this model",
                404: "no such model or URL"}
QUIET_LOGGERS = ("openai", "httpx", "httpcore", "httpx2")


@dataclass
class EndpointConfig:
    """Where the teacher runs and how it is called (shared by `srl data generate` and `srl data rewrite`)."""

    model: str = field(metadata={"help": "Model name at the endpoint (e.g. `gpt-4.1-mini`, or the name a local "
                                         "vLLM server was started with)."})
    base_url: str | None = field(default=None, metadata={
        "help": "OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1 (default: $OPENAI_BASE_URL, else "
                "api.openai.com)."})
    api_key_env: str = field(default="OPENAI_API_KEY", metadata={
        "help": "Name of the environment variable holding the API key. The key itself is never printed, logged "
                "or written. With --base_url and no such variable set, no key is sent (local servers)."})
    concurrency: int = field(default=8, metadata={"help": "Calls in flight at once."})
    timeout: float = field(default=300.0, metadata={"help": "Seconds one HTTP attempt may take before it is "
                                                            "abandoned (and retried)."})
    max_retries: int = field(default=4, metadata={
        "help": "Retries of a call answered by 408/409/429/5xx, a timeout or a connection error (the openai "
                "client's own retries: exponential back-off from 0.5 s, honouring Retry-After)."})
    bad_reply_retries: int = field(default=2, metadata={
        "help": "Retries of a call whose answer is unusable: not JSON, no choices, no message text."})
    dry_run: bool = field(default=False, metadata={
        "help": "Print the first request (without the key) and how many calls a run would make; call nothing."})

    def __post_init__(self):
        if not self.model or not self.model.strip():
            raise InputError("must not be empty", field="model")
        for name in ("concurrency",):
            if getattr(self, name) < 1:
                raise InputError("must be >= 1", field=name)
        for name in ("max_retries", "bad_reply_retries"):
            if getattr(self, name) < 0:
                raise InputError("must be >= 0", field=name)
        if not self.timeout > 0:
            raise InputError("must be > 0", field="timeout")
        if not self.api_key_env.strip():
            raise InputError("must name an environment variable", field="api_key_env")


def api_key(cfg: EndpointConfig) -> str:
    """The key from the environment (never stored anywhere else). Without one: a placeholder for a --base_url
    server, an `InputError` for the default (OpenAI) endpoint."""
    key = os.environ.get(cfg.api_key_env)
    if key:
        return key
    if cfg.base_url:
        return NO_KEY
    raise InputError(f"no API key: set ${cfg.api_key_env}, or name the variable holding it with --api_key_env",
                     field="api_key_env")


def quiet_loggers() -> None:
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def make_client(cfg: EndpointConfig):
    """An `openai.OpenAI` client for `cfg` (its retries: `cfg.max_retries`, its per-attempt timeout: `cfg.timeout`)."""
    import openai

    quiet_loggers()
    return openai.OpenAI(base_url=cfg.base_url, api_key=api_key(cfg), timeout=cfg.timeout,
                         max_retries=cfg.max_retries)


# --- one call -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Request:
    """One chat call: its journal key, the messages, the sampling parameters, and data carried to the reply."""

    key: str
    messages: list[dict[str, str]]
    params: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Reply:
    """The answer to a `Request`: the text, or `error` (one line) when the call failed after all retries."""

    request: Request
    text: str | None = None
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    error: str | None = None  # a short reason, counted in the summary
    detail: str = ""  # what the server said, for a fatal error's message
    fatal: bool = False


def _backoff(attempt: int) -> float:
    """Seconds before retry `attempt` (1-based): 0.5, 1, 2, ... up to 8, minus up to 25 % jitter (as openai)."""
    return min(0.5 * 2 ** (attempt - 1), 8.0) * (1 - 0.25 * random.random())


def call(client, model: str, request: Request, bad_reply_retries: int = 2) -> Reply:
    """Send `request`; never raises. HTTP-level retries happen inside the client; unusable answers are retried
    here. Returns a `Reply` with the text, or with `error` (and `fatal` for 401/403/404)."""
    import openai

    started = time.monotonic()
    reason = "no answer"
    for attempt in range(bad_reply_retries + 1):
        if attempt:
            time.sleep(_backoff(attempt))
        try:
            response = client.chat.completions.create(model=model, messages=request.messages, **request.params)
        except openai.APITimeoutError:
            return Reply(request, error="timeout", seconds=time.monotonic() - started)
        except openai.APIConnectionError as e:
            return Reply(request, error="connection error", detail=_first_line(e), seconds=time.monotonic() - started)
        except openai.APIStatusError as e:
            status = e.status_code
            if status in FATAL_STATUS:
                return Reply(request, error=f"HTTP {status}: {FATAL_STATUS[status]}", detail=_first_line(e),
                             fatal=True, seconds=time.monotonic() - started)
            return Reply(request, error=f"HTTP {status}", seconds=time.monotonic() - started)
        except (ValueError, openai.APIResponseValidationError):  # json.JSONDecodeError is a ValueError
            reason = "malformed reply: not JSON"
            continue
        choices = getattr(response, "choices", None) or []
        message = getattr(choices[0], "message", None) if choices else None
        text = getattr(message, "content", None) if message is not None else None
        if not choices:
            reason = "reply without choices"
            continue
        if not isinstance(text, str):
            reason = "reply without text"
            continue
        usage = getattr(response, "usage", None)
        return Reply(request, text=text, finish_reason=getattr(choices[0], "finish_reason", None),
                     prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
                     completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
                     seconds=time.monotonic() - started)
    return Reply(request, error=reason, seconds=time.monotonic() - started)


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:200]


def run_calls(send: Callable[[Request], Reply], requests: Iterable[Request], concurrency: int) -> Iterator[Reply]:
    """Replies to `requests`, in the order they finish, from `concurrency` worker threads (one call each at a
    time). Closing the iterator early (an error in the consumer, Ctrl-C) stops the workers from starting new
    calls; they are daemon threads, so the process can exit without waiting for the calls in flight (whose
    answers are then lost, and called again by the next run)."""
    todo: queue.Queue = queue.Queue()
    finished: queue.Queue = queue.Queue()
    count = 0
    for request in requests:
        todo.put(request)
        count += 1
    stop = threading.Event()

    def worker() -> None:
        while not stop.is_set():
            try:
                request = todo.get_nowait()
            except queue.Empty:
                return
            finished.put(send(request))

    for i in range(min(concurrency, count)):
        threading.Thread(target=worker, name=f"srl-teacher-{i}", daemon=True).start()
    try:
        for _ in range(count):
            while True:
                try:
                    reply = finished.get(timeout=0.5)  # a timeout keeps Ctrl-C responsive
                    break
                except queue.Empty:
                    continue
            yield reply
    finally:
        stop.set()


# --- a journaled batch --------------------------------------------------------------------------------------
@dataclass
class CallStats:
    """What a batch did: calls already in the journal, made now, failed (by reason), tokens, time."""

    total: int = 0
    done_before: int = 0
    called: int = 0
    failed: Counter = field(default_factory=Counter)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    repaired_bytes: int = 0

    @property
    def answered(self) -> int:
        return self.called - sum(self.failed.values())

    @property
    def calls_per_second(self) -> float:
        return self.called / self.seconds if self.seconds > 0 else 0.0

    def status(self) -> str:
        line = (f"{self.calls_per_second:.2f} calls/s, tokens {self.prompt_tokens:,} in / "
                f"{self.completion_tokens:,} out")
        failed = sum(self.failed.values())
        return line + (f", {failed} failed" if failed else "")

    def as_dict(self) -> dict[str, Any]:
        return {"calls": self.total, "done_before": self.done_before, "called": self.called,
                "answered": self.answered, "failed": dict(self.failed), "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens, "seconds": round(self.seconds, 2),
                "calls_per_second": round(self.calls_per_second, 4)}


def describe_request(cfg: EndpointConfig, request: Request) -> dict[str, Any]:
    """The request as it will be sent (for --dry_run): URL, key variable (not the key), model, messages, params."""
    base = cfg.base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
    return {"url": base.rstrip("/") + "/chat/completions",
            "authorization": f"Bearer ${cfg.api_key_env} (not shown)",
            "body": {"model": cfg.model, "messages": request.messages, **request.params}}


def run_journaled(cfg: EndpointConfig, journal: Journal, requests: list[Request], to_row: Callable[[Reply], dict],
                  settings: str, description: str = "calling", client=None) -> CallStats:
    """Call every request whose key is not in `journal` yet, and append `to_row(reply)` (plus the key and the
    settings hash) for each answered one, as it arrives. Failed calls are counted in the returned stats, not
    written. An `InputError` (exit code 2) ends the run, its message saying whether a journal to resume from was
    kept, when the endpoint refused a call (a bad key, an unknown model or URL: after the calls in flight end),
    and when no request of the run has an answer, this run's or an earlier one's (an unreachable server, or one
    that does not speak the API: nothing is written then)."""
    from srl.console import make_progress  # the progress display (rich on a terminal, lines in a log)

    todo = [r for r in requests if r.key not in journal.rows]
    stats = CallStats(total=len(requests), done_before=len(requests) - len(todo),
                      repaired_bytes=journal.repaired_bytes)
    if not todo:
        return stats
    client = client or make_client(cfg)

    def send(request: Request) -> Reply:
        return call(client, cfg.model, request, cfg.bad_reply_retries)

    from rich.progress import (BarColumn, MofNCompleteColumn, SpinnerColumn, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    progress = make_progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
                             MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                             TextColumn("{task.fields[status]}"))
    task = progress.add_task(description, total=len(todo), status="")
    started = time.monotonic()
    fatal: str | None = None
    unwritable: InputError | None = None
    detail = ""  # what the server or the connection said first, for the message when no call was answered
    with progress:
        replies = run_calls(send, todo, cfg.concurrency)
        try:
            for reply in replies:
                stats.called += 1
                stats.seconds = time.monotonic() - started
                stats.prompt_tokens += reply.prompt_tokens
                stats.completion_tokens += reply.completion_tokens
                if reply.error is not None:
                    stats.failed[reply.error] += 1
                    detail = detail or reply.detail
                    if reply.fatal:
                        fatal = f"{reply.error} ({reply.detail})" if reply.detail else reply.error
                        break
                else:
                    row = to_row(reply)
                    row["key"], row[MARK] = reply.request.key, settings
                    try:
                        journal.append(row)
                    except OSError as e:  # a full disk: stop calling, say what is kept
                        unwritable = file_system_error(e)
                        if unwritable is None:
                            raise
                        break
                progress.update(task, completed=stats.called, status=stats.status())
        finally:
            replies.close()
            stats.seconds = time.monotonic() - started
    answered = sum(1 for r in requests if r.key in journal.rows)
    kept = (f"; the {answered:,} answered calls are kept in {journal.path}: rerun the same command to continue"
            if answered else "; nothing was written")
    if unwritable is not None:
        raise InputError(f"{unwritable.message}{kept}", path=unwritable.path)
    if fatal is not None:
        raise InputError(f"the endpoint refused the call: {fatal}{kept}", field="model" if "404" in fatal else
                         "api_key_env")
    if not answered and stats.failed:
        reasons = ", ".join(f"{reason} ({n:,})" for reason, n in stats.failed.most_common())
        raise InputError(f"no call was answered: {reasons}{f' ({detail})' if detail else ''}; is it an "
                         f"OpenAI-compatible endpoint, and is it up?{kept}", field="base_url")
    return stats
