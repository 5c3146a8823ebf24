"""Final-answer extraction (`srl.data.answers`) and checking (`srl.rewards.answers`) on real rows of tests/data (see tests/data/SOURCE.md).

Every expected value below was checked by hand against the source rows."""

import json
import os
import signal
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import srl.rewards.answers as answers
from srl.data.answers import extract_answer, extract_boxed, extract_gsm8k, extract_last_number
from srl.rewards.answers import MAX_UNGUARDED_CHARS, answers_match

DATA = os.path.join(os.path.dirname(__file__), "data")


def read_jsonl(name):
    with open(os.path.join(DATA, name), encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


MATH500 = read_jsonl("math500_sample.jsonl")
AMC23 = read_jsonl("amc23_sample.jsonl")
AIME24 = read_jsonl("aime24_sample.jsonl")
MINERVA = read_jsonl("minerva_math_sample.jsonl")
GSM8K_TEST = read_jsonl("gsm8k_test_sample.jsonl")
MATH = {row["idx"]: row for row in read_jsonl("math_nonmath500_sample.jsonl")}


# ---------------------------------------------------------------------------------------------------------
# Extraction
# ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    (r"so $x = \boxed{\frac{1}{2}}$.", r"\frac{1}{2}"),                 # nested braces
    (r"first \boxed{1}, then \boxed{2}", "2"),                          # the last box
    (r"\boxed{\boxed{1}+1}", r"\boxed{1}+1"),                           # a box in a box belongs to the outer one
    (r"$\boxed 5$", "5"),                                               # no braces: one token
    (r"\boxed 7.", "7"),
    (r"\boxed {5}", "5"),
    (r"\fbox{(C)}", "(C)"),
    (r"$\framebox{204}$ minutes", "204"),
    (r"\boxed{\{1,2\}}", r"\{1,2\}"),                                   # escaped braces are not grouping
    (r"\boxed{ 3 }", "3"),
    (r"\boxed{}", ""),
    (r"\boxed{1} and \boxed{\frac{1}{2}", None),                        # the last box is not closed
    (r"\boxed", None),
    (r"\boxedx{1}", None),
    ("no box at all", None),
])
def test_extract_boxed(text, expected):
    assert extract_boxed(text) == expected


def test_extract_boxed_real_rows():
    for row in MATH500:  # the `answer` field is the content of the solution's last box
        assert extract_boxed(row["solution"]) == row["answer"]
    assert [extract_boxed(r["solution"]) for r in MINERVA[:5]] == ["1.6", "4.5e33", "41.8", "20.39", "0.006"]
    assert extract_boxed(MATH[1229]["solution"]) == r"\frac{1}{15}"
    assert extract_boxed(MATH[710]["solution"]) == r"\$115,000"
    assert extract_boxed(MATH[4505]["solution"]) == r"\begin{pmatrix} 3/5 \\ 57/5 \end{pmatrix}"
    assert extract_boxed(AIME24[0]["solution"]) == "204"                # `\framebox{204}` in the AoPS text


@pytest.mark.parametrize("text, expected", [
    ("Natalia sold 48+24 = <<48+24=72>>72 clips.\n#### 72", "72"),
    ("#### 1,000", "1000"),
    ("#### -5", "-5"),
    ("#### 3.50", "3.50"),
    ("#### 1\n#### 2", "1"),        # the official regex takes the first match
    ("####72", None),               # ... and needs the space
    ("#### $5", None),
    ("The answer is 5.", None),
])
def test_extract_gsm8k(text, expected):
    assert extract_gsm8k(text) == expected


def test_extract_gsm8k_real_rows():
    assert [extract_gsm8k(r["answer"]) for r in GSM8K_TEST[:5]] == ["18", "3", "70000", "540", "20"]
    for row in GSM8K_TEST:
        assert extract_gsm8k(row["answer"]) == row["answer"].split("#### ")[-1].strip().replace(",", "")


@pytest.mark.parametrize("text, expected", [
    ("She earned $1,200.50 in total, so 3 weeks.", "3"),
    ("She earned $1,200.50.", "1200.50"),
    ("a loss of -4 dollars", "-4"),
    ("the values 1,2,3", "3"),
    ("in 2023, 5 apples", "5"),
    ("about .5 of it", ".5"),
    ("no number", None),
])
def test_extract_last_number(text, expected):
    assert extract_last_number(text) == expected


