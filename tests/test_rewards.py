"""srl.rewards: the SRL step reward, the outcome reward, and their TRL reward-function forms.

- `srl_reward` on real GSM8K steps gives exactly `difflib.SequenceMatcher(None, action, expert).ratio()` (==,
  never approx) when the format is right, and -1.0 when it is broken, for every think mode.
- `outcome_reward`: `\\boxed{}` (nested, last one wins) and GSM8K `#### n`; wrong or missing answers are 0.
- Neither raises nor takes more than 0.5 s on any completion: 1,000,000 characters, None, numbers, odd chats.
- `step_similarity_reward` / `answer_reward` accept what `trl.GRPOTrainer` passes (plain or chat completions,
  dataset columns and trainer extras as keyword arguments), and one real `GRPOTrainer` step logs
  `rewards/step_similarity/mean`.
"""

from __future__ import annotations

import difflib
import json
import os
import signal
import time
from contextlib import contextmanager
from types import SimpleNamespace

import pytest

from timing import time_ratio
from srl.data.instances import InstanceOptions, build_instances, trajectory_instances
from srl.rewards.format import OutputFormat
from srl.rewards import (FORMAT_PENALTY, REWARDS, answer_reward, get_answer_reward, get_step_reward,
                         outcome_reward, srl_reward, step_similarity_reward)
from srl.data.build import load_trajectories

HERE = os.path.dirname(__file__)
PAIRS_FILE = os.path.join(HERE, "data", "gsm8k_steps_pairs.jsonl")
GSM8K_TEST_FILE = os.path.join(HERE, "data", "gsm8k_test_sample.jsonl")
BUNDLED_GSM8K = os.path.join(os.path.dirname(HERE), "src", "srl", "data", "gsm8k_train_sample.jsonl")

REQUIRED = OutputFormat()
OPTIONAL = OutputFormat(think="optional")
OFF = OutputFormat(think="off")
SOLUTION = OutputFormat(solution_open="<solution>", solution_close="</solution>")
PREFILLED = OutputFormat(think_prefilled=True)


def ratio(a: str, b: str) -> float:
    """The paper's metric, straight from the standard library."""
    return difflib.SequenceMatcher(None, a, b).ratio()


