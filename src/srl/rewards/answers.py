"""Is a final answer right? `answers_match(predicted, gold)` is True when the answers are equal as strings or
numbers, or equivalent according to math-verify (`parse` + `verify`). It never raises and gives up (False) after
`timeout` seconds. (Taking the answer out of a text is `srl.data.answers`.)
"""

from __future__ import annotations

import logging
import math
import re
import signal
import threading
import time

from srl.data.answers import closing_brace

__all__ = ["answers_match", "start_answer_checker", "MAX_ANSWER_CHARS", "MAX_UNGUARDED_CHARS"]


# Longer answers are never equivalent to anything (real final answers have at most a few hundred characters):
# refused at once rather than parsed until the time limit.
MAX_ANSWER_CHARS = 2000
# Without a signal-based time limit (outside the main thread, or timeout=None) longer answers are refused:
# sympy has no other way to be interrupted, and real final answers are far shorter than this.
MAX_UNGUARDED_CHARS = 300
# ... and so are answers that could make sympy compute a gigantic number: an exponent of 6+ digits
# (`10^{1000000}`), a power inside an exponent (`2^{2^{30}}`, `2^(2^30)`), a factorial of a bracket or of a
# 5+ digit number (`(2^30)!`). Real answers such as `2^{2005}` or `\frac{1}{2004!}` pass.
_HUGE_NUMBER_RE = re.compile(
    r"(?:\^|\*\*)\s*[{(]?\s*[-+]?\s*\d{6,}"
    r"|(?:\^|\*\*)\s*(?:\{[^{}]*|\([^()]*)(?:\^|\*\*)"
    r"|(?:\d{5,}|[)}\]])\s*!"
    r"|(?:!\s*){3,}"  # 10!!!!!!!!: multifactorials that sympy expands for a minute
    r"|\\binom\s*\{?\s*\d{4,}|\\binom\s*\{[^{}]*\^"  # \binom{100000}{50000}, \binom{2^{20}}{...}
)
# math-verify runs in a child process that is killed when a check runs out of time: the only limit that holds
# everywhere (a SIGALRM timer exists only in the main thread, and it cannot stop sympy inside one long C call such
# as `9999!` or `\Gamma(10^{10})`: measured 3 s past a 0.5 s timer). Started on first use; its start-up (~1-3 s)
# is paid once and not counted in `timeout`.
WORKER_START_TIMEOUT = 120.0

_PLAIN_NUMBER_RE = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?(?:[eE][-+]?\d+)?")
_SCIENTIFIC_RE = re.compile(r"(?P<mantissa>[-+]?(?:\d+(?:\.\d*)?|\.\d+))[eE](?P<exponent>[-+]?\d+)")


def _as_number(s: str) -> float | None:
    """`s` as a float when it is a plain number (`72`, `72.0`, `1,000`, `-.5`, `4.5e33`, `\\$40`), else None."""
    s = s.strip().strip("$").replace("\\$", "").replace("\\!", "").strip()
    if s.endswith("."):
        s = s[:-1]
    if not s or not _PLAIN_NUMBER_RE.fullmatch(s) or not s.lstrip("+-.")[:1].isdigit():
        return None
    return float(s.replace(",", ""))


def _normalise(s: str) -> str:
    """Cheap normalisation for the exact-string fast path: no surrounding `$`, spaces or final period."""
    s = s.strip()
    while len(s) >= 2 and s[0] == "$" and s[-1] == "$":
        s = s[1:-1].strip()
    return re.sub(r"\s+", "", s).rstrip(".")


def _for_math_verify(answer: str) -> str:
    """Wrap a bare answer so that math-verify's extraction takes all of it (`\\boxed{...}`, or `$...$`).
    Scientific notation, which LaTeX parsing would read as a product with e, is rewritten: `4.5e33` ->
    `4.5\\times10^{33}`."""
    if "\\boxed" in answer or "\\fbox" in answer:
        return answer
    if m := _SCIENTIFIC_RE.fullmatch(answer.strip()):
        answer = f"{m.group('mantissa')}\\times10^{{{m.group('exponent')}}}"
    if closing_brace("{" + answer + "}", 0) == len(answer) + 1:  # balanced braces
        return "\\boxed{" + answer + "}"
    return "$" + answer.replace("$", "") + "$"


class _TimedOut(BaseException):
    """Raised by our SIGALRM handler. A BaseException, so that math-verify's `except Exception` lets it pass."""


