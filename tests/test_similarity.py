"""srl.rewards.text_similarity: the step-similarity core of the SRL reward.

The C extension, cydifflib and the stdlib must give bit-identical floats (==, never approx) on every input.
"""

import difflib
import json
import os
import subprocess
import sys
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from timing import time_ratio
from srl.rewards import text_similarity as S
from srl.rewards.text_similarity import similarity, similarity_many

HERE = os.path.dirname(__file__)
PAIRS_FILE = os.path.join(HERE, "data", "gsm8k_steps_pairs.jsonl")

try:
    from srl.rewards import _difflib as c_difflib
except ImportError:  # pragma: no cover - the extension is optional at install time
    c_difflib = None
needs_c = pytest.mark.skipif(c_difflib is None, reason="srl.rewards._difflib (optional C extension) is not compiled")


def stdlib_ratio(a, b, autojunk=True):
    return difflib.SequenceMatcher(None, a, b, autojunk).ratio()


def all_ratios(a, b, autojunk):
    """{backend: ratio} for every importable backend, plus the stdlib .ratio() itself."""
    out = {"stdlib .ratio()": stdlib_ratio(a, b, autojunk)}
    for name, matched in S.MATCHERS.items():
        out[name] = S._ratio(matched(a, b, autojunk), len(a) + len(b))
    if c_difflib is not None:
        out["srl.rewards._difflib.ratio"] = c_difflib.ratio(a, b, autojunk)
    return out


def assert_identical(a, b, autojunk):
    values = all_ratios(a, b, autojunk)
    expected = values["stdlib .ratio()"]
    assert all(v == expected for v in values.values()), (values, a, b, autojunk)
    assert similarity(a, b, autojunk=autojunk, max_chars=max(len(a), len(b))) == expected


def test_backend_is_the_c_extension_when_compiled():
    assert S.BACKEND == ("srl.rewards._difflib" if c_difflib is not None else "cydifflib")
    assert "difflib" in S.MATCHERS and "cydifflib" in S.MATCHERS


def test_every_backend_through_the_public_api(monkeypatch):
    for name, matched in S.MATCHERS.items():
        monkeypatch.setattr(S, "_matched", matched)
        monkeypatch.setattr(S, "BACKEND", name)
        for a, b in CASES:
            assert similarity(a, b) == stdlib_ratio(a, b), name
            assert similarity_many([a, None, b], b) == [stdlib_ratio(a, b), 0.0, stdlib_ratio(b, b)], name


def test_falls_back_to_cydifflib_without_the_extension():
    code = "import sys; sys.modules['srl.rewards._difflib'] = None; from srl.rewards import text_similarity as S; print(S.BACKEND)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "cydifflib"


# --------------------------------------------------------------------------- property-based --

SMALL = "ab c\n"
MIXED = "ab c\n\u00e9\u4e2d\U0001F600\t"


@st.composite
def related_pairs(draw, alphabet):
    """(a, b) where b shares pieces of a, so that long blocks and autojunk (len(b) >= 200) both occur."""
    chars = st.sampled_from(alphabet) if isinstance(alphabet, str) else alphabet
    sizes = st.sampled_from([0, 1, 20, 150, 200, 250, 450])  # hypothesis alone rarely goes past ~20
    a = draw(st.text(chars, min_size=draw(sizes), max_size=600))
    if draw(st.booleans()):
        b = draw(st.text(chars, min_size=draw(sizes), max_size=600))
    else:
        i = draw(st.integers(0, len(a)))
        j = draw(st.integers(i, len(a)))
        b = a[j:] + draw(st.text(chars, max_size=60)) + a[:i] + draw(st.text(chars, max_size=200))
    return (a, b) if draw(st.booleans()) else (b, a)


PROPS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPS
@given(related_pairs(SMALL), st.booleans())
def test_identical_to_stdlib_small_alphabet(pair, autojunk):
    assert_identical(*pair, autojunk)


@PROPS
@given(related_pairs(MIXED), st.booleans())
def test_identical_to_stdlib_mixed_alphabet(pair, autojunk):
    assert_identical(*pair, autojunk)


@PROPS
@given(related_pairs(st.characters()), st.booleans())
def test_identical_to_stdlib_full_unicode(pair, autojunk):
    assert_identical(*pair, autojunk)


@settings(max_examples=40, deadline=None)
@given(st.text(st.sampled_from(SMALL), min_size=200, max_size=600), st.text(st.sampled_from(SMALL), min_size=200, max_size=600))
def test_identical_to_stdlib_autojunk_range(a, b):
    # len(b) >= 200 over 5 letters: every letter is "popular" and autojunk changes the result
    assert_identical(a, b, True)
    assert_identical(a, b, False)


