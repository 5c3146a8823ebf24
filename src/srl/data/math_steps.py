"""The LaTeX-aware sentence splitter behind `split_math` (`srl.data.steps`): where a MATH worked solution may be
cut into sentences or paragraphs without ever cutting inside a formula, an environment, an [asy] picture or a
{group}, and how the pieces are merged so that a displayed formula stays with the sentence that introduces it.

`math_units(text, unit)` returns the pieces as strings; `split_math` makes them `Step`s.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable
from dataclasses import dataclass



@dataclass(frozen=True)
class _Block:
    """A span of the text that is never cut: a formula, an environment, an [asy] picture or a {group}."""

    start: int
    end: int
    display: bool  # shown on its own: `$$`, `\[`, `\begin{..}`, [asy], or a `$..$` alone on its line(s)


def _find_closing(text: str, start: int, closer: str, unclosed: dict[str, int]) -> int | None:
    """Index just after the first unescaped `closer` at or after `start`, or None.

    `unclosed[closer]` remembers where a search already failed, so that a text full of unclosed delimiters is
    still scanned in linear time."""
    if start >= unclosed.get(closer, len(text) + 1):
        return None
    i = start
    while i < len(text):
        if text.startswith(closer, i):
            return i + len(closer)
        i += 2 if text[i] == "\\" else 1  # skip escaped characters (`\$`, `\\`)
    unclosed[closer] = start
    return None


def _match_braces(text: str) -> dict[int, int]:
    """For every `{` that is closed: its index -> the index just after its `}` (escaped braces skipped)."""
    pairs: dict[int, int] = {}
    stack: list[int] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            stack.append(i)
        elif c == "}" and stack:
            pairs[stack.pop()] = i + 1
        i += 1
    return pairs


def _match_environments(text: str) -> dict[int, int]:
    """For every `\\begin{env}` that is closed: its index -> the index just after its `\\end{env}` (nesting ok)."""
    pairs: dict[int, int] = {}
    open_envs: dict[str, list[int]] = {}
    for m in re.finditer(r"\\(begin|end)\{([^{}]+)\}", text):
        stack = open_envs.setdefault(m.group(2), [])
        if m.group(1) == "begin":
            stack.append(m.start())
        elif stack:
            pairs[stack.pop()] = m.end()
    return pairs


def _find_blocks(text: str) -> list[_Block]:
    """The protected spans of `text`, in order. Unclosed delimiters are treated as ordinary characters, except
    an unclosed `[asy]`, which protects the rest of the text (it is code)."""
    braces, environments, unclosed = _match_braces(text), _match_environments(text), {}
    blocks: list[_Block] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        end, display = None, False
        if c == "[" and text.startswith("[asy]", i):
            close = text.find("[/asy]", i + 5)
            end, display = (n if close < 0 else close + 6), True
        elif c == "\\":
            nxt = text[i + 1 : i + 2]
            if nxt == "[":
                end, display = _find_closing(text, i + 2, "\\]", unclosed), True
            elif nxt == "(":
                end = _find_closing(text, i + 2, "\\)", unclosed)
            elif nxt == "b" and text.startswith("\\begin{", i):
                end, display = environments.get(i), True
            if end is None:
                i += 2  # an escaped character or a command: skip both characters
                continue
        elif c == "$":
            if text.startswith("$$", i):
                end, display = _find_closing(text, i + 2, "$$", unclosed), True
            else:
                end = _find_closing(text, i + 1, "$", unclosed)
        elif c == "{":
            end = braces.get(i)
        if end is None:
            i += 1
            continue
        if not display and c != "{":
            display = _alone_on_its_lines(text, i, end)
        blocks.append(_Block(i, end, display))
        i = end
    return blocks


def _alone_on_its_lines(text: str, start: int, end: int) -> bool:
    """Whether text[start:end] has its lines to itself (bar a final `.,;:`): inline math used as a display."""
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", end)
    after = text[end : len(text) if line_end < 0 else line_end].strip()
    return not text[line_start:start].strip() and after in ("", ".", ",", ";", ":")


_SENTENCE_END = ".?!"
_CLOSERS = "\"')]\u2019\u201d"
_NOT_A_START = ",;:.!?)]}"
# Words ending with a period that do not end a sentence (compared in lower case, with their dots).
_ABBREVIATIONS = frozenset(
    "e.g. i.e. cf. vs. viz. approx. resp. mr. mrs. ms. dr. prof. st. jr. sr. fig. eq. eqn. no. nos. vol. "
    "ch. sec. thm. def. prop. lem. cor. ex.".split()
)
# Capitalised words that start a sentence, so that `... Person A. Therefore ...` ends at `A.` while
# `John F. Kennedy` keeps its initial.
_SENTENCE_OPENERS = frozenset(
    "A An And As Also At Because But By Case Clearly Consider Each Finally First For From Hence However If In "
    "It Let Next Note Now Of On Once Our Second Similarly Since So Suppose That The Then There Therefore These "
    "This Thus To Using We When Which While With".split()
)
_WORD_BEFORE_RE = re.compile(r"([A-Za-z][A-Za-z.']*)\.$")


def _is_abbreviation_or_initial(text: str, dot: int, next_start: int) -> bool:
    """Whether the period at `text[dot]` belongs to an abbreviation (`e.g.`) or an initial (`J. R. Smith`)."""
    m = _WORD_BEFORE_RE.search(text, max(0, dot - 12), dot + 1)
    if not m:
        return False
    word = m.group(1) + "."
    if m.start() > 0 and text[m.start() - 1].isalnum():
        return False
    if word.lower() in _ABBREVIATIONS:
        return True
    if not (len(word) == 2 and word[0].isupper()):
        return False
    # A single capital letter: an initial if another initial or a name (a capitalised word) is around it.
    before = text[max(0, m.start() - 40) : m.start()].split()
    after = text[next_start : next_start + 40].split()
    prev_word, next_word = (before[-1] if before else ""), (after[0] if after else "")
    if re.fullmatch(r"[A-Z]\.", prev_word) or re.fullmatch(r"[A-Z]\.", next_word):
        return True
    next_bare = next_word.rstrip(",.;:'\u2019s")
    if not (next_bare[:1].isupper() and next_bare.isalpha()):
        return True  # a label such as `$\bullet$ A. $14.5$`: a sentence starts with a word
    return prev_word[:1].isupper() and prev_word.isalpha() and next_bare not in _SENTENCE_OPENERS


def _skip_space(text: str, i: int) -> int:
    while i < len(text) and text[i].isspace():
        i += 1
    return i


def _math_boundaries(text: str, blocks: list[_Block], unit: str) -> list[int]:
    """The positions where a new sentence (unit="sentence") or paragraph starts."""
    starts_display = {b.start for b in blocks if b.display}
    block_starts = {b.start for b in blocks}
    protected = bytearray(len(text))
    for b in blocks:
        protected[b.start : b.end] = b"\x01" * (b.end - b.start)

    def can_start(q: int, uppercase_only: bool = False) -> bool:
        """A new unit may start at q: not inside a block, not before a display (it stays with its
        introduction), not with a lower-case word or a closing punctuation mark."""
        if q >= len(text) or q in starts_display or (protected[q] and q not in block_starts):
            return False
        if uppercase_only:
            return text[q].isupper()
        return not text[q].islower() and text[q] not in _NOT_A_START

    cuts: set[int] = set()
    # Blank lines (both units).
    for m in re.finditer(r"\n[ \t]*\n\s*", text):
        q = m.end()
        if not protected[m.start()] and can_start(q):
            cuts.add(q)
    if unit == "paragraph":
        return sorted(cuts)

    # Sentence punctuation in the prose: `. `, `?" `, `!) ` ...
    for m in re.finditer(r"[.?!][\"')\]\u2019\u201d]*\s+", text):
        if protected[m.start()]:
            continue
        q = m.end()
        if not can_start(q):
            continue
        if text[m.start()] == "." and _is_abbreviation_or_initial(text, m.start(), q):
            continue
        cuts.add(q)
    # Formulas that end a sentence: `$x = 4.$ Then`, `\[ ... .\]Meanwhile`, `\end{align*}Since`.
    for b in blocks:
        body = _block_body(text, b)
        q = _skip_space(text, b.end)
        while q < len(text) and text[q] in _CLOSERS and not protected[q]:
            q = _skip_space(text, q + 1)
        if body.endswith(tuple(_SENTENCE_END)):
            if can_start(q):
                cuts.add(q)
        elif b.display and text[b.start] != "{" and can_start(q, uppercase_only=True):
            cuts.add(q)
    return sorted(cuts)


def _block_body(text: str, b: _Block) -> str:
    """The content of a formula block without its delimiters, stripped (`$x.$` -> `x.`)."""
    s = text[b.start : b.end]
    for opener, closer in (("$$", "$$"), ("$", "$"), ("\\[", "\\]"), ("\\(", "\\)"), ("[asy]", "[/asy]")):
        if s.startswith(opener) and s.endswith(closer) and len(s) >= len(opener) + len(closer):
            return s[len(opener) : len(s) - len(closer)].strip()
    m = re.fullmatch(r"\\begin\{[^{}]+\}(.*)\\end\{[^{}]+\}", s, re.DOTALL)
    if m:
        return m.group(1).strip().removesuffix("\\\\").strip()
    return ""  # a {group} never ends a sentence


def _only_display(text: str, start: int, end: int, blocks: list[_Block], starts: list[int]) -> bool:
    """Whether text[start:end] holds nothing but displayed formulas/pictures (and spaces or punctuation).
    `starts` are the blocks' start indexes (sorted), for a binary search."""
    pos = start
    for b in blocks[max(0, bisect.bisect_left(starts, start) - 1) :]:
        if b.start >= end:
            break
        if b.end <= start:
            continue
        if any(c.isalnum() for c in text[pos : b.start]) or not b.display:
            return False
        pos = max(pos, b.end)
    return not any(c.isalnum() for c in text[pos:end])


