import pytest

from srl.data.prompts import SYSTEM_PROMPT, PromptTemplate
from srl.rewards.format import OutputFormat, completion_text, parse_response
from srl.errors import InputError

REQUIRED = OutputFormat()
OPTIONAL = OutputFormat(think="optional")
OFF = OutputFormat(think="off")
SOLUTION = OutputFormat(solution_open="<solution>", solution_close="</solution>")


def test_system_prompt_is_the_papers_verbatim():
    assert SYSTEM_PROMPT.startswith("You are a helpful assistant for solving mathematical problems.")
    assert "<think>\nYour thoughts or/and draft, like working through an exercise on scratch paper." in SYSTEM_PROMPT
    assert SYSTEM_PROMPT.endswith("Provide only the single, next step to continue the solution. Do not solve the "
                                  "entire problem.")


@pytest.mark.parametrize("text, fmt, action, error", [
    ("<think>a</think>B", REQUIRED, "B", None),
    ("  <think>\nlong\nthought\n</think>\n\n  Step two.  ", REQUIRED, "Step two.", None),
    ("Step two.", REQUIRED, None, "no closing </think>"),
    ("<think>unfinished", REQUIRED, None, "no closing </think>"),
    ("<think>a</think>   ", REQUIRED, None, "empty action"),
    ("thought</think>B", REQUIRED, None, "does not start with <think>"),
    ("thought</think>B", OutputFormat(think_prefilled=True), "B", None),
    ("<think>a</think>B</think>C", REQUIRED, None, "more than one monologue"),
    ("<think>a<think>b</think>C", REQUIRED, None, "more than one monologue"),
    ("Step two.", OPTIONAL, "Step two.", None),
    ("<think>a</think>B", OPTIONAL, "B", None),
    ("<think>never closed", OPTIONAL, "never closed", None),
    ("<think>a</think>B", OFF, "<think>a</think>B", None),
    ("", OFF, None, "empty action"),
    ("<think>a</think><solution>x = 2</solution>", SOLUTION, "x = 2", None),
    ("<think>a</think>x = 2", SOLUTION, None, "missing solution tags"),
])
def test_parse_response(text, fmt, action, error):
    parsed = parse_response(text, fmt)
    assert parsed.action == action
    assert parsed.error == error


def test_custom_tags():
    fmt = OutputFormat(think_open="<reasoning>", think_close="</reasoning>")
    assert parse_response("<reasoning>r</reasoning> act", fmt).action == "act"
    assert not parse_response("<think>r</think> act", fmt).ok


def test_completion_text_plain_and_chat():
    assert completion_text("abc") == "abc"
    assert completion_text([{"role": "assistant", "content": "abc"}]) == "abc"
    assert completion_text([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]) == "a"
    assert completion_text(None) == ""


def test_template_file_overrides_and_validates(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text('user: "Q: {problem}\\nSo far:\\n{previous_steps}\\nNext ({step_number}):"\n')
    t = PromptTemplate.from_file(str(path))
    assert t.user_turn("1+1?", ["a", "b"], 3) == "Q: 1+1?\nSo far:\n1. a\n2. b\nNext (3):"
    bad = tmp_path / "bad.yaml"
    bad.write_text("user: '{problem} {nonsense}'\n")
    with pytest.raises(InputError, match="bad placeholder"):
        PromptTemplate.from_file(str(bad))
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("assistant: hi\n")
    with pytest.raises(InputError, match="field 'assistant'"):
        PromptTemplate.from_file(str(unknown))
