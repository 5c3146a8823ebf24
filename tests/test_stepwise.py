"""`srl eval --stepwise` (srl.evaluation.stepwise): step-wise inference under the SRL prompt, against a scripted
model that answers each round with a predetermined step, and once end to end on the tiny model."""

import json
import os

import pytest

from srl.cli import main
from srl.data.prompts import SYSTEM_PROMPT, PromptTemplate
from srl.data.trajectories import Step, Trajectory
from srl.data.instances import InstanceOptions, trajectory_instances
from srl.errors import InputError
from srl.evaluation import EvalConfig, Generation, evaluate
from srl.evaluation.stepwise import step_messages
from test_evaluation import CharTokenizer, NoModel

HERE = os.path.dirname(__file__)
ANSWER = "<think>\ndone\n</think>\nThe final answer is \\boxed{{{}}}."


def scripted(script, seen):
    """A `generate_fn` answering round k of a problem with `script[problem][k-1]`; every prompt is kept in
    `seen[problem]`, in order."""

    def generate(model, tokenizer, batch, *, max_new_tokens, do_sample, **sampling):
        out = []
        for ids in batch:
            text = "".join(map(chr, ids))
            problem = text.split("Problem:\n", 1)[1].split("\n\nSolution so far:", 1)[0]
            seen.setdefault(problem, []).append(text)
            response = script[problem][len(seen[problem]) - 1]
            out.append(Generation(response, len(response), False))
        return out

    return generate


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "problems.jsonl"
    rows = [{"id": "a", "problem": "Start with 2. Add 3. Double it.", "answer": "10"},
            {"id": "b", "problem": "Start with 1. Add 1.", "answer": "2"},
            {"id": "c", "problem": "Start with 5. Subtract 5.", "answer": "0"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def run(data, tmp_path, script, seen, **options):
    cfg = EvalConfig(model="none", data=data, output_dir=str(tmp_path / "out"), stepwise=True, **options)
    return evaluate(cfg, model=NoModel(), tokenizer=CharTokenizer(), progress=False, print_table=False,
                    generate_fn=scripted(script, seen))


def test_context_grows_by_each_action_and_the_rollout_stops_at_the_answer(data, tmp_path):
    script = {"Start with 2. Add 3. Double it.": ["<think>\n2+3 is 5\n</think>\n2+3 = 5",
                                                  "<think>\ntwice\n</think>\n5*2 = 10", ANSWER.format(10),
                                                  "never asked"],
              "Start with 1. Add 1.": ["<think>\nx\n</think>\n1+1 = 2, so \\boxed{2}", "never asked"],
              "Start with 5. Subtract 5.": ["<think>\ny\n</think>\n5-5 = 0", ANSWER.format(1)]}
    seen = {}
    result = run(data, tmp_path, script, seen, max_steps=5)
    a, b, c = result.records
    assert [len(seen[p]) for p in script] == [3, 1, 2]  # no round after the answer
    # round k shows exactly the training instance of step k, the model's own actions as the previous steps
    expert = Trajectory("a", "Start with 2. Add 3. Double it.", [Step("2+3 = 5"), Step("5*2 = 10"), Step("x")])
    tokenizer = CharTokenizer()
    for k, row in enumerate(trajectory_instances(expert, InstanceOptions(include_last_step=True)), 1):
        assert seen["Start with 2. Add 3. Double it."][k - 1] == tokenizer.apply_chat_template(row["prompt"])
    third = seen["Start with 2. Add 3. Double it."][2]
    assert "1. 2+3 = 5\n2. 5*2 = 10\n\nWrite step 3 only." in third and "twice" not in third  # no monologue
    assert third.startswith(f"<system>{SYSTEM_PROMPT}</system>")
    assert a["greedy"]["correct"] and a["greedy"]["stop"] == "answer" and a["greedy"]["num_steps"] == 3
    assert a["greedy"]["response"] == "2+3 = 5\n5*2 = 10\nThe final answer is \\boxed{10}."
    assert [s["think"] for s in a["greedy"]["steps"]] == ["2+3 is 5", "twice", "done"]
    assert b["greedy"]["correct"] and b["greedy"]["num_steps"] == 1  # an answer inside a step ends it too
    assert not c["greedy"]["correct"] and c["greedy"]["answer"] == "1" and c["greedy"]["stop"] == "answer"
    summary = json.load(open(tmp_path / "out" / "summary.json"))
    assert summary["metrics"]["greedy_accuracy"] == pytest.approx(2 / 3)
    assert summary["stepwise"]["stop"] == {"answer": 1.0, "format_error": 0.0, "step_limit": 0.0}
    assert summary["stepwise"]["mean_steps"] == 2.0 and summary["stepwise"]["think_rate"] == 1.0
    saved = [json.loads(line) for line in open(tmp_path / "out" / "problems.jsonl")]
    assert saved[0]["greedy"]["steps"][1]["action"] == "5*2 = 10"  # the trajectory is in the output


def test_step_limit_and_format_error_end_a_rollout(data, tmp_path):
    forever = ["<think>\nhm\n</think>\n1+0 = 1"] * 10
    script = {"Start with 2. Add 3. Double it.": forever,
              "Start with 1. Add 1.": ["<think>\nhm\n</think>\n1+1 = 2", "1+1 = 2 \\boxed{2}"],  # no </think>
              "Start with 5. Subtract 5.": ["<think>\nunclosed \\boxed{0}"]}
    seen = {}
    a, b, c = run(data, tmp_path, script, seen, max_steps=3).records
    assert len(seen["Start with 2. Add 3. Double it."]) == 3
    assert a["greedy"]["stop"] == "step_limit" and a["greedy"]["num_steps"] == 3 and not a["greedy"]["correct"]
    assert b["greedy"]["stop"] == "format_error" and b["greedy"]["num_steps"] == 1 and not b["greedy"]["correct"]
    assert b["greedy"]["steps"][1]["format_error"] == "no closing </think>"
    assert c["greedy"]["stop"] == "format_error" and c["greedy"]["answer"] is None  # a broken format scores nothing
    # under --think optional the same response is an action, and it answers
    seen = {}
    b = run(data, tmp_path, script, seen, max_steps=3, think="optional").records[1]
    assert b["greedy"]["stop"] == "answer" and b["greedy"]["correct"]


def test_samples_and_think_off(data, tmp_path):
    # rounds of problem a: sample 0 gets 1 and 3 (then 4), sample 1 gets 2 (a right answer: it stops)
    script = {"Start with 2. Add 3. Double it.": ["2+3 = 5", "\\boxed{10}", "2+3 = 5", "\\boxed{11}"],
              "Start with 1. Add 1.": ["\\boxed{2}", "\\boxed{3}"],
              "Start with 5. Subtract 5.": ["\\boxed{0}", "\\boxed{0}"]}
    seen = {}
    result = run(data, tmp_path, script, seen, think="off", greedy=False, k=2, temperature=1.0)
    assert [r["num_correct"] for r in result.records] == [1, 1, 2]
    assert "<system>" + PromptTemplate().system_prompt("off") in seen["Start with 1. Add 1."][0]
    assert result.summary["metrics"]["avg@2"] == pytest.approx(4 / 6)


def test_step_messages_use_the_template(tmp_path):
    template = tmp_path / "t.yaml"
    template.write_text("user: 'Q: {problem} | {previous_steps} | next: {step_number}'\nstep: '- {text}'\n")
    messages = step_messages("P", ["a", "b"], "required", PromptTemplate.from_file(str(template)))
    assert messages[1]["content"] == "Q: P | - a\n- b | next: 3"
    with pytest.raises(InputError, match="max_steps"):
        EvalConfig(model="tiny", data="x.jsonl", stepwise=True, max_steps=0)
    bad = tmp_path / "bad.yaml"
    bad.write_text("user: '{nope}'\n")
    with pytest.raises(InputError, match="nope"):
        EvalConfig(model="tiny", data="x.jsonl", stepwise=True, template=str(bad))


def test_srl_eval_stepwise_tiny_end_to_end(data, tmp_path, capsys):
    out = tmp_path / "eval"
    code = main(["eval", "--model", "tiny", "--data", data, "--stepwise", "--think", "off", "--max_steps", "2",
                 "--max_new_tokens", "6", "--output_dir", str(out)])
    assert code == 0, capsys.readouterr().err
    rows = [json.loads(line) for line in open(out / "problems.jsonl")]
    for r in rows:
        assert 1 <= len(r["greedy"]["steps"]) <= 2 and r["greedy"]["num_steps"] <= 2
        assert r["greedy"]["tokens"] == sum(s["tokens"] for s in r["greedy"]["steps"])
    summary = json.load(open(out / "summary.json"))
    assert summary["stepwise"]["think"] == "off" and summary["config"]["stepwise"] is True
    assert sum(summary["stepwise"]["stop"].values()) == pytest.approx(1.0)
