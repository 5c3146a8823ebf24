"""Step splitters (`srl.data.steps`) on real rows of tests/data (see tests/data/SOURCE.md).

The expected steps below were read and checked by hand against the source rows.
"""

import json
import os
import re
import time

import pytest

from timing import time_ratio
from srl.data.answers import extract_boxed, extract_gsm8k
from srl.data.formats import DATA_FORMATS, data_format
from srl.data.steps import Split, split_gsm8k, split_list, split_math, split_numbered, split_regex
from srl.data.trajectories import Step

HERE = os.path.dirname(__file__)
DATA = os.path.join(HERE, "data")
REPO = os.path.dirname(HERE)
BUNDLED_GSM8K = os.path.join(REPO, "src", "srl", "data", "gsm8k_train_sample.jsonl")
SHARED_GSM8K_TRAIN = os.path.join(os.path.dirname(REPO), "shared", "data", "gsm8k", "train.jsonl")


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


GSM8K_TRAIN = read_jsonl(BUNDLED_GSM8K)
GSM8K_TEST = read_jsonl(os.path.join(DATA, "gsm8k_test_sample.jsonl"))
MATH = {row["idx"]: row for row in read_jsonl(os.path.join(DATA, "math_nonmath500_sample.jsonl"))}
NUMBERED = {row["id"]: row for row in read_jsonl(os.path.join(DATA, "numbered_solutions.jsonl"))}


def actions(result: Split) -> list[str]:
    return [step.action for step in result.steps]


# ---------------------------------------------------------------------------------------------------------
# gsm8k
# ---------------------------------------------------------------------------------------------------------

GSM8K_EXPECTED = [
    # (row of the bundled train sample, steps, final answer)
    (0, ["Natalia sold 48/2 = 24 clips in May.",
         "Natalia sold 48+24 = 72 clips altogether in April and May."], "72"),
    (1, ["Weng earns 12/60 = $0.2 per minute.",
         "Working 50 minutes, she earned 0.2 x 50 = $10."], "10"),
    (2, ["In the beginning, Betty has only 100 / 2 = $50.",
         "Betty's grandparents gave her 15 * 2 = $30.",
         "This means, Betty needs 100 - 50 - 30 - 15 = $5 more."], "5"),
]


@pytest.mark.parametrize("row, steps, answer", GSM8K_EXPECTED)
def test_gsm8k_rows_exact(row, steps, answer):
    result = split_gsm8k(GSM8K_TRAIN[row]["answer"])
    assert actions(result) == steps
    assert all(step.title is None for step in result.steps)
    assert result.final_answer == answer


def test_gsm8k_keep_calculator():
    result = split_gsm8k(GSM8K_TRAIN[0]["answer"], keep_calculator=True)
    assert actions(result) == ["Natalia sold 48/2 = <<48/2=24>>24 clips in May.",
                               "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May."]


@pytest.mark.parametrize("row", GSM8K_TEST, ids=lambda r: r["question"][:30])
def test_gsm8k_test_rows(row):
    lines = [line for line in row["answer"].split("\n") if line.strip()]
    result = split_gsm8k(row["answer"])
    assert lines[-1].startswith("#### ")
    assert len(result.steps) == len(lines) - 1  # one step per line, the `####` line excluded
    assert result.final_answer == extract_gsm8k(row["answer"])
    for step, line in zip(result.steps, lines):
        assert "<<" not in step.action and ">>" not in step.action
        assert step.action == re.sub(r"<<[^<>]*>>", "", line).strip()


def test_gsm8k_commas_in_answer_and_missing_answer():
    assert split_gsm8k("He pays 1000+200 = <<1000+200=1200>>1,200.\n#### 1,200").final_answer == "1200"
    no_answer = split_gsm8k("First line.\n\n  Second line.  \n")
    assert actions(no_answer) == ["First line.", "Second line."]
    assert no_answer.final_answer is None


