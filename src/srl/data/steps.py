"""Step splitters: cut an expert solution into the ordered actions y_1 .. y_N that SRL learns to predict.

Every splitter takes the solution as written and returns a `Split`: the steps (`Step`, with a title when the
format has one) and the final answer when the text states one. They are pure functions.

    splitter          what a step is
    `split_numbered`  a numbered item: the paper's `1. **Title** action`, `1)`, `Step 1:` ...
    `split_gsm8k`     a line of a GSM8K solution (calculator notes removed; `#### n` is the answer)
    `split_math`      a sentence (or paragraph) of a MATH worked solution, formulas kept whole
    `split_regex`     a match of your pattern (named group `action`), or the text between matches
    `split_list`      already split: a list of strings or of {"title", "action"} objects

Which data format uses which splitter, with which options, is the table of `srl.data.formats`
(`DataFormat.split` checks the options).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from srl.data.answers import extract_answer, extract_boxed, extract_gsm8k
from srl.data.math_steps import math_units

__all__ = [
    "Step",
    "Split",
    "split_numbered",
    "split_gsm8k",
    "split_math",
    "split_regex",
    "split_list",
]


@dataclass(frozen=True)
class Step:
    """One expert action. `title` is the short heading of the paper's template `1. **Title** action`."""

    action: str
    title: str | None = None

    @property
    def text(self) -> str:
        """The step as the expert wrote it (without its number): `**Title** action`, or the action alone."""
        return f"**{self.title}** {self.action}" if self.title else self.action


@dataclass
class Split:
    """The result of a splitter: the expert's steps in order, and the final answer if the text gives one."""

    steps: list[Step] = field(default_factory=list)
    final_answer: str | None = None


# --------------------------------------------------------------------------------------------------------------
# "numbered": the paper's template `1. **Title** action`, and plain numbered lists
# --------------------------------------------------------------------------------------------------------------

# A line that starts a numbered item. The number is in one of n1..n4; a bold heading's text in `head`.
_ITEM_RE = re.compile(
    r"""^(?P<indent>[ \t]*)(?P<heading>\#{1,6}[ \t]*)?  # optional markdown heading marks
    (?:
        \*\*[ \t]*Step[ \t]+(?P<n1>\d+)[ \t]*[:.)\-\u2013\u2014]?[ \t]*(?P<head1>[^*\n]*?)[ \t]*\*\*
                                                        # **Step 1:**  /  **Step 1: Title**
      | \*\*[ \t]*(?P<n2>\d+)[ \t]*[.)][ \t]*(?P<head2>[^*\n]*?)[ \t]*\*\*
                                                        # **1. Title**
      | Step[ \t]+(?P<n3>\d+)[ \t]*(?:[:.)\-\u2013\u2014]|(?=[ \t]*\*\*)|$)
                                                        # Step 1:  /  Step 1 **Title**
      | (?P<n4>\d+)[ \t]*[.)](?=[ \t]|$)                # 1.  /  1)
    )[ \t]*""",
    re.IGNORECASE | re.VERBOSE,
)
_BOLD_TITLE_RE = re.compile(r"\*\*(?P<title>[^*\n]+?)\*\*[ \t]*:?[ \t]*")


def _parse_item(line: str) -> tuple[int, int, str | None, str] | None:
    """(indent, number, title, rest of the line) when `line` starts a numbered item, else None."""
    m = _ITEM_RE.match(line)
    if not m:
        return None
    number = int(next(m.group(g) for g in ("n1", "n2", "n3", "n4") if m.group(g) is not None))
    title = (m.group("head1") or m.group("head2") or "").strip() or None
    rest = line[m.end():]
    if title:
        rest = rest.lstrip(": \t")  # `**1. Title**: action`
    elif bold := _BOLD_TITLE_RE.match(rest):  # `1. **Title** action` (the paper's template)
        title, rest = bold.group("title").strip(), rest[bold.end():]
    elif m.group("heading") and rest.strip():  # `### Step 1: Title` then the action on the next lines
        title, rest = rest.strip().strip("*").strip() or None, ""
    return len(m.group("indent").expandtabs(4)), number, title, rest


