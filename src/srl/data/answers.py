"""Final answers: pull them out of a solution or a response.

Shared by the step splitters (`srl.data.steps` reads the expert's final answer), the outcome reward and the
evaluation. Whether two answers are the same is `srl.rewards.answers.answers_match`.

    `extract_boxed`       the content of the last `\\boxed{...}` (or `\\boxed x`, `\\fbox{}`, `\\framebox{}`)
    `extract_gsm8k`       GSM8K's `#### n` line, with the dataset's own regex
    `extract_last_number` the last number in the text (a GSM8K fallback)
    `extract_answer`      one of the above by name, or "auto": boxed, then `####`
    `use_number_fallback` whether a response's last number counts as its answer (`--number_fallback`)
"""

from __future__ import annotations

import re

__all__ = [
    "extract_boxed",
    "extract_gsm8k",
    "extract_last_number",
    "extract_answer",
    "use_number_fallback",
    "gold_kind_of",
    "ANSWER_MODES",
    "NUMBER_FALLBACKS",
]

ANSWER_MODES = ("auto", "boxed", "gsm8k", "last_number")
NUMBER_FALLBACKS = ("auto", "on", "off")

# --------------------------------------------------------------------------------------------------------------
# Extraction
# --------------------------------------------------------------------------------------------------------------

_BOX_RE = re.compile(r"\\(?:boxed|fbox|framebox)(?![A-Za-z])")


def closing_brace(text: str, start: int) -> int | None:
    """Index of the `}` that closes the `{` at `text[start]`, skipping escaped braces; None if unbalanced."""
    depth = 0
    i = start
    while i < len(text):
        c = text[i]
        if c == "\\":
            i += 2  # `\{`, `\}` and `\\` are not grouping braces
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return None


_TOKEN_RE = re.compile(r"[^\s$]+")


def _boxed_at(text: str, end_of_command: int) -> tuple[str | None, int]:
    """Parse the argument of a box command ending at `end_of_command`: (content or None, index after it)."""
    i = end_of_command
    while i < len(text) and text[i] in " \t":
        i += 1
    if i < len(text) and text[i] == "{":
        close = closing_brace(text, i)
        if close is None:
            return None, len(text)
        return text[i + 1 : close].strip(), close + 1
    if i == end_of_command:  # `\boxed` directly followed by a non-brace, or by nothing
        return None, i
    # `\boxed 5`: TeX boxes a single token; take the run up to whitespace or `$`, minus sentence punctuation.
    m = _TOKEN_RE.match(text, i)  # matched in place: slicing here made repeated `\boxed` quadratic
    if not m:
        return None, i
    return m.group(0).rstrip(".,;:"), m.end()


def extract_boxed(text: str) -> str | None:
    """The content of the last `\\boxed{...}` in `text` (also `\\boxed x`, `\\fbox{...}`, `\\framebox{...}`).

    Nested braces are matched; a box inside another box is part of the outer one. Returns None when there is no
    box, or when the last one is not closed (e.g. a truncated generation).

    >>> extract_boxed(r"so $x = \\boxed{\\frac{1}{2}}$.")
    '\\\\frac{1}{2}'
    >>> extract_boxed(r"\\boxed{1} then \\boxed{2}")
    '2'
    >>> extract_boxed(r"$\\boxed 5$")
    '5'
    >>> extract_boxed(r"\\fbox{(C)}")
    '(C)'
    >>> extract_boxed(r"\\boxed{\\frac{1}{2}") is None
    True
    >>> extract_boxed("no box") is None
    True
    """
    if not isinstance(text, str):
        return None
    found: str | None = None
    pos = 0
    while True:
        m = _BOX_RE.search(text, pos)
        if m is None:
            return found
        content, pos = _boxed_at(text, m.end())
        found = content  # the last box wins, even when it is broken (None)
        if content is None and pos >= len(text):
            return None


# The official GSM8K answer regex: github.com/openai/grade-school-math, grade_school_math/dataset.py (ANS_RE).
GSM8K_ANSWER_RE = re.compile(r"#### (\-?[0-9\.\,]+)")