@needs_c
@settings(max_examples=30, deadline=None)
@given(st.lists(st.text(st.sampled_from(MIXED), max_size=300), max_size=6), st.text(st.sampled_from(MIXED), max_size=300), st.booleans())
def test_matched_many_and_similarity_many(predictions, expert, autojunk):
    assert c_difflib.matched_many(predictions, expert, autojunk) == [c_difflib.matched(p, expert, autojunk) for p in predictions]
    with_none = predictions + [None]
    assert similarity_many(with_none, expert, autojunk=autojunk) == [similarity(p, expert, autojunk=autojunk) for p in with_none]
    assert similarity_many(with_none, expert, method="indel") == [similarity(p, expert, method="indel") for p in with_none]


# ------------------------------------------------------------------------------ table cases --

CASES = [
    ("", ""),
    ("", "abc"),
    ("abc", ""),
    ("abc", "abc"),
    ("abc", "xyz"),
    ("Natalia sold 48/2 = 24 clips in May.", "Natalia sold 48/2 = <<48/2=24>>24 clips in May."),
    ("😀 emoji 😀 and ünïcödé", "ünïcödé and 😀 emoji"),
    ("\U0010ffff\x00\ud800", "\x00\ud800\U0010ffff"),  # top code point, NUL, lone surrogate
    ("a" * 300, "a" * 300),  # every element popular: no seed, but the extension loop still matches all
    ("b" + "a" * 300, "a" * 300),  # ... and here nothing: autojunk gives 0.0
    ("ab" * 150, "ba" * 150),
    ("x" + "a" * 300, "a" * 300 + "x"),
    (("The answer is 42. " * 40)[:700], ("So the answer is 42! " * 40)[:700]),
]
# Very long: only with autojunk, the stdlib takes minutes on these without it (the C extension 0.5 s).
LONG = (("The answer is 42. " * 300)[:5000], ("So the answer is 42! " * 300)[:5000])


@pytest.mark.parametrize("autojunk", [True, False])
@pytest.mark.parametrize("a,b", CASES)
def test_table(a, b, autojunk):
    assert_identical(a, b, autojunk)
    assert_identical(b, a, autojunk)


def test_very_long():
    assert_identical(*LONG, True)
    assert_identical(LONG[1], LONG[0], True)


def test_known_values():
    assert similarity("", "") == 1.0
    assert similarity("", "abc") == 0.0
    assert similarity("abc", "abc") == 1.0
    assert similarity("abc", "xyz") == 0.0
    assert similarity("a" * 300, "a" * 300) == 1.0
    assert similarity("b" + "a" * 300, "a" * 300) == 0.0  # difflib's autojunk quirk, kept on purpose
    assert similarity("b" + "a" * 300, "a" * 300, autojunk=False) == 600 / 601


def test_non_str_inputs_and_bad_options():
    assert similarity(None, "abc") == 0.0
    assert similarity("abc", None) == 0.0
    assert similarity(None, None) == 0.0
    assert similarity(b"abc", "abc") == 0.0
    assert similarity_many(["abc", None], None) == [0.0, 0.0]
    with pytest.raises(ValueError):
        similarity("a", "a", method="levenshtein")
    with pytest.raises(ValueError):
        similarity("a", "a", max_chars=-1)


@needs_c
def test_c_api_types():
    assert c_difflib.matched("hello world", "hallo word") == 9
    assert c_difflib.ratio("abc", "abd", autojunk=False) == stdlib_ratio("abc", "abd")
    with pytest.raises(TypeError):
        c_difflib.ratio(b"abc", "abc")
    with pytest.raises(TypeError):
        c_difflib.matched_many(["a", 1], "a")


# ------------------------------------------------------------------------- real GSM8K steps --