def test_extract_answer_modes():
    text = "so it is \\boxed{7}.\n#### 8\nbye 9"
    assert extract_answer(text) == "7"
    assert extract_answer(text, "boxed") == "7"
    assert extract_answer(text, "gsm8k") == "8"
    assert extract_answer(text, "last_number") == "9"
    assert extract_answer("#### 8") == "8"
    assert extract_answer("It is 9.") is None
    assert extract_answer("It is 9.", last_number_fallback=True) == "9"
    assert extract_answer(GSM8K_TEST[0]["answer"]) == "18"
    assert extract_answer(MINERVA[0]["solution"]) == "1.6"
    with pytest.raises(ValueError, match="unknown answer mode"):
        extract_answer(text, "first")


# ---------------------------------------------------------------------------------------------------------
# answers_match: real gold answers
# ---------------------------------------------------------------------------------------------------------

GOLD = (
    [r["answer"] for r in MATH500]
    + [r["answer"] for r in AMC23]  # floats such as 27.0
    + [r["answer"] for r in AIME24]
    + [extract_boxed(r["solution"]) for r in MINERVA]
    + [extract_gsm8k(r["answer"]) for r in GSM8K_TEST]
    + [extract_boxed(r["solution"]) for r in MATH.values()]
)


@pytest.mark.parametrize("gold", GOLD, ids=[str(g)[:25] for g in GOLD])
def test_gold_answers_match_themselves(gold):
    assert answers_match(gold, gold)
    assert answers_match(str(gold), gold)


def test_model_style_answers_of_real_rows():
    # a model's boxed answer vs the `answer` field: aime24 (`\textbf{(113) }` vs "113", "25" vs "025"), amc23
    assert all(answers_match(extract_boxed(r["solution"]), r["answer"]) for r in AIME24)
    assert all(answers_match(str(int(r["answer"])), r["answer"]) for r in AMC23)


EQUIVALENT = [
    # (predicted, gold) that are the same answer
    ("(3, \\pi/2)", "\\left( 3, \\frac{\\pi}{2} \\right)"),           # math500 row 1
    ("-q + p", "p - q"),                                               # math500 row 2
    ("14/3", "\\frac{14}{3}"),                                         # math500 row 3
    ("4.666666666666667", "\\frac{14}{3}"),
    ("Evelyn", "\\text{Evelyn}"),                                      # math500 row 5
    ("90", "90^\\circ"),                                               # math500 row 8
    ("\\sqrt{117}", "3\\sqrt{13}"),                                    # math500 row 9
    ("27", 27.0),                                                      # amc23 row 1
    ("25", "025"),                                                     # aime24 row 8
    ("4.5 \\times 10^{33}", "4.5e33"),                                 # minerva row 2
    ("115000", "\\$115,000"),                                          # MATH idx 710
    ("[6, \\infty)", "[6,\\infty)"),                                   # MATH idx 1035
    ("-\\frac{9}{4}, \\frac{9}{4}", "\\frac{9}{4}, -\\frac{9}{4}"),    # MATH idx 2798
    ("\\frac{9}{7}", "\\frac 97"),                                     # MATH idx 4437
    ("\\begin{pmatrix} 0.6 \\\\ 11.4 \\end{pmatrix}", "\\begin{pmatrix} 3/5 \\\\ 57/5 \\end{pmatrix}"),  # 4505
    ("C", "\\text{C}"),                                                # MATH idx 4351
    ("40", "\\$40"),                                                   # MATH idx 21
    ("1/15", "\\frac{1}{15}"),                                         # MATH idx 1229
    ("\\dfrac{1}{15}", "\\frac{1}{15}"),
    ("0.5", "\\frac{1}{2}"),
    ("72.0", "72"),
    ("1,000", "1000"),
    ("1000", "1,000"),
    ("$5$", "5"),
    ("\\boxed{5}", "5"),
]
DIFFERENT = [
    ("(3, \\pi)", "\\left( 3, \\frac{\\pi}{2} \\right)"),
    ("q - p", "p - q"),
    ("4.67", "\\frac{14}{3}"),
    ("\\frac{13}{3}", "\\frac{14}{3}"),
    ("\\text{Bob}", "\\text{Evelyn}"),
    ("3\\sqrt{12}", "3\\sqrt{13}"),
    ("4.6e33", "4.5e33"),
    ("(6,\\infty)", "[6,\\infty)"),
    ("\\frac{9}{4}", "\\frac{9}{4}, -\\frac{9}{4}"),
    ("\\begin{pmatrix} 0.6 \\\\ 11 \\end{pmatrix}", "\\begin{pmatrix} 3/5 \\\\ 57/5 \\end{pmatrix}"),
    ("D", "\\text{C}"),
    ("41", "\\$40"),
    ("\\frac{1}{16}", "\\frac{1}{15}"),
    ("0.25", "\\frac{1}{2}"),
    ("17", "18"),
    ("9", "3702"),
]


@pytest.mark.parametrize("predicted, gold", EQUIVALENT)
def test_equivalent_forms_match(predicted, gold):
    assert answers_match(predicted, gold)


