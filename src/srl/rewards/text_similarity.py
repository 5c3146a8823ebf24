"""Step similarity for the SRL reward: R(a, b) = 2M / (|a| + |b|), exactly ``difflib``'s ratio.

The SRL paper scores a predicted step ``a`` against the expert step ``b`` with
``difflib.SequenceMatcher(None, a, b).ratio()`` where M is the total size of difflib's matching blocks.
This module computes that value, bit-identically, with the fastest backend available:

1. ``srl.rewards._difflib``: the package's own C extension (a transcription of CPython's difflib.py, about 50x
   faster than the stdlib on ~450-character steps);
2. ``cydifflib``: a Cython port of difflib (a dependency of the package; ~3x faster);
3. ``difflib``: the standard library.

All three return the same float on every input; :data:`BACKEND` names the one in use and :data:`MATCHERS`
holds every importable one (the tests compare them).

Options of :func:`similarity`:

- ``method="difflib"`` (default, the paper's metric) or ``method="indel"``: the normalised Indel
  similarity ``2 * LCS / (|a| + |b|)`` (longest common *subsequence*, as
  ``rapidfuzz.distance.Indel.normalized_similarity``). An alternative, not the paper's metric: it is
  optimal where difflib is greedy, and it has no autojunk heuristic.
- ``autojunk``: difflib's heuristic (on by default, as in the stdlib): when ``len(expert) >= 200``, the
  characters occurring more than ``len(expert) // 100 + 1`` times in the expert are not used to *seed*
  matches (they still extend them), which lowers the ratio of long steps.
- ``normalize_whitespace``: collapse every run of whitespace to one space and strip both strings first.
- ``max_chars``: bound on the work. A string longer than ``max_chars`` is compared through its first
  ``max_chars`` characters only, while the denominator keeps the true lengths:
  ``2 * M(a[:max_chars], b[:max_chars]) / (len(a) + len(b))``. The value is therefore at most
  ``2 * min(max_chars, len(b)) / (len(a) + len(b))``, so an overlong prediction gets a vanishing reward
  instead of costing seconds. It is exact when neither string exceeds ``max_chars``. For ``"indel"`` it
  is a lower bound of the exact value (an LCS cannot grow when a string is cut); for ``"difflib"`` it
  usually is one too, but not always: difflib's greedy matching is not monotone under truncation (on
  random small-alphabet strings, cutting ``a`` raises M in about 1% of cases). Without autojunk difflib's
  work grows with the product of the lengths, so ``max_chars`` is then at most :data:`NO_AUTOJUNK_MAX_CHARS`
  (3,000: a worst-case pair, all one character, takes ~0.1 s; 20,000 took 6 s).

Inputs that are not ``str`` (``None`` from a failed parse, say) score 0.0; no ``str`` input raises.

>>> similarity("Natalia sold 48/2 = 24 clips in May.", "Natalia sold 48/2 = <<48/2=24>>24 clips in May.")
0.8674698795180723
>>> similarity("", "")
1.0
>>> similarity(None, "x")
0.0
"""

from __future__ import annotations

import difflib as _stdlib_difflib
from collections.abc import Callable, Sequence

NO_AUTOJUNK_MAX_CHARS = 3000

__all__ = ["NO_AUTOJUNK_MAX_CHARS", "BACKEND", "MATCHERS", "INDEL_BACKEND", "similarity", "similarity_many", "matched_size", "lcs_length"]

# --------------------------------------------------------------------------------------- backends --
# A matcher maps (a, b, autojunk) to M, the total size of SequenceMatcher(None, a, b).get_matching_blocks().


def _stdlib_matched(a: str, b: str, autojunk: bool = True) -> int:
    return sum(block.size for block in _stdlib_difflib.SequenceMatcher(None, a, b, autojunk).get_matching_blocks())


MATCHERS: dict[str, Callable[[str, str, bool], int]] = {"difflib": _stdlib_matched}

try:
    import cydifflib as _cydifflib

    def _cydifflib_matched(a: str, b: str, autojunk: bool = True) -> int:
        return sum(block[2] for block in _cydifflib.SequenceMatcher(None, a, b, autojunk).get_matching_blocks())

    MATCHERS["cydifflib"] = _cydifflib_matched
except ImportError:  # pragma: no cover - cydifflib is a declared dependency
    _cydifflib = None

try:
    from srl.rewards import _difflib as _c_difflib

    MATCHERS["srl.rewards._difflib"] = _c_difflib.matched
except ImportError:  # the optional extension was not compiled
    _c_difflib = None

#: Name of the difflib backend in use: "srl.rewards._difflib", "cydifflib" or "difflib".
BACKEND: str = next(name for name in ("srl.rewards._difflib", "cydifflib", "difflib") if name in MATCHERS)
_matched = MATCHERS[BACKEND]

try:
    from rapidfuzz.distance import Indel as _rf_indel
except ImportError:
    _rf_indel = None

#: Backend of method="indel": "rapidfuzz" or "python" (bit-parallel LCS on Python integers).
INDEL_BACKEND: str = "rapidfuzz" if _rf_indel is not None else "python"

METHODS = ("difflib", "indel")


# ------------------------------------------------------------------------------------- primitives --


def matched_size(a: str, b: str, *, autojunk: bool = True) -> int:
    """M: the total size of ``difflib.SequenceMatcher(None, a, b, autojunk).get_matching_blocks()``."""
    return _matched(a, b, autojunk)


def _ratio(matches: int, length: int) -> float:
    """``difflib._calculate_ratio``, verbatim, so that the float is bit-identical."""
    if length:
        return 2.0 * matches / length
    return 1.0