def split_numbered(text: str, *, keep_preamble: bool = False) -> Split:
    """Split a numbered solution: the paper's template `1. **Title** action`, one step per item.

    Recognised item starts (at the beginning of a line): `1. **Title** action`, `1. action`, `1) action`,
    `Step 1: action`, `**Step 1:** action`, `**Step 1: Title** action`, `**1. Title** action`, and markdown
    headings `### Step 1: Title`. A bold text right after the number (or the rest of a heading line) becomes
    `Step.title` (a colon after it is dropped); the rest of the item is the action.

    Decisions (the paper does not say):
    - Lines that do not start the next item are continuation lines of the current step (kept, with their
      line breaks). A line only starts the next item when its number is the previous number + 1 and it is not
      indented more than the first item, so nested lists (`1.` `2.` inside step 3) stay inside their step.
    - Text before the first item (e.g. "Here is the solution:") is dropped, unless `keep_preamble`, which makes
      it an untitled first step.
    - Text without any item gives no steps (the paper drops solutions that fail the format check).
    - The final answer is the content of the last `\\boxed{}` of the kept steps (normally in the last step).

    >>> s = split_numbered("1. **Set up** Let $x$ be the cost.\\n2. **Solve** So $x = \\\\boxed{5}$.")
    >>> [(step.title, step.action) for step in s.steps]
    [('Set up', 'Let $x$ be the cost.'), ('Solve', 'So $x = \\\\boxed{5}$.')]
    >>> s.final_answer
    '5'
    >>> [step.action for step in split_numbered("Step 1: add.\\n  1. first\\n  2. second\\nStep 2: done").steps]
    ['add.\\n  1. first\\n  2. second', 'done']
    """
    preamble: list[str] = []
    items: list[tuple[str | None, list[str]]] = []  # (title, lines of the action)
    base_indent, last_number = 0, 0
    for line in text.splitlines():
        item = _parse_item(line)
        if item is not None:
            indent, number, title, rest = item
            starts_next = not items or (number == last_number + 1 and indent <= base_indent)
            if starts_next:
                if not items:
                    base_indent = indent
                items.append((title, [rest]))
                last_number = number
                continue
        if items:
            items[-1][1].append(line)
        else:
            preamble.append(line)

    steps = [Step("\n".join(lines).strip(), title) for title, lines in items]
    steps = [s for s in steps if s.action or s.title]
    if keep_preamble and "\n".join(preamble).strip():
        steps.insert(0, Step("\n".join(preamble).strip()))
    final = extract_boxed("\n".join(s.text for s in steps)) if steps else None
    return Split(steps, final)


# --------------------------------------------------------------------------------------------------------------
# "gsm8k": one step per line
# --------------------------------------------------------------------------------------------------------------

_CALCULATOR_RE = re.compile(r"<<[^<>]*>>")
_GSM8K_ANSWER_LINE_RE = re.compile(r"^\s*####\s*(?P<answer>.*)$")


def split_gsm8k(text: str, *, keep_calculator: bool = False) -> Split:
    """Split a GSM8K solution: one step per non-empty line; the `#### n` line is the final answer, not a step.

    The calculator notes `<<48/2=24>>` are removed unless `keep_calculator`. Lines after `####` are ignored.
    The final answer follows GSM8K's own rule (`#### ` then a number, commas removed); a `####` line that is
    not a number gives its text as written.

    >>> s = split_gsm8k("Natalia sold 48/2 = <<48/2=24>>24 clips in May.\\n"
    ...                 "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\\n#### 72")
    >>> [step.action for step in s.steps]
    ['Natalia sold 48/2 = 24 clips in May.', 'Natalia sold 48+24 = 72 clips altogether in April and May.']
    >>> s.final_answer
    '72'
    >>> split_gsm8k("Half is 48/2 = <<48/2=24>>24.", keep_calculator=True).steps[0].action
    'Half is 48/2 = <<48/2=24>>24.'
    """
    steps: list[Step] = []
    final: str | None = None
    for line in text.splitlines():
        answer_line = _GSM8K_ANSWER_LINE_RE.match(line)
        if answer_line:
            final = extract_gsm8k(line.strip()) or answer_line.group("answer").strip() or None
            break
        if not keep_calculator:
            line = _CALCULATOR_RE.sub("", line)
        line = line.strip()
        if line:
            steps.append(Step(line))
    return Split(steps, final)


# --------------------------------------------------------------------------------------------------------------
# "math": sentences (or paragraphs) of a MATH worked solution (the splitter itself: srl.data.math_steps)
# --------------------------------------------------------------------------------------------------------------