def extract_gsm8k(text: str) -> str | None:
    """The GSM8K answer: the number after `#### `, commas removed (as the dataset's own `extract_answer`).

    >>> extract_gsm8k("Natalia sold 48+24 = <<48+24=72>>72 clips.\\n#### 72")
    '72'
    >>> extract_gsm8k("#### 1,000")
    '1000'
    >>> extract_gsm8k("The answer is 5.") is None
    True
    """
    if not isinstance(text, str):
        return None
    m = GSM8K_ANSWER_RE.search(text)
    return m.group(1).strip().replace(",", "") if m else None


# A number: thousands groups with commas (1,234,567.5), or plain digits with an optional decimal part, or .5
_NUMBER_RE = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)(?![\d,]*\d)")


def extract_last_number(text: str) -> str | None:
    """The last number in `text`, commas removed (a fallback when there is no `####` or box).

    >>> extract_last_number("She earned $1,200.50 in total, so 3 weeks.")
    '3'
    >>> extract_last_number("She earned $1,200.50.")
    '1200.50'
    >>> extract_last_number("a loss of -4 dollars")
    '-4'
    >>> extract_last_number("none") is None
    True
    """
    if not isinstance(text, str):
        return None
    numbers = _NUMBER_RE.findall(text)
    return numbers[-1].replace(",", "") if numbers else None


def extract_answer(text: str, mode: str = "auto", *, last_number_fallback: bool = False) -> str | None:
    """The final answer of `text` by `mode`: "boxed", "gsm8k", "last_number", or "auto" (boxed, then `####`,
    then the last number only if `last_number_fallback`).

    >>> extract_answer(r"so it is \\boxed{7}.\\n#### 8")
    '7'
    >>> extract_answer("#### 8")
    '8'
    >>> extract_answer("It is 9.") is None
    True
    >>> extract_answer("It is 9.", last_number_fallback=True)
    '9'
    """
    return find_answer(text, mode, last_number_fallback=last_number_fallback)[0]


def find_answer(text: str, mode: str = "auto", *, last_number_fallback: bool = False) -> tuple[str | None, str | None]:
    """(answer, how it was found: "boxed", "gsm8k" or "last_number"), (None, None) when there is none; see
    `extract_answer`. A "last_number" answer under `mode="auto"` is the fallback: the response did not write the
    answer in the asked-for format (a response cut at the token limit usually ends in some number).

    >>> find_answer("It is 9.", last_number_fallback=True)
    ('9', 'last_number')
    """
    extractors = {"boxed": extract_boxed, "gsm8k": extract_gsm8k, "last_number": extract_last_number}
    if mode == "auto":
        order = ["boxed", "gsm8k"] + (["last_number"] if last_number_fallback else [])
    elif mode in extractors:
        order = [mode]
    else:
        raise ValueError(f"unknown answer mode {mode!r} (expected one of {', '.join(ANSWER_MODES)})")
    for how in order:
        answer = extractors[how](text)
        if answer is not None:
            return answer, how
    return None, None


# --------------------------------------------------------------------------------------------------------------
# Which answers may fall back on the last number
# --------------------------------------------------------------------------------------------------------------


def use_number_fallback(number_fallback: str, gold_kind: str | None) -> bool:
    """Whether the last number of a response counts as its answer when it has no `\\boxed{}` or `#### n`:
    `on`, `off`, or `auto` = for GSM8K golds (a `#### n` line), as GSM8K's own flexible scoring does.
    `srl eval` and the RLVR reward (`srl train --stage rlvr`) decide alike.

    >>> use_number_fallback("auto", "gsm8k"), use_number_fallback("auto", "boxed"), use_number_fallback("on", None)
    (True, False, True)
    """
    if number_fallback not in NUMBER_FALLBACKS:
        raise ValueError(f"unknown number fallback {number_fallback!r} (expected one of {', '.join(NUMBER_FALLBACKS)})")
    if number_fallback == "auto":
        return gold_kind == "gsm8k"
    return number_fallback == "on"


def is_number(text: str) -> bool:
    """Whether `text` is one number (commas as thousands separators allowed).

    >>> is_number("1,234.5"), is_number("x^2")
    (True, False)
    """
    return _NUMBER_RE.fullmatch(text) is not None