def _lcs_length_python(a: str, b: str) -> int:
    """LCS length by the bit-parallel algorithm of Allison-Dix / Hyyro on Python integers:
    one big-integer step per character of the longer string, bits indexed by the shorter one."""
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return 0
    masks: dict[str, int] = {}
    for i, ch in enumerate(b):
        masks[ch] = masks.get(ch, 0) | (1 << i)
    full = (1 << len(b)) - 1
    v = full
    for ch in a:
        u = v & masks.get(ch, 0)
        v = ((v + u) | (v - u)) & full
    return len(b) - v.bit_count()


def lcs_length(a: str, b: str) -> int:
    """Length of the longest common subsequence of ``a`` and ``b`` (rapidfuzz if installed)."""
    if _rf_indel is not None:
        return (len(a) + len(b) - _rf_indel.distance(a, b)) // 2
    return _lcs_length_python(a, b)


def _indel(a: str, b: str, length: int) -> float:
    """``rapidfuzz.distance.Indel.normalized_similarity`` with ``length`` as the denominator."""
    if not length:
        return 1.0
    distance = length - 2 * lcs_length(a, b)
    return 1.0 - distance / length


# ------------------------------------------------------------------------------------- public API --


# Every ASCII character mapped to b" " if str.split() treats it as whitespace, else to b"x".
_ASCII_CLASSES = bytes.maketrans(
    bytes(range(128)), bytes(ord(" ") if chr(c).isspace() else ord("x") for c in range(128))
)
# The non-ASCII characters for which str.isspace() is true (the tests check this list is complete).
NON_ASCII_SPACES = (
    "\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)


def _normalized_length(text: str) -> int:
    """``len(" ".join(text.split()))`` without building the string: a few C scans, no per-word objects."""
    if not text.isascii():
        for space in NON_ASCII_SPACES:
            if space in text:
                text = text.replace(space, " ")
    # one byte per code point: the remaining non-ASCII characters (no whitespace among them) become b"?"
    classes = text.encode("ascii", "replace").translate(_ASCII_CLASSES)
    words = classes.count(b" x") + classes.startswith(b"x")
    return len(text) - classes.count(b" ") + max(words - 1, 0)


def _normalized_prefix(text: str, max_chars: int) -> str:
    """``" ".join(text.split())[:max_chars]`` reading only as much of ``text`` as needed.

    The normalisation of any prefix of ``text`` is a prefix of the normalisation of ``text`` (its last
    word may be cut, nothing else changes), so it suffices to normalise a raw prefix that yields at
    least ``max_chars`` characters.
    """
    k = 2 * max_chars + 64
    while True:
        head = " ".join(text[:k].split())
        if len(head) >= max_chars or k >= len(text):
            return head[:max_chars]
        k *= 2


def _prepare(text: str, normalize_whitespace: bool, max_chars: int) -> tuple[str, int]:
    """(the part of ``text`` that is compared, the true length that goes into the denominator)."""
    if not normalize_whitespace:
        return text[:max_chars], len(text)
    if len(text) <= max_chars:
        text = " ".join(text.split())
        return text, len(text)
    return _normalized_prefix(text, max_chars), _normalized_length(text)


def _check(method: str, max_chars: int) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if max_chars < 0:
        raise ValueError(f"max_chars must be >= 0, got {max_chars}")


def similarity(
    predicted: str,
    expert: str,
    *,
    method: str = "difflib",
    autojunk: bool = True,
    normalize_whitespace: bool = False,
    max_chars: int = 20000,
) -> float:
    """Similarity in [0, 1] of a predicted step to the expert step (see the module docstring).

    With the defaults this is exactly ``difflib.SequenceMatcher(None, predicted, expert).ratio()`` for
    strings of at most ``max_chars`` characters. Non-``str`` inputs give 0.0.
    """
    _check(method, max_chars)
    if not autojunk and method == "difflib":
        max_chars = min(max_chars, NO_AUTOJUNK_MAX_CHARS)
    if not isinstance(predicted, str) or not isinstance(expert, str):
        return 0.0
    a, la = _prepare(predicted, normalize_whitespace, max_chars)
    b, lb = _prepare(expert, normalize_whitespace, max_chars)
    if method == "indel":
        return _indel(a, b, la + lb)
    return _ratio(_matched(a, b, autojunk), la + lb)


def similarity_many(
    predictions: Sequence[str],
    expert: str,
    *,
    method: str = "difflib",
    autojunk: bool = True,
    normalize_whitespace: bool = False,
    max_chars: int = 20000,
) -> list[float]:
    """``[similarity(p, expert, ...) for p in predictions]``, preparing the expert once.

    Meant for the G completions sampled for one expert step: with the C backend the expert's index
    (difflib's ``b2j``) is built once for all of them.
    """
    _check(method, max_chars)
    if not autojunk and method == "difflib":
        max_chars = min(max_chars, NO_AUTOJUNK_MAX_CHARS)
    if not isinstance(expert, str):
        return [0.0] * len(predictions)
    b, lb = _prepare(expert, normalize_whitespace, max_chars)
    prepared = [_prepare(p, normalize_whitespace, max_chars) if isinstance(p, str) else None for p in predictions]
    kept = [item for item in prepared if item is not None]
    if method == "indel":
        values = [_indel(a, b, la + lb) for a, la in kept]
    else:
        texts = [a for a, _ in kept]
        if BACKEND == "srl.rewards._difflib":
            sizes = _c_difflib.matched_many(texts, b, autojunk)
        else:
            sizes = [_matched(a, b, autojunk) for a in texts]
        values = [_ratio(m, la + lb) for m, (_, la) in zip(sizes, kept)]
    it = iter(values)
    return [next(it) if item is not None else 0.0 for item in prepared]