def load_pairs():
    with open(PAIRS_FILE, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_real_gsm8k_pairs_identical_to_stdlib():
    pairs = load_pairs()
    assert len(pairs) == 50
    assert any(len(p["expert"]) >= 200 for p in pairs)
    for p in pairs:
        for autojunk in (True, False):
            assert_identical(p["predicted"], p["expert"], autojunk)
    for expert in [p["expert"] for p in pairs[::10]]:  # G predictions against one expert step
        preds = [p["predicted"] for p in pairs]
        assert similarity_many(preds, expert) == [stdlib_ratio(x, expert) for x in preds]


# -------------------------------------------------------------------------------- max_chars --


@settings(max_examples=60, deadline=None)
@given(st.text(st.sampled_from(MIXED), max_size=120), st.text(st.sampled_from(MIXED), max_size=120), st.integers(0, 130), st.booleans())
def test_max_chars_definition_and_bound(a, b, max_chars, autojunk):
    value = similarity(a, b, max_chars=max_chars, autojunk=autojunk)
    total = len(a) + len(b)
    truncated = S._ratio(S.MATCHERS["difflib"](a[:max_chars], b[:max_chars], autojunk), total)
    assert value == truncated
    if total:
        assert value <= 2 * min(max_chars, len(a), len(b)) / total
    if max(len(a), len(b)) <= max_chars:
        assert value == stdlib_ratio(a, b, autojunk)
    # indel: cutting a string can only shorten the LCS, so the capped value is a lower bound
    assert similarity(a, b, method="indel", max_chars=max_chars) <= similarity(a, b, method="indel", max_chars=10**6)


def test_max_chars_is_not_always_a_lower_bound_for_difflib():
    # documented: difflib's greedy matching is not monotone under truncation
    a, b = "accbbbcccacabaabcacabaabaab", "bbaabacccbcbac"
    assert similarity(a, b, max_chars=22) > similarity(a, b)


@pytest.mark.parametrize("normalize_whitespace", [False, True])
def test_million_character_prediction_is_bounded_and_small(normalize_whitespace):
    pairs = load_pairs()
    expert = pairs[0]["expert"]
    text = "\n".join(p["predicted"] + " \u2003 " + p["expert"] for p in pairs)
    huge = (text * (1_000_000 // len(text) + 1))[:1_000_000]
    value = similarity(huge, expert, normalize_whitespace=normalize_whitespace)
    value_swapped = similarity(expert, huge, normalize_whitespace=normalize_whitespace)
    assert 0.0 <= value <= 2 * len(expert) / (len(expert) + 900_000)
    assert 0.0 <= value_swapped <= 2 * len(expert) / (len(expert) + 900_000)

    def both(prediction):
        similarity(prediction, expert, normalize_whitespace=normalize_whitespace)
        similarity(expert, prediction, normalize_whitespace=normalize_whitespace)

    ratio = time_ratio(both, huge[:500_000], huge)  # the work is bounded by max_chars, not the length
    assert ratio < 3, f"a prediction twice as long took {ratio:.1f}x the time"


# ------------------------------------------------------------------------------------ indel --


def lcs_dp(a, b):
    prev = [0] * (len(b) + 1)
    for ca in a:
        cur = [0]
        for j, cb in enumerate(b):
            cur.append(prev[j] + 1 if ca == cb else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


@settings(max_examples=100, deadline=None)
@given(st.text(st.sampled_from(MIXED), max_size=80), st.text(st.sampled_from(MIXED), max_size=80))
def test_indel(a, b):
    lcs = lcs_dp(a, b)
    assert S._lcs_length_python(a, b) == lcs
    assert S.lcs_length(a, b) == lcs
    total = len(a) + len(b)
    expected = 1.0 - (total - 2 * lcs) / total if total else 1.0
    assert similarity(a, b, method="indel") == expected


def test_indel_known_value_and_rapidfuzz():
    assert similarity("lewenstein", "levenshtein", method="indel") == pytest.approx(0.857142857142857)
    assert similarity("", "", method="indel") == 1.0
    assert similarity("abc", "", method="indel") == 0.0
    # difflib is greedy, Indel is optimal: the LCS-based value is never below the difflib one
    assert similarity("abcab", "bacba", method="indel") >= similarity("abcab", "bacba")
    rapidfuzz = pytest.importorskip("rapidfuzz")
    for a, b in CASES:
        assert similarity(a, b, method="indel") == rapidfuzz.distance.Indel.normalized_similarity(a, b)


# ------------------------------------------------------------------------------- whitespace --


def test_normalize_whitespace():
    assert similarity("  a \t\n b  ", "a b", normalize_whitespace=True) == 1.0
    assert similarity("  a \t\n b  ", "a b") < 1.0
    assert similarity("x\u3000y", "x y", normalize_whitespace=True) == 1.0
    assert similarity(" \n ", "", normalize_whitespace=True) == 1.0


def test_non_ascii_spaces_list_is_complete():
    assert S.NON_ASCII_SPACES == "".join(chr(c) for c in range(128, sys.maxunicode + 1) if chr(c).isspace())


@settings(max_examples=200, deadline=None)
@given(st.text(st.sampled_from(" \t\n\r\x0b\x0c\x1c\x1f\x85\xa0\u2003\u3000ab\u00e9\U0001F600"), max_size=80), st.integers(0, 90))
def test_normalize_whitespace_prepare(text, max_chars):
    normalized = " ".join(text.split())
    assert S._prepare(text, True, max_chars) == (normalized[:max_chars], len(normalized))
    assert similarity(text, "a b", normalize_whitespace=True, max_chars=max_chars) == S._ratio(
        S.MATCHERS["difflib"](normalized[:max_chars], "a b"[:max_chars], True), len(normalized) + 3
    )