def split_math(text: str, unit: str = "sentence", *, min_chars: int = 10) -> Split:
    """Split a MATH-style worked solution into sentences (`unit="sentence"`) or paragraphs (`"paragraph"`).

    Never cut inside a formula or a picture: `$..$`, `$$..$$`, `\\(..\\)`, `\\[..\\]`, `\\begin{..}..\\end{..}`
    (nested too), `[asy]..[/asy]`, or a `{..}` group. A sentence ends at `.`, `?` or `!` (also inside a
    formula: `$x = 4.$ Then`) followed by a space and a word that is not lower-case, at a blank line, or
    after a displayed formula followed by a capitalised word (`\\end{align*}Since`). Not after abbreviations
    (`e.g.`, `i.e.`, `Dr.`), initials (`J. Smith`) or inside decimals (`3.5`).

    A displayed formula (`$$`, `\\[`, `\\begin{align*}`, `[asy]`, or a `$..$` alone on its line) stays with
    the sentence that introduces it, even across a blank line. Then units are merged:
    - a unit made only of displayed formulas (a picture at the very start) joins the one before it (the next
      one at the start);
    - a unit that stops mid-sentence, ending with `:`, `,` or a word (`we get:` + blank line) joins the next;
    - a unit shorter than `min_chars` characters (`Case 1.`) joins the next (the last one joins the previous).
    Paragraph mode cuts only at blank lines, with the same rules. The final answer is the last `\\boxed{}` of
    the whole text.

    >>> s = split_math("Note that $x = 3.5$, i.e. half of 7. Then \\\\[y = 2x.\\\\]So $y = \\\\boxed{7}$.")
    >>> [step.action for step in s.steps]
    ['Note that $x = 3.5$, i.e. half of 7.', 'Then \\\\[y = 2x.\\\\]', 'So $y = \\\\boxed{7}$.']
    >>> s.final_answer
    '7'
    >>> len(split_math("First part.\\n\\nSecond part. Still second.", unit="paragraph").steps)
    2
    """
    return Split([Step(unit_text) for unit_text in math_units(text, unit, min_chars=min_chars)], extract_boxed(text))


# --------------------------------------------------------------------------------------------------------------
# "regex" and "list"
# --------------------------------------------------------------------------------------------------------------


def split_regex(text: str, pattern: str) -> Split:
    """Split with your own regular expression (compiled with `re.MULTILINE`, so `^` is a line start).

    - With a named group `action` (and optionally `title`): every match is one step.
    - Otherwise the pattern matches the separators between steps (like `re.split`; its groups are not kept).

    Empty steps are dropped. The final answer is the last `\\boxed{}`, else GSM8K's `#### n`.
    An invalid pattern raises ValueError.

    >>> [s.action for s in split_regex("a; b;; c", r";\\s*").steps]
    ['a', 'b', 'c']
    >>> s = split_regex("# Add\\n2+2=4\\n# Double\\n4*2=8", r"^# (?P<title>.+)\\n(?P<action>.+)")
    >>> [(x.title, x.action) for x in s.steps]
    [('Add', '2+2=4'), ('Double', '4*2=8')]
    """
    try:
        regex = re.compile(pattern, re.MULTILINE)
    except (re.error, TypeError) as e:
        raise ValueError(f"invalid step pattern {pattern!r}: {e}") from None
    steps: list[Step] = []
    if "action" in regex.groupindex:
        for m in regex.finditer(text):
            action = (m.group("action") or "").strip()
            title = (m.group("title") or "").strip() or None if "title" in regex.groupindex else None
            if action or title:
                steps.append(Step(action, title))
    else:
        pos = 0
        pieces = []
        for m in regex.finditer(text):
            pieces.append(text[pos : m.start()])
            pos = m.end()
        pieces.append(text[pos:])
        steps = [Step(p.strip()) for p in pieces if p.strip()]
    return Split(steps, extract_answer(text))


def split_list(steps: Iterable[str | Mapping | Step]) -> Split:
    """Steps that are already split: strings, `Step`s, or objects with "action" (and optionally "title").

    Raises ValueError naming the first bad item. The final answer is the last `\\boxed{}` (or `#### n`).

    >>> s = split_list(["Let $x=2$.", {"title": "Finish", "action": "So $\\\\boxed{4}$."}])
    >>> [(x.title, x.action) for x in s.steps], s.final_answer
    ([(None, 'Let $x=2$.'), ('Finish', 'So $\\\\boxed{4}$.')], '4')
    """
    if isinstance(steps, (str, bytes, Mapping)):
        raise ValueError("expected a list of steps, got a single " + type(steps).__name__)
    out: list[Step] = []
    for i, item in enumerate(steps, start=1):
        if isinstance(item, Step):
            step = item
        elif isinstance(item, str):
            step = Step(item.strip())
        elif isinstance(item, Mapping):
            action, title = item.get("action"), item.get("title")
            if not isinstance(action, str):
                raise ValueError(f"step {i}: expected a string field 'action', got {type(action).__name__}")
            if title is not None and not isinstance(title, str):
                raise ValueError(f"step {i}: field 'title' must be a string, got {type(title).__name__}")
            step = Step(action.strip(), (title or "").strip() or None)
        else:
            raise ValueError(f"step {i}: expected a string or an object with 'action', got {type(item).__name__}")
        if step.action or step.title:
            out.append(step)
    return Split(out, extract_answer("\n".join(s.text for s in out)) if out else None)