@pytest.mark.skipif(not os.path.exists(SHARED_GSM8K_TRAIN), reason="shared data not present")
def test_gsm8k_full_train_is_linear_and_has_two_steps_each():
    with open(SHARED_GSM8K_TRAIN, encoding="utf-8") as f:
        answers = [json.loads(line)["answer"] for line in f]
    assert len(answers) == 7473
    results = [split_gsm8k(answer) for answer in answers]
    half = answers[: len(answers) // 2]
    ratio = time_ratio(lambda texts: [split_gsm8k(t) for t in texts], half, half + half)
    assert ratio < 3, f"twice the solutions took {ratio:.1f}x the time"
    short = [i for i, r in enumerate(results) if len(r.steps) < 2]
    assert not short, f"{len(short)} solutions have fewer than 2 steps (rows {short[:10]})"
    assert all(r.final_answer is not None for r in results)


# ---------------------------------------------------------------------------------------------------------
# math
# ---------------------------------------------------------------------------------------------------------

MATH_EXPECTED = {
    # plain sentences
    0: ["The denominator of the rational function factors into $x^2+x-6=(x-2)(x+3)$.",
        "Since the numerator is always nonzero, there is a vertical asymptote whenever the denominator is $0$, "
        "which occurs for $x = 2$ and $x = -3$.",
        "Therefore, the graph has $\\boxed{2}$ vertical asymptotes."],
    # nested braces in the box
    1229: ["There are $\\binom{6}{4} = 15$ ways to mark any four seats.",
           "Of these 15 ways, only one is correct, so the answer is $\\boxed{\\frac{1}{15}}$."],
    # \[..\] and \begin{align*} (its `\\` line breaks and inner periods) stay whole, attached to their sentence
    568: ["Cube both sides of $a+b=7$ to find \\[\na^3+3a^2b+3ab^2+b^3=343.\n\\]",
          "Substitute 42 for $a^3+b^3$ and factor $3ab$ out of the remaining two terms. \\begin{align*}\n"
          "42+3ab(a+b)&=343 \\implies \\\\\n3ab(a+b)&=301 \\implies \\\\\n3ab(7)&=301 \\implies \\\\\n"
          "3ab&=43 \\implies \\\\\nab&=\\frac{43}{3}.\n\\end{align*}",
          "Finally, $\\frac{1}{a}+\\frac{1}{b}=\\frac{a+b}{ab}=\\frac{7}{43/3}=\\boxed{\\frac{21}{43}}$."],
    # $$..$$ holding \begin{cases}; a sentence ends inside `$..$` (`[6,\infty).$Thus`)
    1035: ["We have $$F(x) = \\begin{cases}\n-(x+1)-(x-5) &\\text{if }x<-1 \\\\\n"
           "(x+1)-(x-5) &\\text{if }-1\\le x<5 \\\\\n"
           "(x+1)+(x-5) &\\text{if }x\\ge 5\n\\end{cases}.$$",
           "Simplifying, we have $$F(x) = \\begin{cases}\n4-2x &\\text{if }x<-1 \\\\\n6 &\\text{if }-1\\le x<5 \\\\\n"
           "2x-4 &\\text{if }x\\ge 5\n\\end{cases}.$$",
           "For $x<-1,$ the function $4-2x$ achieves all values in $(6,\\infty),$ and for $x\\ge 5,$ the function "
           "$2x-4$ achieves all values in $[6,\\infty).$",
           "Thus, the range of $F(x)$ is $\\boxed{[6,\\infty)}.$"],
    # `\$` is a dollar sign, not math; the $$ display after a blank line stays with its sentence
    21: ["The stamp is currently worth $\\$2.50$.",
         "$12$ years is four more doubling periods, so at the end the stamp will be worth $2^4=16$ times what it is "
         "now, or\n\n$$16(\\$2.50)=\\boxed{\\$40}$$"],
    146: ["If seven pens costs $\\$9.24$, then each pen costs $\\frac{924}{7}=132$ cents.",
          "Now we can multiply ratios to find the cost of one pencil. $$\\frac{11\\text{ pencils}}{3 \\text{ pens}}"
          "\\times\\frac{1\\text{ pen}}{132\\text{ cents}}=\\frac{11}{132\\times3}=\\frac{1}{12\\times3}="
          "\\frac{1 \\text{ pencil}}{36 \\text{ cents}}$$",
          "The ratio is $1$ pencil to $36$ cents, so a pencil costs $\\boxed{36}$ cents."],
    # "e.g." is not the end of a sentence
    4211: ["We first calculate the sum of all digits used to write the whole numbers 0 through 99.",
           "If we consider all such numbers as two-digit (e.g. write 04 instead of 4), the sum of digits will be "
           "unchanged.",
           "Then we see that each digit appears an equal number of times in the ones place, and similarly for the "
           "tens place, meaning it appears a total of $2\\cdot \\frac{100}{10} = 20$ times.",
           "Thus the sum of all digits used to write the whole numbers 00 through 99 is "
           "$20\\cdot (0 + 1 +\\cdots + 8 + 9) = 900$.",
           "The sum of the digits from 100 to 110 is just $(1 + 0) + (1 + 1) + (1 + 2) + \\cdots + (1+9) + 2 = 57$.",
           "Thus our final answer is $900 + 57 = \\boxed{957}$."],
    # capital letters as names of points end sentences ("... to J to B. The ...")
    1448: ["There are two paths from A to B: A to K to B, and A to J to B.",
           "The probability that a log will go from A to K to B is the probability that it will choose the middle "
           "flume initially times the probability that it will choose the flume to the right given that it chose "
           "the middle flume initially: $\\left(\\frac{1}{3}\\right)\\left(\\frac{1}{2}\\right)=\\frac{1}{6}$.",
           "Similarly, the probability that the log will go from A to J to B is "
           "$\\left(\\frac{1}{3}\\right)\\left(\\frac{1}{3}\\right)=\\frac{1}{9}$.",
           "In total, the probability that the log reaches B is "
           "$\\dfrac{1}{6}+\\dfrac{1}{9}=\\boxed{\\frac{5}{18}}$."],
    # `$..$` alone on its line acts as a display; "Then," / "Thus," + blank line introduce what follows
    3081: ["We can express the decimal as a geometric series, with first term $.283$, and common ratio $.001$.",
           "Let S denote the sum of this infinite geometric series:\n\n$S = .283 + .000283 + \\dots$",
           "Then,\n\n$1000S = 283.283283283\\dots$",
           "Thus,\n\n$999S = 283$\n\nand\n\n$S = \\frac{283}{999}$",
           "Thus, $3.283283\\dots = 3 + \\frac{283}{999} = \\boxed{\\frac{3280}{999}}$"],
    # a line ending with `:` (no period) joins the next paragraph; `Case 2.` + lower case is not an end
    3191: ["The student will answer a question correctly if\n\nCase 1: both the student and the answer key say it is "
           "true.",
           "This happens when the answer is NOT a multiple of 3 but IS a multiple of 4.",
           "Case 2. both the student and the answer key say it is false.",
           "This happens when the answer IS a multiple of 3 but is NOT a multiple of 4.",
           "Since the LCM of 3 and 4 is 12, the divisibility of numbers (in our case, correctness of answers) will "
           "repeat in cycles of 12.",
           "In the first 12 integers, $4$ and $8$ satisfy Case 1 and $3,6,$ and $9$ satisfy Case 2, so for every "
           "group of 12, the student will get 5 right answers.",
           "Since there are 8 full groups of 12 in 100, the student will answer at least $8 \\cdot 5 = 40$ "
           "questions correctly.",
           "However, remember that we must also consider the leftover numbers 97, 98, 99, 100 and out of these, "
           "$99$ and $100$ satisfy one of the cases.",
           "So our final number of correct answers is $40 + 2 = \\boxed{42}$."],
}


@pytest.mark.parametrize("idx", sorted(MATH_EXPECTED))
def test_math_sentences_exact(idx):
    result = split_math(MATH[idx]["solution"])
    assert actions(result) == MATH_EXPECTED[idx]
    assert result.final_answer == extract_boxed(MATH[idx]["solution"])


def test_math_nested_boxed_answer():
    assert split_math(MATH[1229]["solution"]).final_answer == "\\frac{1}{15}"
    assert split_math(MATH[4505]["solution"]).final_answer == "\\begin{pmatrix} 3/5 \\\\ 57/5 \\end{pmatrix}"


def test_math_align_then_capital_starts_a_sentence():
    steps = actions(split_math(MATH[54]["solution"]))
    assert len(steps) == 7
    assert steps[0].startswith("Letting $t$ equal") and steps[0].endswith("(t-60)(t-70)&<0\n\\end{align*}")
    assert steps[1] == ("Since the two roots of the left-hand side are 60 and 70, the inequality must change sign "
                        "at these two points.")


def test_math_asy_kept_whole():
    # [asy] at the end: attached to the last sentence, whole (its code has `;`, `.`, blank lines and braces)
    text = MATH[2319]["solution"]
    asy = text[text.index("[asy]") : text.index("[/asy]") + len("[/asy]")]
    last = split_math(text).steps[-1].action
    assert last.startswith("Therefore, the four points of intersection form a rectangle")
    assert last.endswith(asy)
    # [asy] at the start: a step of only a picture joins the first sentence
    first = split_math(MATH[1921]["solution"]).steps[0].action
    assert first.startswith("[asy]\npair A,B,C,D,M,P,Q;")
    assert first.endswith("and let $M$ be the midpoint of $\\overline{PQ}$.")
    # [asy] in the middle, between paragraphs
    steps = actions(split_math(MATH[1315]["solution"]))
    assert len(steps) == 5
    assert steps[3].startswith("As before,") and steps[3].endswith("[/asy]")
    assert steps[4].startswith("In either case,")


def test_math_abbreviations_decimals_and_labels():
    assert split_math(MATH[710]["solution"]).steps[0].action == (
        "If Dr. Jones has an income of $x$, then the amount of tax is essentially a piecewise function in $x$.")
    steps = actions(split_math(MATH[4950]["solution"]))
    assert steps[2] == ("We wish to know approximately when the cosines of the corresponding angles will be equal, "
                        "i.e. when the $x$-coordinates of the tips of the clock hands will be the same.")
    assert steps[-1] == "You should find that $t= \\frac{360\\pi}{\\pi+180}\\approx 6.1754$."
    # `$\bullet$ A. $14.5$`: a one-letter label is not a sentence
    assert actions(split_math(MATH[4351]["solution"]))[5:] == [
        "Thus, after rounding according to these rules, we get\n\n$\\bullet$ A. $14.5$",
        "$\\bullet$ B. $14.5$", "$\\bullet$ C. $14.4$", "$\\bullet$ D. $14.6$",
        "Thus, $\\boxed{\\text{C}}$ is the smallest."]


def test_math_short_fragments_merge():
    # "- OR -" (6 characters) joins the next sentence
    assert actions(split_math(MATH[12]["solution"]))[1].startswith("- OR -\n\nWe note that the origin")
    assert actions(split_math("Case 1. We have $x=1$. So it is done. Ok.")) == [
        "Case 1. We have $x=1$.", "So it is done. Ok."]


def test_math_paragraphs():
    assert actions(split_math(MATH[3081]["solution"], unit="paragraph")) == MATH_EXPECTED[3081]
    paragraphs = actions(split_math(MATH[225]["solution"], unit="paragraph"))
    assert [p[:8] for p in paragraphs] == ["We tackl", "Case 1: ", "Case 2: ", "Case 3: ", "Case 4: ", "Reviewin"]
    assert paragraphs[2].endswith("the smallest possible value of the sum in this case is $1.5-0.5 = 1$.")
    assert len(split_math(MATH[0]["solution"], unit="paragraph").steps) == 1
    with pytest.raises(ValueError, match="unknown unit"):
        split_math("x", unit="word")


# Formulas, environments and pictures that must never be cut (found independently of the splitter).
_PROTECTED = re.compile(r"\$\$.+?\$\$|\\\[.+?\\\]|\\begin\{(align\*|cases|tabular|array)\}.+?\\end\{\1\}"
                        r"|\[asy\].+?\[/asy\]", re.DOTALL)


@pytest.mark.parametrize("unit", ["sentence", "paragraph"])
@pytest.mark.parametrize("idx", sorted(MATH))
def test_math_loses_nothing_and_never_cuts_a_formula(idx, unit):
    text = MATH[idx]["solution"]
    result = split_math(text, unit=unit)
    assert result.steps and all(step.action == step.action.strip() and step.action for step in result.steps)
    # the steps are the text, in order, up to whitespace between them
    squeeze = lambda s: re.sub(r"\s+", "", s)  # noqa: E731
    assert squeeze("".join(actions(result))) == squeeze(text)
    for m in _PROTECTED.finditer(text):
        assert any(m.group(0) in step for step in actions(result)), m.group(0)[:60]
    assert result.final_answer == extract_boxed(text)


def test_math_units_never_empty_and_robust():
    assert split_math("").steps == []
    assert actions(split_math("Just one sentence without a period")) == ["Just one sentence without a period"]
    # unclosed delimiters are ordinary characters
    assert actions(split_math("Unclosed $x = 1. Then {y is open. Done with it.")) == [
        "Unclosed $x = 1.", "Then {y is open.", "Done with it."]
    text = "We have\n\\[x = 1.\\]\nThen \\begin{align*} a &= b. \\\\ c &= d. \\end{align*} So $\\boxed{1}$."
    assert actions(split_math(text)) == ["We have\n\\[x = 1.\\]",
                                         "Then \\begin{align*} a &= b. \\\\ c &= d. \\end{align*}",
                                         "So $\\boxed{1}$."]


# ---------------------------------------------------------------------------------------------------------
# numbered
# ---------------------------------------------------------------------------------------------------------

NUMBERED_TITLES = {
    "numbered-1": ["Find the price of one pencil", "Multiply by the number of pencils", "State the answer"],
    "numbered-2": ["Isolate the term with $x$", "Divide by the coefficient", "Check"],
    "numbered-3": ["Factor the number", "Count the choices of exponents", "Multiply"],
    "numbered-4": ["Name the numbers", "Add the equations", "Solve", "Answer"],
    "numbered-5": ["Recall the formula", "Compute"],
    "numbered-6": ["Combine the roots", "Simplify"],
}


@pytest.mark.parametrize("row_id", sorted(NUMBERED))
def test_numbered_fixtures(row_id):
    row = NUMBERED[row_id]
    result = split_numbered(row["solution"])
    assert [step.title for step in result.steps] == NUMBERED_TITLES[row_id]
    assert result.final_answer == row["answer"]
    assert all(step.action and not step.action.startswith("**") for step in result.steps)


def test_numbered_template_exact():
    result = split_numbered(NUMBERED["numbered-1"]["solution"])
    assert result.steps == [
        Step("One pencil costs $1.20 / 3 = 0.40$ dollars.", "Find the price of one pencil"),
        Step("Ten pencils cost $10 \\times 0.40 = 4$ dollars.", "Multiply by the number of pencils"),
        Step("The 10 pencils cost $\\boxed{4}$ dollars.", "State the answer"),
    ]
    assert result.steps[0].text == "**Find the price of one pencil** One pencil costs $1.20 / 3 = 0.40$ dollars."


def test_numbered_continuation_nested_list_and_preamble():
    # continuation lines (a $$ display) belong to their step
    assert split_numbered(NUMBERED["numbered-2"]["solution"]).steps[0].action == (
        "Subtract 3 from both sides:\n$$2x = 1.$$")
    # an indented nested list stays inside its step; the preamble is dropped unless asked for
    solution = NUMBERED["numbered-3"]["solution"]
    steps = split_numbered(solution).steps
    assert steps[1].action == ("A divisor is $2^a 3^b$ with:\n   1. $a \\in \\{0, 1, 2\\}$, three choices;\n"
                               "   2. $b \\in \\{0, 1, 2\\}$, three choices.")
    with_preamble = split_numbered(solution, keep_preamble=True).steps
    assert with_preamble[0] == Step("Here is the solution in steps.")
    assert with_preamble[1:] == steps


@pytest.mark.parametrize("text, expected", [
    ("1. first\n2. second", [(None, "first"), (None, "second")]),
    ("1) first\n2) second", [(None, "first"), (None, "second")]),
    ("Step 1: first\nStep 2: second", [(None, "first"), (None, "second")]),
    ("**Step 1:** first\n**Step 2: Title** second", [(None, "first"), ("Title", "second")]),
    ("**1. Setup**: first\n**2. End** second", [("Setup", "first"), ("End", "second")]),
    ("### Step 1: Setup\nfirst\n### Step 2: End\nsecond", [("Setup", "first"), ("End", "second")]),
    ("1. **A:** first\n2. second", [("A:", "first"), (None, "second")]),
    ("1. a\n3. not next\n2. b", [(None, "a\n3. not next"), (None, "b")]),  # only n+1 starts the next step
    ("1.5 is not an item\nno items here", []),
])
def test_numbered_variants(text, expected):
    assert [(s.title, s.action) for s in split_numbered(text).steps] == expected


# ---------------------------------------------------------------------------------------------------------
# regex, list, dispatch
# ---------------------------------------------------------------------------------------------------------


def test_regex_separators_and_named_groups():
    text = GSM8K_TRAIN[0]["answer"]
    result = split_regex(text, r"\n")
    assert actions(result)[0] == "Natalia sold 48/2 = <<48/2=24>>24 clips in May."
    assert result.final_answer == "72"  # `#### 72` via extract_answer
    # separator with a group: the group is not kept as a step
    assert actions(split_regex("a;b,c", r"([;,])")) == ["a", "b", "c"]
    titled = split_regex("Step A: do x\nStep B: do y", r"^Step (?P<title>\w+): (?P<action>.*)$")
    assert [(s.title, s.action) for s in titled.steps] == [("A", "do x"), ("B", "do y")]
    assert actions(split_regex("x1 y2", r"(?P<action>[a-z]\d)")) == ["x1", "y2"]


def test_regex_invalid_pattern():
    with pytest.raises(ValueError, match=r"invalid step pattern '\(unclosed'"):
        split_regex("text", "(unclosed")


def test_split_list():
    result = split_list(["Let $x = 2$.", {"title": "Finish", "action": "So $\\boxed{4}$."}, Step("kept"), "  "])
    assert result.steps == [Step("Let $x = 2$."), Step("So $\\boxed{4}$.", "Finish"), Step("kept")]
    assert result.final_answer == "4"
    with pytest.raises(ValueError, match="step 2: expected a string field 'action'"):
        split_list(["ok", {"title": "no action"}])
    with pytest.raises(ValueError, match="step 1: expected a string or an object"):
        split_list([3])
    with pytest.raises(ValueError, match="expected a list of steps"):
        split_list("a string")


def test_each_solution_format_splits_with_its_splitter_and_options():
    """srl.data.formats' table names each solution format's splitter; `DataFormat.split` checks the options."""
    assert {name: f.splitter for name, f in DATA_FORMATS.items() if not f.agent} == {
        "gsm8k": split_gsm8k, "math": split_math, "numbered": split_numbered, "regex": split_regex,
        "steps": split_list}
    text = GSM8K_TRAIN[0]["answer"]
    gsm8k, math, regex = data_format("gsm8k"), data_format("math"), data_format("regex")
    assert gsm8k.split(text) == split_gsm8k(text)
    assert gsm8k.split(text, keep_calculator=True) == split_gsm8k(text, keep_calculator=True)
    assert math.split(MATH[225]["solution"], unit="paragraph") == split_math(MATH[225]["solution"], "paragraph")
    assert regex.split("a;b", pattern=";") == split_regex("a;b", ";")
    with pytest.raises(ValueError, match="unknown data format 'csv'"):
        data_format("csv")
    with pytest.raises(ValueError, match="has no option 'unit'"):
        gsm8k.split(text, unit="sentence")
    with pytest.raises(ValueError, match="needs the option 'pattern'"):
        regex.split(text)
    with pytest.raises(ValueError, match="is an agent format"):
        data_format("chat").split(text)