def read_jsonl(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


PAIRS = read_jsonl(PAIRS_FILE)  # 50 (predicted, expert) pairs of real GSM8K steps; 15 with experts >= 200 chars


def gsm8k_instance_pairs(limit: int = 60) -> list[tuple[str, str]]:
    """(a neighbouring real step as the prediction, the expert step) from the bundled GSM8K sample's instances."""
    rows = list(build_instances(load_trajectories(BUNDLED_GSM8K, "gsm8k"), InstanceOptions()))
    pairs = []
    for row, nxt in zip(rows, rows[1:]):
        if row["trajectory_id"] == nxt["trajectory_id"]:
            pairs.append((nxt["expert_step"], row["expert_step"]))
    return pairs[:limit]


INSTANCE_PAIRS = gsm8k_instance_pairs()


# ----------------------------------------------------------------------------------------- srl_reward --

def test_fixtures_are_real_and_varied():
    assert len(PAIRS) == 50 and len(INSTANCE_PAIRS) == 60
    assert any(len(p["expert"]) >= 200 for p in PAIRS)  # difflib's autojunk applies to these
    values = {ratio(p["predicted"], p["expert"]) for p in PAIRS}
    assert len(values) > 40 and 0.0 < min(values) < max(values) < 1.0


# How each well-formed completion wraps the action A (the monologue is real text too).
GOOD_WRAPPINGS = [
    ("required: <think>T</think>A", REQUIRED, "<think>{t}</think>{a}"),
    ("required: newlines around both", REQUIRED, "<think>\n{t}\n</think>\n\n{a}\n"),
    ("required: leading spaces", REQUIRED, "   <think>{t}</think> {a}"),
    ("required: prefilled <think>", PREFILLED, "{t}\n</think>\n{a}"),
    ("optional: no monologue", OPTIONAL, "{a}"),
    ("optional: with monologue", OPTIONAL, "<think>{t}</think>\n{a}"),
    ("optional: unclosed monologue", OPTIONAL, "<think>{a}"),
    ("off: the whole response", OFF, "  {a}  "),
    ("solution tags", SOLUTION, "<think>{t}</think>\n<solution>{a}</solution>"),
    ("solution tags, text around", SOLUTION, "<think>{t}</think>Next: <solution> {a} </solution> done"),
]


@pytest.mark.parametrize("name, fmt, wrapping", GOOD_WRAPPINGS, ids=[w[0] for w in GOOD_WRAPPINGS])
def test_correct_format_gives_exactly_the_difflib_ratio(name, fmt, wrapping):
    """Every real GSM8K pair, in every valid format: the reward == stdlib ratio of the stripped action."""
    for predicted, expert in [(p["predicted"], p["expert"]) for p in PAIRS] + INSTANCE_PAIRS:
        thought = f"The expert wrote: {expert[:40]}"
        completion = wrapping.format(t=thought, a=predicted)
        expected = ratio(predicted.strip(), expert)
        assert srl_reward(completion, expert, output_format=fmt) == expected, (name, completion, expert)


def test_off_mode_scores_the_tags_too():
    predicted, expert = PAIRS[0]["predicted"], PAIRS[0]["expert"]
    completion = f"<think>x</think>{predicted}"
    assert srl_reward(completion, expert, output_format=OFF) == ratio(completion, expert)
    assert srl_reward(completion, expert, think="off") == ratio(completion, expert)


def test_identical_action_scores_one_and_unrelated_scores_low():
    for p in PAIRS:
        assert srl_reward(f"<think>t</think>{p['expert']}", p["expert"]) == 1.0
    assert srl_reward("<think>t</think>zzzz", "Natalia sold 48/2 = 24 clips in May.") == 0.0


EXPERT = "Natalia sold 48/2 = <<48/2=24>>24 clips in May."
ACTION = "Natalia sold 48/2 = 24 clips in May."

BROKEN = [
    # (id, format, completion)
    ("required: no closing tag", REQUIRED, f"<think>half of 48 is 24 {ACTION}"),
    ("required: no tags at all", REQUIRED, ACTION),
    ("required: empty action", REQUIRED, "<think>half of 48</think>"),
    ("required: whitespace action", REQUIRED, "<think>half of 48</think> \n\t "),
    ("required: no opening tag", REQUIRED, f"half of 48</think>{ACTION}"),
    ("required: two monologues", REQUIRED, f"<think>a</think>{ACTION}<think>b</think>{ACTION}"),
    ("required: nested monologue", REQUIRED, f"<think>a<think>b</think>{ACTION}"),
    ("required: stray closing tag", REQUIRED, f"<think>a</think>{ACTION}</think>"),
    ("required: empty string", REQUIRED, ""),
    ("optional: empty action after monologue", OPTIONAL, "<think>half of 48</think>   "),
    ("optional: empty string", OPTIONAL, ""),
    ("optional: only an opening tag", OPTIONAL, "<think>"),
    ("off: empty string", OFF, ""),
    ("off: whitespace", OFF, " \n "),
    ("solution: tags missing", SOLUTION, f"<think>a</think>{ACTION}"),
    ("solution: no closing solution tag", SOLUTION, f"<think>a</think><solution>{ACTION}"),
    ("solution: closing tag only", SOLUTION, f"<think>a</think>{ACTION}</solution>"),
    ("solution: empty solution", SOLUTION, "<think>a</think><solution> </solution>"),
    ("solution: no monologue", SOLUTION, f"<solution>{ACTION}</solution>"),
    ("solution+optional: tags missing", OutputFormat(think="optional", solution_open="<solution>",
                                                     solution_close="</solution>"), ACTION),
    ("custom tags: default tags used", OutputFormat(think_open="<reasoning>", think_close="</reasoning>"),
     f"<think>a</think>{ACTION}"),
]


@pytest.mark.parametrize("name, fmt, completion", BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_format_gives_minus_one(name, fmt, completion):
    assert srl_reward(completion, EXPERT, output_format=fmt) == FORMAT_PENALTY == -1.0
    assert srl_reward([{"role": "assistant", "content": completion}], EXPERT, output_format=fmt) == -1.0


def test_default_is_the_papers_required_format_and_think_overrides_it():
    assert srl_reward(ACTION, EXPERT) == -1.0
    assert srl_reward(ACTION, EXPERT, think="optional") == ratio(ACTION, EXPERT)
    assert srl_reward(ACTION, EXPERT, think="off") == ratio(ACTION, EXPERT)
    # `think` overrides the format's mode but keeps its other fields (here: the solution tags)
    assert srl_reward(f"<solution>{ACTION}</solution>", EXPERT, output_format=SOLUTION, think="optional") \
        == ratio(ACTION, EXPERT)
    assert srl_reward(ACTION, EXPERT, output_format=OPTIONAL, think="required") == -1.0


def test_similarity_options_are_passed_through():
    from srl.rewards.text_similarity import similarity

    predicted, expert = PAIRS[1]["predicted"], PAIRS[1]["expert"]
    completion = f"<think>t</think>{predicted}"
    assert srl_reward(completion, expert, method="indel") == similarity(predicted, expert, method="indel")
    assert srl_reward(completion, expert, method="indel") != ratio(predicted, expert)
    long_expert = PAIRS[-1]["expert"]
    assert len(long_expert) >= 200
    assert srl_reward(f"<think>t</think>{PAIRS[-1]['predicted']}", long_expert, autojunk=False) \
        == difflib.SequenceMatcher(None, PAIRS[-1]["predicted"], long_expert, False).ratio()
    assert srl_reward("<think>t</think>a   b\n c", "a b c", normalize_whitespace=True) == 1.0


def test_chat_completions():
    expected = ratio(ACTION, EXPERT)
    good = f"<think>half</think>{ACTION}"
    assert srl_reward([{"role": "assistant", "content": good}], EXPERT) == expected
    assert srl_reward({"role": "assistant", "content": good}, EXPERT) == expected
    # the assistant's contents are joined; other roles are ignored
    assert srl_reward([{"role": "assistant", "content": "<think>half</think>"},
                       {"role": "assistant", "content": ACTION}], EXPERT) == expected
    assert srl_reward([{"role": "user", "content": "ignore me"},
                       {"role": "assistant", "content": good}], EXPERT) == expected
    assert srl_reward([{"role": "user", "content": good}], EXPERT) == -1.0


def test_non_string_expert_scores_zero_not_an_error():
    for expert in (None, 72, ["x"]):
        assert srl_reward(f"<think>t</think>{ACTION}", expert) == 0.0


# ------------------------------------------------------------------------------------- outcome_reward --

OUTCOMES = [
    # (completion, final answer, reward)
    (r"So the answer is $\boxed{72}$.", "72", 1.0),
    (r"\boxed{\frac{1}{2}}", r"\frac{1}{2}", 1.0),
    (r"\boxed{\frac{1}{2}}", "0.5", 1.0),
    (r"\boxed{\frac{\sqrt{3}}{2}}", r"\frac{\sqrt{3}}{2}", 1.0),
    (r"nested: \boxed{\left\{ x \mid x^{2} = 4 \right\}} and \boxed{\dfrac{2^{10}}{4}}", "256", 1.0),
    (r"first \boxed{1}, then \boxed{2}", "2", 1.0),
    (r"first \boxed{1}, then \boxed{2}", "1", 0.0),
    (r"\boxed{72.0}", "72", 1.0),
    (r"\boxed{1,000}", "1000", 1.0),
    (r"\fbox{7}", "7", 1.0),
    (r"$\boxed 5$.", "5", 1.0),
    ("Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips.\n#### 72", "72", 1.0),
    ("#### 1,000", "1000", 1.0),
    ("#### -3", "-3", 1.0),
    (r"\boxed{7} beats #### 8", "7", 1.0),
    # wrong or missing answers
    (r"\boxed{71}", "72", 0.0),
    ("#### 71", "72", 0.0),
    (r"\boxed{\frac{1}{3}}", "0.5", 0.0),
    ("The answer is 72.", "72", 0.0),  # no box, no ####: no last-number fallback
    (r"\boxed{72", "72", 0.0),  # a truncated box
    (r"\boxed{}", "72", 0.0),
    ("", "72", 0.0),
    (r"\boxed{72}", None, 0.0),
    (r"\boxed{72}", "", 0.0),
]


@pytest.mark.parametrize("completion, answer, expected", OUTCOMES)
def test_outcome_reward(completion, answer, expected):
    assert outcome_reward(completion, answer) == expected
    assert outcome_reward([{"role": "assistant", "content": completion}], answer) == expected


def test_outcome_reward_on_real_gsm8k_solutions():
    rows = read_jsonl(GSM8K_TEST_FILE)
    gold = [row["answer"].rsplit("####", 1)[1].strip().replace(",", "") for row in rows]
    for i, row in enumerate(rows):
        assert outcome_reward(row["answer"], gold[i]) == 1.0
        other = next(g for g in gold[i + 1:] + gold[:i] if float(g) != float(gold[i]))
        assert outcome_reward(row["answer"], other) == 0.0


def test_outcome_modes():
    assert outcome_reward(r"\boxed{7} #### 8", "8", mode="gsm8k") == 1.0
    assert outcome_reward(r"\boxed{7} #### 8", "8", mode="boxed") == 0.0
    assert outcome_reward("so it is 9.", "9", mode="last_number") == 1.0


def test_number_fallback_scores_gsm8k_answers_as_the_evaluation_does():
    """The RLVR reward and `srl eval` agree: with `auto`, a GSM8K row's completion without a box or `#### n` is
    scored by its last number (a 135M model rarely boxes: with the strict format every RLVR reward of the GSM8K
    table was 0); MATH rows keep the strict format; `off` is strict everywhere."""
    from srl.evaluation.metrics import score_response

    texts = ["She pays 3 * 6 = 18 dollars.", "She pays 18 dollars, not 17.", r"\boxed{18}", "no number"]
    auto, strict = get_answer_reward(), get_answer_reward(number_fallback="off")
    assert auto(texts, ["18"] * 4, gold_kind=["gsm8k"] * 4) == [1.0, 0.0, 1.0, 0.0]
    assert auto(texts, ["18"] * 4, gold_kind=["boxed"] * 4) == [0.0, 0.0, 1.0, 0.0]
    assert auto(texts, ["18"] * 4) == [0.0, 0.0, 1.0, 0.0]  # rows without a gold_kind column: strict
    assert strict(texts, ["18"] * 4, gold_kind=["gsm8k"] * 4) == [0.0, 0.0, 1.0, 0.0]
    assert get_answer_reward(number_fallback="on")(texts, ["18"] * 4) == [1.0, 0.0, 1.0, 0.0]
    for text in texts:  # the evaluation's score of a GSM8K problem is the reward's
        assert auto([text], ["18"], gold_kind=["gsm8k"])[0] == float(score_response(text, "18",
                                                                                      number_fallback=True).correct)
    with pytest.raises(ValueError, match="number fallback"):
        get_answer_reward(number_fallback="sometimes")


GARBAGE = [
    "\\boxed{", "\\boxed{}}}}", "}}}{{{", "\\boxed", "\\boxed{\\}", "\\boxed{\\", "####", "#### ,,,", "#### ...",
    "$$", "\\boxed{$}", "\\boxed{\\frac{}{}}", "\\boxed{1/0}", "\\boxed{0/0}", "\\boxed{\\infty - \\infty}",
    "\\boxed{x = }", "\\boxed{\\begin{matrix}}", "\\boxed{(}", "\\boxed{[1, 2)}", "\\boxed{\\sqrt{-1}}",
    "\x00\x01\x02", "\ud800 lone surrogate", "😀 \\boxed{😀}", "\\boxed{10^{1000000}}", "\\boxed{(2^{30})!}",
    "\\boxed{9^{9^{9}}}", "<think>\\boxed{</think>", "\\boxed{" + "(" * 50 + "}",
]


@pytest.mark.parametrize("text", GARBAGE)
def test_garbage_never_raises(text):
    for answer in ("72", "\\frac{1}{2}", None):
        assert outcome_reward(text, answer, timeout=0.1) in (0.0, 1.0)
    for fmt in (REQUIRED, OPTIONAL, OFF, SOLUTION):
        assert -1.0 <= srl_reward(text, "Natalia sold 24 clips.", output_format=fmt) <= 1.0


# --------------------------------------------------------------------------- bounded work, odd inputs --

class _Deadline(BaseException):
    """Raised by our alarm: a BaseException so that no `except Exception` in the code under test swallows it."""


@contextmanager
def deadline(seconds: float):
    """Abort the block after `seconds` (SIGALRM; pytest runs tests in the main thread)."""

    def on_alarm(signum, frame):
        raise _Deadline(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


N = 1_000_000
LIMIT = 2.0  # seconds per call: catches super-linear work (the quadratic cases took minutes), not a speed target


# Work on 4x the text may take at most this many times as long: linear work gives ~4 (up to ~6 when the longer
# text falls out of the CPU caches, measured here), quadratic ~16. A ratio, not a time: it holds on a busy machine.
GROWTH = 8


def _fit(pattern: str, n: int = N) -> str:
    return (pattern * (n // len(pattern) + 1))[:n]


HUGE = {
    "letters": "a" * N,
    "words": _fit("the next step is 24 clips "),
    "whitespace": " " * N,
    "unicode": _fit("é😀步"),
    "nul bytes": "\x00" * N,
    "monologue then long action": "<think>" + "x " * (N // 4) + "</think>" + _fit("y ", N // 2),
    "unclosed monologue": "<think>" + _fit("think ", N - 7),
    "repeated <think>": _fit("<think>"),
    "repeated </think>": _fit("</think>"),
    "repeated monologues": _fit("<think>a</think>b"),
    "repeated solution tags": "<think>a</think>" + _fit("<solution>", N // 2) + _fit("</solution>", N // 2),
    "one huge box": "\\boxed{" + "1" * N + "}",
    "unclosed boxes": _fit("\\boxed{"),
    "many small boxes": _fit("\\boxed{1} "),
    "deeply nested braces": "\\boxed{" + "{" * (N // 2) + "}" * (N // 2) + "}",
    "backslashes": "\\" * N,
    "huge #### number": "#### " + "9" * N,
    "repeated ####": _fit("#### 1 "),
    "numbers with commas": _fit("1,"),
    "long answer at the end": _fit("x ", N - 2008) + "\\boxed{" + "9" * 2000 + "}",
    "gsm8k answer at the end": _fit("Natalia sold 24 clips. ", N - 8) + "\n#### 72",
}


def _timed(fn, *args, **kwargs) -> tuple[float, object]:
    """(best wall time of up to 2 runs, result): the second run only if the first was too slow (a busy machine)."""
    best, result = float("inf"), None
    for _ in range(2):
        start = time.perf_counter()
        with deadline(5 * LIMIT):
            result = fn(*args, **kwargs)
        best = min(best, time.perf_counter() - start)
        if best < LIMIT:
            break
    return best, result


@pytest.fixture(scope="module", autouse=True)
def _math_verify_loaded():
    """Import math-verify (and sympy) once, outside any timing."""
    outcome_reward(r"\boxed{\frac{1}{2}}", "0.5")


@pytest.mark.parametrize("name", list(HUGE))
def test_a_million_characters_is_fast(name):
    text = HUGE[name]
    assert len(text) >= N
    calls = [
        (srl_reward, (text, EXPERT), {}),
        (srl_reward, (text, EXPERT), {"think": "optional"}),
        (srl_reward, (text, EXPERT), {"think": "off"}),
        (srl_reward, (text, EXPERT), {"output_format": SOLUTION}),
        (srl_reward, (text, EXPERT), {"think": "off", "normalize_whitespace": True}),
        (srl_reward, (text, EXPERT), {"think": "off", "method": "indel"}),
        (srl_reward, ([{"role": "assistant", "content": text}], EXPERT), {"think": "optional"}),
        (outcome_reward, ([{"role": "assistant", "content": text}], "72"), {}),
    ]
    for fn, args, kwargs in calls:
        # An absolute bound, kept on purpose: these calls take well under a millisecond, so 2 s is a thousand
        # times the need even on a busy machine, and a ratio of two lengths is no good here (a prefix of these
        # texts is not the same kind of input: it may end inside the monologue).
        elapsed, value = _timed(fn, *args, **kwargs)
        assert elapsed < LIMIT, (name, fn.__name__, kwargs, elapsed)
        assert isinstance(value, float) and -1.0 <= value <= 1.0


# Degenerate repetitions of a box command with no brace after it: `srl.data.answers.extract_boxed` once matched a
# regex against a copy of the rest of the text at every occurrence, which made these quadratic (minutes at 1M).
QUADRATIC_BOXES = {
    "\\boxed repeated": _fit("\\boxed"),
    "\\boxed 1 repeated": _fit("\\boxed 1 "),
}


@pytest.mark.parametrize("name", list(QUADRATIC_BOXES))
def test_a_million_characters_of_repeated_box_commands_is_linear(name):
    text = QUADRATIC_BOXES[name]
    with deadline(5 * LIMIT):  # against a hang only
        assert outcome_reward(text, "72") == 0.0
    ratio = time_ratio(lambda t: outcome_reward(t, "72"), text[: len(text) // 4], text, repeats=2)
    assert ratio < GROWTH, f"4x the text took {ratio:.1f}x the time (quadratic: ~16x)"


def test_the_answer_check_is_time_limited():
    """A final answer that sympy chews on for seconds is cut off at `timeout` (here 0.3 s)."""
    bomb = "\\boxed{" + "(" * 600 + "1" + ")" * 600 + "}"
    # The best of two tries: a timer signal is only handled between Python steps, so one long C call of sympy on
    # a busy machine can delay it (seen once in a full run: 6 s); a broken time limit fails both tries.
    elapsed, value = _timed(outcome_reward, bomb, "72", timeout=0.3)
    assert value == 0.0
    assert elapsed < LIMIT


ODD = [
    None, 0, 1.5, True, b"<think>a</think>b", object(), ..., float("nan"),
    {}, [], (), set(), {"content": None}, {"role": "assistant"}, {"role": "assistant", "content": 5},
    [None], [1, 2], ["<think>a</think>b"], [[{"role": "assistant", "content": "<think>a</think>b"}]],
    [{"role": "assistant", "content": None}], [{"role": "assistant", "content": ["<think>a</think>", "b"]}],
    [{"role": "assistant", "content": {"text": "b"}}], [{"content": "<think>a</think>b"}],
    [{"role": None, "content": "<think>a</think>b"}], [{"role": "assistant", "content": "x"}, None, 3],
    [{"role": "assistant", "content": [{"type": "text", "text": "<think>a</think>b"}]}],
    ({"role": "assistant", "content": "<think>a</think>b"},),
]


@pytest.mark.parametrize("completion", ODD, ids=[repr(o)[:40] for o in ODD])
def test_odd_completions_never_raise(completion):
    for fmt in (REQUIRED, OPTIONAL, OFF, SOLUTION):
        elapsed, value = _timed(srl_reward, completion, "b", output_format=fmt)
        assert isinstance(value, float) and (value == -1.0 or 0.0 <= value <= 1.0) and elapsed < LIMIT
    for answer in ("72", None, 72):
        elapsed, value = _timed(outcome_reward, completion, answer)
        assert value in (0.0, 1.0) and elapsed < LIMIT
    assert step_similarity_reward([completion], ["b"])[0] in (-1.0, 0.0, 1.0)
    assert answer_reward([completion], ["72"]) == [0.0]


def test_chat_missing_role_counts_as_assistant():
    assert srl_reward([{"content": "<think>a</think>b"}], "b") == 1.0


# ------------------------------------------------------------------------------- TRL reward functions --

def trl_kwargs(n: int, **columns) -> dict:
    """The keyword arguments `trl.GRPOTrainer._calculate_rewards` adds besides the reward's own column."""
    prompt = [{"role": "system", "content": "sys"}, {"role": "user", "content": "Problem: ..."}]
    logged = []
    return {
        "prompts": [prompt] * n,
        "completion_ids": [[1, 2, 3]] * n,
        "trainer_state": SimpleNamespace(global_step=3, epoch=0.5),  # a transformers.TrainerState in TRL
        "log_extra": lambda name, values: logged.append((name, values)),
        "log_metric": lambda name, value: logged.append((name, value)),
        "step_index": [1] * n, "num_steps": [3] * n, "trajectory_id": ["t"] * n, "problem": ["p"] * n,
        "source": ["gsm8k"] * n, **columns,
    }


def test_step_similarity_reward_plain_and_chat():
    experts = [p["expert"] for p in PAIRS[:6]]
    actions = [p["predicted"] for p in PAIRS[:6]]
    texts = [f"<think>plan {i}</think>\n{a}" for i, a in enumerate(actions)]
    texts[1] = actions[1]  # no monologue: a format error
    texts[4] = "<think>never closed"
    expected = [ratio(a, e) for a, e in zip(actions, experts)]
    expected[1] = expected[4] = -1.0
    chats = [[{"role": "assistant", "content": t}] for t in texts]
    for completions in (texts, chats):
        kwargs = trl_kwargs(len(completions), final_answer=["72"] * len(completions))
        assert step_similarity_reward(completions=completions, expert_step=experts, **kwargs) == expected
        assert step_similarity_reward(completions, experts, **kwargs) == expected  # positional, too


def test_step_reward_factory_options():
    experts = [p["expert"] for p in PAIRS[:4]]
    actions = [p["predicted"] for p in PAIRS[:4]]
    optional = get_step_reward(OutputFormat(think="optional"))
    kwargs = trl_kwargs(4, final_answer=[None] * 4)
    assert optional(actions, experts, **kwargs) == [ratio(a, e) for a, e in zip(actions, experts)]
    assert step_similarity_reward(actions, experts, **kwargs) == [-1.0] * 4
    solution = get_step_reward(SOLUTION)
    assert solution([f"<think>t</think><solution>{a}</solution>" for a in actions], experts, **kwargs) \
        == [ratio(a, e) for a, e in zip(actions, experts)]
    indel = get_step_reward(OFF, method="indel")
    from srl.rewards.text_similarity import similarity

    assert indel(actions, experts) == [similarity(a, e, method="indel") for a, e in zip(actions, experts)]


def test_answer_reward_plain_and_chat():
    texts = [r"so \boxed{\frac{1}{2}}", "#### 72", "#### 71", "no answer", r"\boxed{3", r"\boxed{x^2}", ""]
    answers = ["0.5", "72", "72", "72", "3", "x^{2}", "1"]
    expected = [1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    chats = [[{"role": "assistant", "content": t}] for t in texts]
    for completions in (texts, chats):
        kwargs = trl_kwargs(len(texts), expert_step=["s"] * len(texts))
        assert answer_reward(completions=completions, final_answer=answers, **kwargs) == expected
    assert get_answer_reward(mode="gsm8k")([r"\boxed{7} #### 8"], ["8"]) == [1.0]
    assert answer_reward(["#### 72", "#### 72"], [None, 72]) == [0.0, 1.0]


def test_reward_function_names_are_stable():
    from trl.trainer.utils import get_callable_name

    assert step_similarity_reward.__name__ == "step_similarity"
    assert answer_reward.__name__ == "answer"
    for fmt in (None, REQUIRED, OPTIONAL, OFF, SOLUTION):
        f = get_step_reward(fmt, method="indel") if fmt is SOLUTION else get_step_reward(fmt)
        assert f.__name__ == "step_similarity" and get_callable_name(f) == "step_similarity"
    assert get_answer_reward(mode="boxed", timeout=1.0).__name__ == "answer"
    assert REWARDS["step_similarity"]().__name__ == "step_similarity"
    assert REWARDS["answer"]().__name__ == "answer"


# ---------------------------------------------------------------------------------- GRPOTrainer, for real --

@pytest.fixture
def one_torch_thread():
    """The tiny model gains nothing from intra-op threads, and on a busy machine the thread pool's waiting makes
    one GRPO step ~10x slower (measured: 1.7 s with 1 thread, 17.8 s with 2, at load average 9 on 2 CPUs)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_trl_grpo_trainer_one_step_logs_the_step_reward(tmp_path, monkeypatch, one_torch_thread):
    import datasets
    from trl import GRPOConfig, GRPOTrainer

    from srl.tiny import synthetic_trajectories, tiny_model, tiny_tokenizer

    monkeypatch.setenv("WANDB_DISABLED", "true")
    options = InstanceOptions(think="optional")
    rows = [row for traj in synthetic_trajectories(8) for row in trajectory_instances(traj, options)]
    dataset = datasets.Dataset.from_list(rows)
    assert len(dataset) >= 8 and isinstance(dataset[0]["prompt"], list)  # conversational

    tokenizer = tiny_tokenizer()
    model = tiny_model(tokenizer)
    reward = get_step_reward(OutputFormat(think="optional"))
    assert reward.__name__ == step_similarity_reward.__name__
    calls = []

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return reward(*args, **kwargs)

    spy.__name__ = reward.__name__
    config = GRPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, per_device_train_batch_size=8,
                        num_generations=4, max_completion_length=8, max_steps=1, logging_steps=1,
                        report_to="none", save_strategy="no", disable_tqdm=True, seed=0)
    trainer = GRPOTrainer(model=model, reward_funcs=[spy], args=config, train_dataset=dataset,
                          processing_class=tokenizer)
    trainer.train()

    assert trainer.state.global_step == 1
    logged = [entry for entry in trainer.state.log_history if "rewards/step_similarity/mean" in entry]
    assert logged, trainer.state.log_history
    mean = logged[0]["rewards/step_similarity/mean"]
    assert -1.0 <= mean <= 1.0
    # what TRL really passed: chat completions, the dataset's columns and its extras
    assert calls and {"completions", "expert_step", "prompts", "completion_ids", "trainer_state"} <= set(calls[0])
    assert isinstance(calls[0]["completions"][0], list) and calls[0]["completions"][0][0]["role"] == "assistant"
    assert len(calls[0]["completions"]) == len(calls[0]["expert_step"]) == 8