class _DropTimeoutDisabledWarning(logging.Filter):
    """math-verify warns once when its own timeouts are off; ours is on (or the input is bounded), so hide it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Timeout is disabled")


_math_verify = None


def _load_math_verify():
    global _math_verify
    if _math_verify is None:
        import math_verify

        for name in ("math_verify.parser", "math_verify.grader"):
            logging.getLogger(name).addFilter(_DropTimeoutDisabledWarning())
        # The first LaTeX parse builds the parser and the first symbolic comparison initialises sympy (~1 s in
        # all): done here, outside any time limit, so that they never cost a real check its time.
        for gold, predicted in (("$\\frac{1}{2}$", "$0.5$"), ("$x^{2}+1$", "$1+x^2$")):
            math_verify.verify(math_verify.parse(gold, parsing_timeout=None),
                               math_verify.parse(predicted, parsing_timeout=None), timeout_seconds=None)
        _math_verify = math_verify
    return _math_verify


def _math_verify_equal(predicted: str, gold: str) -> bool:
    mv = _load_math_verify()
    gold_parsed = mv.parse(_for_math_verify(gold), parsing_timeout=None)
    if not gold_parsed:
        return False
    pred_parsed = mv.parse(_for_math_verify(predicted), parsing_timeout=None)
    if not pred_parsed:
        return False
    return bool(mv.verify(gold_parsed, pred_parsed, timeout_seconds=None))


def _can_use_signals() -> bool:
    return threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer")


def _with_alarm(seconds: float, fn, *args) -> bool | None:
    """Run `fn(*args)` under a SIGALRM interval timer (main thread only); False if it runs out of time, None
    if no timer can be set here.

    An alarm the caller had already set is restored afterwards (less the time we used)."""
    armed = [True]

    def on_alarm(signum, frame):
        if armed[0]:
            raise _TimedOut()

    started = time.monotonic()
    try:
        old_handler = signal.signal(signal.SIGALRM, on_alarm)
    except (ValueError, OSError):  # not the main thread of the main interpreter after all
        return None
    old_delay, old_interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        try:
            return fn(*args)
        finally:
            armed[0] = False  # from here on a late alarm is harmless
    except _TimedOut:
        return False
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_handler)
        if old_delay > 0:
            remaining = max(old_delay - (time.monotonic() - started), 1e-3)
            signal.setitimer(signal.ITIMER_REAL, remaining, old_interval)


class _VerifyWorker:
    """math-verify in a child process (`python -c ...`, so nothing of the parent's `__main__` is re-run), asked
    one pair at a time over pipes (JSON lines) and killed when an answer takes longer than its time limit. A spare
    process is kept starting beside it, so that a check after a kill rarely waits for a fresh start-up."""

    def __init__(self):
        self._proc = None
        self._spare = None
        self._dead = []
        self._failed = False
        self._started = False  # a worker was ready once: later start-ups (of spares) count against a check's time
        self._lock = threading.Lock()

    @staticmethod
    def _spawn():
        import subprocess
        import sys

        return subprocess.Popen([sys.executable, "-c", f"from {__name__} import _serve; _serve()"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                bufsize=1)

    def ready(self, wait: float, *, give_up: bool = False) -> bool:
        """Whether a worker is up; if not, promote the spare once it says it is ready (waiting up to `wait`
        seconds for that), and start a new spare. False when none is ready (yet) or none can run here; with
        `give_up`, a spare not ready after `wait` means none can run here."""
        if self._failed:
            return False
        if self._proc is not None and self._proc.poll() is None:
            return True
        self._reap()
        if self._spare is None:
            self._spare = self._spawn()
        line = _read_line(self._spare, wait)
        if line is None and not give_up:
            return False  # still starting
        if line != "ready":
            self._kill(self._spare)
            self._spare, self._failed = None, True
            logging.getLogger("srl").warning("the answer-checking process did not start: answers are checked in "
                                             "this process, under a SIGALRM timer where possible")
            return False
        self._proc, self._spare = self._spare, self._spawn()
        self._started = True
        return True

    def _kill(self, proc):
        """Kill without waiting (a process busy in C can take ~0.3 s to go); reaped at the next start."""
        proc.kill()
        self._dead.append(proc)

    def _reap(self):
        self._dead = [p for p in self._dead if p.poll() is None]

    def check(self, predicted: str, gold: str, timeout: float, wait_for_start: bool) -> bool | None:
        """The verdict within `timeout` seconds, in any thread: False when out of time, None when no worker can
        run here. With `wait_for_start`, a worker that is starting (the first one, or a spare after a kill) and
        other threads' checks are waited for untimed (up to `WORKER_START_TIMEOUT`); without, everything but the
        very first start-up counts against the time."""
        import json

        deadline = time.monotonic() + timeout
        untimed = wait_for_start or not self._started
        if not self._lock.acquire(timeout=-1 if untimed else timeout):  # -1: no limit
            return False  # other threads' checks took the time
        try:
            if untimed or not self._started:
                if not self.ready(WORKER_START_TIMEOUT, give_up=True):
                    return None
                deadline = time.monotonic() + timeout  # the first start-up is not counted
            elif not self.ready(max(deadline - time.monotonic(), 0.0)):
                return None if self._failed else False  # the spare did not start in time
            self._proc.stdin.write(json.dumps([predicted, gold]) + "\n")
            self._proc.stdin.flush()
            reply = _read_line(self._proc, max(deadline - time.monotonic(), 0.0))
            if reply is None:  # out of time: kill it; the next check uses the spare
                self._kill(self._proc)
                self._proc = None
                return False
            return reply == "true"
        finally:
            self._lock.release()


_worker = _VerifyWorker()


def start_answer_checker(wait: bool = False) -> bool:
    """Start the process that checks answers under a time limit now rather than at the first check (the RLVR
    reward does this when it is made); with `wait`, return once it is ready. False if none can run here."""
    with _worker._lock:
        return _worker.ready(WORKER_START_TIMEOUT if wait else 0.0, give_up=wait)


def _read_line(proc, timeout: float) -> str | None:
    """A line from `proc`'s stdout within `timeout` seconds, else None."""
    import select

    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    return proc.stdout.readline().strip() if ready else None


def _serve():
    """The worker's loop: a JSON pair per line in, `true`/`false` per line out."""
    import json
    import sys

    _load_math_verify()
    print("ready", flush=True)
    for line in sys.stdin:
        try:
            predicted, gold = json.loads(line)
            result = _math_verify_equal(predicted, gold)
        except BaseException:
            result = False
        print("true" if result else "false", flush=True)


def answers_match(predicted: str, gold: str, timeout: float | None = 5.0, *, wait_for_checker: bool = True) -> bool:
    """Whether the `predicted` final answer is equivalent to the `gold` one.

    First a fast path: the same string (ignoring spaces, surrounding `$` and a final period) or the same plain
    number (`72` = `72.0`, `1,000` = `1000`). Otherwise math-verify decides: both are wrapped in `\\boxed{}`
    (or `$...$` when their braces are unbalanced), parsed, and compared with `verify(gold, predicted)`.

    Answers that could make sympy compute a gigantic number (huge exponents, towers, factorials of brackets,
    multifactorials, big binomials) are refused at once, and answers longer than `MAX_ANSWER_CHARS` never match.
    The rest is limited to `timeout` seconds by running math-verify in a child process that is killed when time
    runs out (in any thread; math-verify's own `signal.alarm` timeouts are switched off). Where no child process
    can run, a SIGALRM timer is used in the main thread.

    `wait_for_checker`: the process's start-up (~1-3 s; once, and again for a spare after a check ran out of time
    and killed it) is waited for untimed, so that a verdict never depends on how loaded the machine is (for an
    evaluation). False (a reward): everything but the very first start-up counts against `timeout`, so that
    one call never takes longer than `timeout`; an answer checked while the spare is still starting after a kill
    is then False. With `timeout=None` (or neither possible) there is no
    timer: answers longer than `MAX_UNGUARDED_CHARS` are refused instead.

    Never raises: bad input, parse failures and timeouts all give False.

    >>> answers_match("72.0", "72"), answers_match("1,000", "1000"), answers_match("0.5", "\\\\frac{1}{2}")
    (True, True, True)
    >>> answers_match("3", "72"), answers_match("", "72"), answers_match(None, "72")
    (False, False, False)
    """
    try:
        if isinstance(predicted, (int, float)) and not isinstance(predicted, bool):
            predicted = str(predicted)
        if isinstance(gold, (int, float)) and not isinstance(gold, bool):
            gold = str(gold)
        if not isinstance(predicted, str) or not isinstance(gold, str):
            return False
        predicted, gold = predicted.strip(), gold.strip()
        if not predicted or not gold:
            return False

        if _normalise(predicted) == _normalise(gold):
            return True
        p_num, g_num = _as_number(predicted), _as_number(gold)
        if p_num is not None and g_num is not None:
            if p_num == g_num or math.isclose(p_num, g_num, rel_tol=1e-9, abs_tol=1e-12):
                return True

        if len(predicted) > MAX_ANSWER_CHARS or len(gold) > MAX_ANSWER_CHARS:
            return False
        if _HUGE_NUMBER_RE.search(predicted) or _HUGE_NUMBER_RE.search(gold):
            return False  # refused at once rather than computed until the time limit
        if timeout is not None and timeout > 0:
            result = _worker.check(predicted, gold, float(timeout), wait_for_checker)
            if result is None and _can_use_signals():  # no worker process (yet): a timer, as good as it gets
                _load_math_verify()  # outside the timer: an import cut by an alarm would leave sympy half-built
                result = _with_alarm(float(timeout), _math_verify_equal, predicted, gold)
            if result is not None:
                return result
        # No time limit asked for (or none could be set): bound the input instead.
        if len(predicted) > MAX_UNGUARDED_CHARS or len(gold) > MAX_UNGUARDED_CHARS:
            return False
        return _math_verify_equal(predicted, gold)
    except (Exception, _TimedOut):  # never raise: a reward function must not crash the trainer
        return False