@pytest.mark.parametrize("predicted, gold", DIFFERENT)
def test_wrong_answers_do_not_match(predicted, gold):
    assert not answers_match(predicted, gold)


def test_wrong_answers_of_real_rows():
    golds = [extract_gsm8k(r["answer"]) for r in GSM8K_TEST]
    for gold, other in zip(golds, golds[1:]):
        assert answers_match(other, gold) == (other == gold)


# ---------------------------------------------------------------------------------------------------------
# answers_match: robustness and time limits
# ---------------------------------------------------------------------------------------------------------

GARBAGE = [None, 5.5, [], {}, b"72", "", "   ", "}{", "\\frac{", "\\boxed{", "$$$$", "\\begin{pmatrix}", "\x00",
           "\\left(", "^^^", "1/0", "\\frac{1}{0}", "x" * 100_000, "{" * 5000, "\\sqrt{" * 300 + "2"]


@pytest.mark.parametrize("garbage", GARBAGE, ids=range(len(GARBAGE)))
def test_garbage_never_raises(garbage):
    assert answers_match(garbage, "72", timeout=2) is False
    assert answers_match("72", garbage, timeout=2) is False


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=60), st.text(alphabet="0123456789.,-+/^{}()\\$ fracsqrtboxed", max_size=30))
def test_random_text_never_raises(predicted, gold):
    assert isinstance(answers_match(predicted, gold, timeout=1), bool)


def test_timeout_is_respected_on_a_slow_expression():
    start = time.monotonic()
    assert answers_match("2^{2^{30}}", "1", timeout=0.5) is False
    assert time.monotonic() - start < 2.0


def test_timeout_is_respected_when_math_verify_hangs(monkeypatch):
    """The checking process is killed when it does not answer in time (here: one that never answers)."""
    import subprocess
    import sys

    def hanging_process():
        return subprocess.Popen([sys.executable, "-c", "import time; print('ready', flush=True); time.sleep(60)"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)

    worker = answers._VerifyWorker()
    monkeypatch.setattr(worker, "_spawn", hanging_process)
    monkeypatch.setattr(answers, "_worker", worker)
    assert worker.ready(wait=True)  # start-up (not timed)
    start = time.monotonic()
    assert answers_match("x+1", "1+x", timeout=0.3) is False
    assert time.monotonic() - start < 2.0
    assert answers_match("72.0", "72", timeout=0.3)  # the fast path does not need math-verify


def test_timeout_is_respected_without_a_checking_process(monkeypatch):
    """Where no child process can run, the main thread's SIGALRM timer still bounds a hanging check."""
    def hang(predicted, gold):
        time.sleep(30)
        return True

    worker = answers._VerifyWorker()
    worker._failed = True
    monkeypatch.setattr(answers, "_worker", worker)
    answers._load_math_verify()  # a one-off import, not timed
    monkeypatch.setattr(answers, "_math_verify_equal", hang)
    start = time.monotonic()
    assert answers_match("x+1", "1+x", timeout=0.3) is False
    assert time.monotonic() - start < 2.0


def test_an_earlier_alarm_is_restored():
    fired = []

    def handler(signum, frame):
        fired.append(signum)

    old = signal.signal(signal.SIGALRM, handler)
    try:
        signal.setitimer(signal.ITIMER_REAL, 50)
        assert answers_match("x+1", "1+x", timeout=1)  # goes through math-verify under our own timer
        remaining, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 40 < remaining <= 50
        assert signal.getsignal(signal.SIGALRM) is handler
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert not fired


def test_outside_the_main_thread():
    results = {}

    def run():
        results["equal"] = answers_match("0.5", "\\frac{1}{2}")
        results["matrix"] = answers_match("\\begin{pmatrix} 0.6 \\\\ 11.4 \\end{pmatrix}",
                                          "\\begin{pmatrix} 3/5 \\\\ 57/5 \\end{pmatrix}")
        results["wrong"] = answers_match("0.25", "\\frac{1}{2}")
        answers.start_answer_checker(wait=True)  # a one-off start-up, not timed
        start = time.monotonic()
        results["huge"] = answers_match("2^{2^{30}}", "1") or answers_match("(2^30)!", "1")  # refused at once
        results["long"] = answers_match("x" * (MAX_UNGUARDED_CHARS + 1), "1", timeout=0.5)  # limited
        results["seconds"] = time.monotonic() - start

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(60)
    assert not thread.is_alive()
    assert results["equal"] and results["matrix"] and not results["wrong"]
    assert not results["long"] and not results["huge"]
    assert results["seconds"] < 2.0  # 0.5 s of limit; the rest is room for a loaded machine