def _unfinished(unit: str) -> bool:
    """Whether a unit stops mid-sentence (`we get:`, `correctly if`, `Then,`): it introduces the next one."""
    unit = unit.rstrip()
    return bool(unit) and (unit[-1] in ":," or unit[-1].isalpha())


def _merge_spans(spans: list[tuple[int, int]], weak: Callable[[int, int], bool], *, into: str
                 ) -> list[tuple[int, int]]:
    """Merge every span for which `weak(start, end)` holds into a neighbour.

    into="previous": into the span before it (a weak first span goes into the next one).
    into="next": into the span after it; a weak last span goes into the previous one.
    into="next-or-stay": into the span after it; a weak last span stays as it is.
    """
    out: list[tuple[int, int]] = []
    carry: int | None = None  # start of a weak span waiting for the next one
    for a, b in spans:
        if carry is not None:
            a, carry = carry, None
        if not weak(a, b):
            out.append((a, b))
        elif into == "previous" and out:
            out[-1] = (out[-1][0], b)
        else:
            carry = a
    if carry is not None:
        end = spans[-1][1]
        if out and into != "next-or-stay":
            out[-1] = (out[-1][0], end)
        else:
            out.append((carry, end))
    return out


def math_units(text: str, unit: str = "sentence", *, min_chars: int = 10) -> list[str]:
    """The sentences (`unit="sentence"`) or paragraphs of a MATH-style solution, stripped, in order; the rules are
    those of `srl.data.steps.split_math`.

    >>> math_units("Let $x = 3.5$. Then \\\\[y = 2x.\\\\]So $y = 7$.")
    ['Let $x = 3.5$.', 'Then \\\\[y = 2x.\\\\]', 'So $y = 7$.']
    """
    if unit not in ("sentence", "paragraph"):
        raise ValueError(f"unknown unit {unit!r} for the math splitter (expected 'sentence' or 'paragraph')")
    blocks = _find_blocks(text)
    starts = [b.start for b in blocks]
    cuts = [0] + _math_boundaries(text, blocks, unit) + [len(text)]
    spans = [(a, b) for a, b in zip(cuts, cuts[1:]) if text[a:b].strip()]

    spans = _merge_spans(spans, lambda a, b: _only_display(text, a, b, blocks, starts), into="previous")
    spans = _merge_spans(spans, lambda a, b: _unfinished(text[a:b]), into="next-or-stay")
    spans = _merge_spans(spans, lambda a, b: len(text[a:b].strip()) < min_chars, into="next")
    return [text[a:b].strip() for a, b in spans]


