"""`srl eval` and `srl.evaluation`: benchmark reading, scoring, metrics, the run and its files, bad input.

The scoring tests need no model: a fake character-level tokenizer and a `generate_fn` that answers with the gold
solution (or `\\boxed{gold}`) send known responses through the same path as generated ones."""

import json
import math
import os

import pytest

from srl.cli import main
from srl.evaluation import (BENCHMARKS, EvalConfig, Generation, avg_at_k, evaluate, generate_batch,
                            greedy_accuracy, load_problems, mean_pass_at_k, pass_at_k, pass_k_values,
                            resolve_data, score_response, select_subset)
from srl.errors import InputError
from srl.data.trajectories import read_records

HERE = os.path.dirname(__file__)
DATA = os.path.join(HERE, "data")
FIXTURES = ["gsm8k_test_sample", "math500_sample", "amc23_sample", "aime24_sample", "minerva_math_sample"]
SOLUTION_FIELD = {"gsm8k_test_sample": "answer", "math500_sample": "solution", "aime24_sample": "solution",
                  "minerva_math_sample": "solution"}  # fields holding a whole worked solution


def fixture(name):
    return os.path.join(DATA, f"{name}.jsonl")


# --- scoring without a model ---------------------------------------------------------------------------------
class CharTokenizer:
    """Just enough of a tokenizer for `evaluate`: one id per character, the chat as plain text."""

    eos_token_id = 0
    pad_token_id = 0

    def apply_chat_template(self, messages, add_generation_prompt=True, tokenize=False):
        return "".join(f"<{m['role']}>{m['content']}</{m['role']}>" for m in messages) + "<assistant>"

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [ord(c) for c in text]}


class NoModel:
    def eval(self):
        return self


def answering(responses_by_problem, sampled=None):
    """A `generate_fn` answering each prompt with the response given for its problem text."""

    def generate(model, tokenizer, batch, *, do_sample, **kwargs):
        out = []
        for ids in batch:
            text = "".join(map(chr, ids))
            problem = text.split("<user>", 1)[1].rsplit("</user>", 1)[0]
            table = sampled if do_sample and sampled is not None else responses_by_problem
            out.append(Generation(table[problem], 5, False))
        return out

    return generate


def score_file(name, responses, tmp_path, **options):
    cfg = EvalConfig(model="none", data=fixture(name), output_dir=str(tmp_path / name), **options)
    return evaluate(cfg, model=NoModel(), tokenizer=CharTokenizer(), progress=False, print_table=False,
                    generate_fn=answering(responses))


def gold_responses(name):
    """Per problem: the record's worked solution when it has one with a final answer, else `\\boxed{gold}`."""
    problems = load_problems(fixture(name))
    records = list(read_records(fixture(name)))
    out = {}
    for p, rec in zip(problems, records):
        solution = rec.data.get(SOLUTION_FIELD.get(name, ""), "")
        has_answer = isinstance(solution, str) and ("\\boxed" in solution or "####" in solution)
        out[p.problem] = solution if has_answer else f"The answer is $\\boxed{{{p.gold}}}$."
    return problems, out


@pytest.mark.parametrize("name", FIXTURES)
def test_gold_answers_score_100_and_shuffled_near_0(name, tmp_path):
    problems, solutions = gold_responses(name)
    assert len(problems) >= 10
    boxed = {p.problem: f"So the final answer is \\boxed{{{p.gold}}}." for p in problems}
    for responses in (solutions, boxed):
        result = score_file(name, responses, tmp_path)
        assert result.summary["metrics"]["greedy_accuracy"] == 1.0, [
            (r["gold"], r["greedy"]["answer"]) for r in result.records if not r["greedy"]["correct"]]
        assert result.summary["answer_rate"] == 1.0
    # Each problem answered with the next problem's gold: only problems sharing an answer can be right.
    texts = [p.problem for p in problems]
    for responses in (solutions, boxed):
        shuffled = {texts[i]: responses[texts[(i + 1) % len(texts)]] for i in range(len(texts))}
        accuracy = score_file(name, shuffled, tmp_path).summary["metrics"]["greedy_accuracy"]
        assert accuracy <= 0.1, accuracy


def test_gsm8k_last_number_fallback_only_for_gsm8k_golds(tmp_path):
    problems = load_problems(fixture("gsm8k_test_sample"))
    plain = {p.problem: f"Adding it all up gives {p.gold} dollars." for p in problems}
    assert score_file("gsm8k_test_sample", plain, tmp_path).summary["metrics"]["greedy_accuracy"] == 1.0
    off = score_file("gsm8k_test_sample", plain, tmp_path, number_fallback="off")
    assert off.summary["metrics"]["greedy_accuracy"] == 0.0 and off.summary["answer_rate"] == 0.0
    # MATH-style golds: no fallback by default, so a bare number is not an answer
    p = load_problems(fixture("amc23_sample"))[0]
    assert not score_response(f"It is {p.gold}", p.gold).correct
    assert score_response(f"It is {p.gold}", p.gold, number_fallback=True).correct


def test_boxed_nesting_gsm8k_marker_and_equivalence():
    assert score_response(r"so $x=\boxed{\frac{\sqrt{3}}{2}}$ and done", r"\frac{\sqrt3}{2}").correct
    assert score_response(r"\boxed{1} no wait \boxed{0.5}", r"\frac{1}{2}").correct
    assert score_response("5 apples\n#### 1,000", "1000").correct
    assert not score_response(r"\boxed{\frac{1}{2}", "0.5").correct  # unclosed: no answer
    assert score_response(r"\boxed{\frac{1}{2}", "0.5").answer is None


def test_sampling_metrics_through_the_run(tmp_path):
    problems = load_problems(fixture("amc23_sample"))
    right = {p.problem: f"\\boxed{{{p.gold}}}" for p in problems}
    # sampled answers: right for every other problem, wrong (no answer) for the rest
    sampled = {p.problem: (right[p.problem] if i % 2 == 0 else "no idea") for i, p in enumerate(problems)}
    cfg = EvalConfig(model="none", data=fixture("amc23_sample"), output_dir=str(tmp_path / "s"), k=4, batch_size=3)
    result = evaluate(cfg, model=NoModel(), tokenizer=CharTokenizer(), progress=False, print_table=False,
                      generate_fn=answering(right, sampled))
    m = result.summary["metrics"]
    assert m["greedy_accuracy"] == 1.0
    assert m["avg@4"] == m["pass@1"] == m["pass@2"] == m["pass@4"] == 0.5
    assert all(len(r["samples"]) == 4 and r["num_correct"] in (0, 4) for r in result.records)
    assert result.summary["answer_rate"] == pytest.approx((10 + 20) / 50)


# --- metrics ---------------------------------------------------------------------------------------------------
def codex_pass_at_k(n, c, k):
    """The numerically stable form from Chen et al. (2021), Fig. 3."""
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def test_pass_at_k_hand_computed():
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)  # 1 - C(3,2)/C(5,2)
    assert pass_at_k(10, 3, 3) == pytest.approx(1 - 35 / 120)  # 1 - C(7,3)/C(10,3)
    assert pass_at_k(4, 1, 1) == 0.25 and pass_at_k(8, 3, 1) == 3 / 8  # pass@1 = c/n
    assert pass_at_k(4, 0, 4) == 0.0 and pass_at_k(4, 4, 1) == 1.0
    assert pass_at_k(4, 3, 2) == 1.0  # any 2 of 4 include a right one
    for n, c, k in [(32, 5, 8), (32, 1, 32), (16, 7, 4), (100, 13, 10)]:
        assert pass_at_k(n, c, k) == pytest.approx(codex_pass_at_k(n, c, k))
    assert mean_pass_at_k([(4, 1), (4, 0), (4, 4)], 2) == pytest.approx((0.5 + 0 + 1) / 3)
    for bad in [(4, 5, 1), (4, 1, 5), (4, 1, 0)]:
        with pytest.raises(ValueError):
            pass_at_k(*bad)


def test_avg_at_k_and_greedy_accuracy_hand_computed():
    assert avg_at_k([[True, False, False, False], [True, True, True, False], [False] * 4]) == pytest.approx(
        (0.25 + 0.75 + 0) / 3)
    assert avg_at_k([]) == 0.0 and greedy_accuracy([]) == 0.0
    assert greedy_accuracy([True, False, False, True, True]) == 0.6
    assert pass_k_values(32) == [1, 2, 4, 8, 16, 32] and pass_k_values(5) == [1, 2, 4, 5] and pass_k_values(0) == []


# --- reading benchmarks -----------------------------------------------------------------------------------------
def test_gold_answers_per_benchmark_format():
    gsm8k = load_problems(fixture("gsm8k_test_sample"))
    assert gsm8k[0].gold == "18" and gsm8k[0].gold_kind == "gsm8k" and gsm8k[0].problem.startswith("Janet")
    math500 = load_problems(fixture("math500_sample"))
    assert math500[2].gold == "\\frac{14}{3}" and math500[0].id == "test/precalculus/807.json"
    amc = load_problems(fixture("amc23_sample"))
    assert amc[0].gold == "27" and amc[0].gold_kind == "plain" and amc[0].id == 0  # 27.0 in the file
    minerva = load_problems(fixture("minerva_math_sample"))
    assert minerva[0].gold == "1.6" and minerva[0].gold_kind == "boxed"


def test_configurable_field_names(tmp_path):
    path = tmp_path / "custom.jsonl"
    path.write_text(json.dumps({"q": "What is 2+3?", "sol": "2+3 = \\boxed{5}", "key": "a"}) + "\n"
                    + json.dumps({"q": "What is 2*3?", "sol": "It is $\\boxed{6}$.", "key": "b"}) + "\n")
    problems = load_problems(str(path), problem_field="q", solution_field="sol", id_field="key")
    assert [(p.id, p.problem, p.gold) for p in problems] == [("a", "What is 2+3?", "5"), ("b", "What is 2*3?", "6")]
    with pytest.raises(InputError, match="no problem: neither 'problem' nor 'question'"):
        load_problems(str(path))


def test_seeded_subset_is_stable_nested_and_in_file_order():
    items = list(range(100))
    a = select_subset(items, 20, seed=0)
    assert a == select_subset(items, 20, seed=0) and a == sorted(a) and len(set(a)) == 20
    assert set(select_subset(items, 5, seed=0)) <= set(a)
    assert select_subset(items, 20, seed=1) != a
    assert select_subset(items, 200, seed=0) == items and select_subset(items, None) == items


def test_known_benchmark_names(tmp_path, monkeypatch):
    (tmp_path / "amc23").mkdir()
    (tmp_path / "amc23" / "test.jsonl").write_bytes(open(fixture("amc23_sample"), "rb").read())
    monkeypatch.setenv("SRL_DATA_DIR", str(tmp_path))
    path, spec = resolve_data("amc23")
    assert spec.name == "amc23" and path == str(tmp_path / "amc23" / "test.jsonl")
    assert load_problems(path, spec=spec)[0].gold == "27"
    with pytest.raises(InputError, match="SRL_DATA_DIR"):
        resolve_data("aime24")
    with pytest.raises(InputError, match="not a known benchmark"):
        resolve_data("aime99")
    assert set(BENCHMARKS) >= {"gsm8k", "math500", "amc23", "aime24", "minerva_math"}


# --- generation and the command ---------------------------------------------------------------------------------
@pytest.mark.slow  # generates one prompt at a time
def test_left_padded_batch_matches_single_generation():
    import torch

    from srl.models import load_model_and_tokenizer

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model, tok = load_model_and_tokenizer("tiny")
        short = tok("Start at 3 and add 4, 3 times.", add_special_tokens=False)["input_ids"]
        long = tok("Start at 7 and add 7, 3 times. Then add 2 more and write each step.",
                   add_special_tokens=False)["input_ids"]
        alone = generate_batch(model, tok, [short], max_new_tokens=6, do_sample=False)
        together = generate_batch(model, tok, [long, short], max_new_tokens=6, do_sample=False)
    finally:
        torch.set_num_threads(threads)
    assert together[1].text == alone[0].text
    assert all(g.tokens <= 6 for g in together)


def test_srl_eval_tiny_end_to_end(tmp_path, capsys):
    out = tmp_path / "eval"
    data = fixture("gsm8k_test_sample")
    code = main(["eval", "--model", "tiny", "--data", data, "--limit", "3", "--max_new_tokens", "8",
                 "--k", "2", "--output_dir", str(out)])
    stdout, stderr = capsys.readouterr()
    assert code == 0, stderr
    assert sorted(os.listdir(out)) == ["problems.jsonl", "summary.json"]  # no temporary files left
    rows = [json.loads(line) for line in open(out / "problems.jsonl")]
    expected = [p.id for p in select_subset(load_problems(data), 3, seed=0)]
    assert [r["id"] for r in rows] == expected
    for r in rows:
        assert set(r) >= {"id", "gold", "greedy", "samples", "num_correct"} and len(r["samples"]) == 2
        assert set(r["greedy"]) == {"answer", "answer_found_by", "correct", "response", "tokens", "truncated"}
        assert 1 <= r["greedy"]["tokens"] <= 8
    summary = json.load(open(out / "summary.json"))
    assert summary["problems"] == 3 and summary["problems_in_file"] == 20
    assert set(summary["metrics"]) == {"greedy_accuracy", "avg@2", "pass@1", "pass@2"}
    assert summary["config"]["system_prompt"] == "paper" and summary["generated_tokens"] > 0
    assert "greedy_accuracy" in stdout and "avg@2" in stdout


def test_paper_prompt_by_default(tmp_path):
    from srl.data.prompts import EVAL_SYSTEM_PROMPT

    seen = []

    def generate(model, tokenizer, batch, **kwargs):
        seen.extend("".join(map(chr, ids)) for ids in batch)
        return [Generation("", 1, False) for _ in batch]

    for system, expected in (("paper", f"<system>{EVAL_SYSTEM_PROMPT}</system>"), ("none", "")):
        seen.clear()
        cfg = EvalConfig(model="none", data=fixture("amc23_sample"), limit=1, system_prompt=system,
                         user_template="Q: {problem}")
        evaluate(cfg, model=NoModel(), tokenizer=CharTokenizer(), progress=False, print_table=False, write=False,
                 generate_fn=generate)
        assert seen[0].startswith(f"{expected}<user>Q: ") and seen[0].endswith("</user><assistant>")


# --- bad input ----------------------------------------------------------------------------------------------------
def bad_cases(tmp_path):
    good = {"problem": "What is 1+1?", "answer": "2"}

    def write(name, lines):
        path = tmp_path / name
        path.write_text("\n".join(lines) + "\n")
        return str(path)

    ok = write("ok.jsonl", [json.dumps(good)])
    return {
        "missing file": (["--data", str(tmp_path / "nope.jsonl")], "no such file"),
        "unknown benchmark": (["--data", "gsm9k"], "not a known benchmark"),
        "invalid json": (["--data", write("bad.jsonl", [json.dumps(good), "{oops"])], "bad.jsonl:2: invalid JSON"),
        "no answer": (["--data", write("noans.jsonl", [json.dumps(good), json.dumps({"problem": "q"})])],
                      "noans.jsonl:2: field 'answer': no gold answer"),
        "solution without box": (["--data", write("nobox.jsonl", [json.dumps({"problem": "q", "solution": "x=2"})])],
                                 "nobox.jsonl:1: field 'solution': no \\boxed{}"),
        "answer not text": (["--data", write("list.jsonl", [json.dumps({"problem": "q", "answer": [1]})])],
                            "field 'answer': expected a string or a number"),
        "missing custom field": (["--data", ok, "--answer_field", "final"], "ok.jsonl:1: field 'final': missing"),
        "empty file": (["--data", write("empty.jsonl", [""])], "no problems"),
        "duplicate ids": (["--data", write("dup.jsonl", [json.dumps({**good, "id": 1})] * 2)], "duplicate problem id"),
        "limit 0": (["--data", ok, "--limit", "0"], "field 'limit': must be >= 1"),
        "nothing to do": (["--data", ok, "--no_greedy"], "nothing to evaluate"),
        "bad temperature": (["--data", ok, "--k", "2", "--temperature", "0"], "field 'temperature'"),
        "bad template": (["--data", ok, "--user_template", "Solve it"], "field 'user_template'"),
        "bad choice": (["--data", ok, "--answer_mode", "first"], "invalid choice"),
        "unknown option": (["--data", ok, "--nope", "1"], "--nope"),
        "bad model": (["--data", ok, "--model", "./no/such/model"], "no such model folder"),
        "missing data": ([], "--data"),
    }


def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    for name, (flags, message) in bad_cases(tmp_path).items():
        argv = ["eval", "--output_dir", str(out)] + flags
        if "--model" not in flags:
            argv += ["--model", "tiny"]
        code = main(argv)
        _, err = capsys.readouterr()
        assert code == 2, (name, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("srl: error: ") and message in lines[0], (name, err)
        assert not out.exists(), name


def test_eval_checks_its_output_folder_is_writable_before_evaluating(tmp_path, capsys, monkeypatch):
    """Issue 12: an unwritable --output_dir is one line, exit 2, before the model loads (it failed after the
    whole evaluation before)."""
    import srl.evaluation.runner as runner

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the output folder was checked")

    monkeypatch.setattr(runner, "_load_model", no_model)
    (tmp_path / "a_file").write_text("x")
    cases = {"under a file": (str(tmp_path / "a_file" / "eval"), "is a file, not a folder"),
             "a file": (str(tmp_path / "a_file"), "exists and is not a folder"),
             "read-only place": ("/proc/srl-eval-output", "cannot be written")}
    if os.geteuid() != 0:  # root writes into a folder without write permission: only checked as a user
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        cases["no write permission"] = (str(locked / "eval"), "cannot be written")
    for name, (out, message) in cases.items():
        code = main(["eval", "--model", "tiny", "--data", fixture("gsm8k_test_sample"), "--limit", "2",
                     "--output_dir", out])
        err = capsys.readouterr().err
        assert code == 2, (name, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "field 'output_dir'" in lines[0] and message in lines[0], (name, err)
    assert sorted(os.listdir(tmp_path)) == ["a_file"] + (["locked"] if os.geteuid() != 0 else [])


def test_step_objective_scores_greedy_steps_with_the_training_reward(monkeypatch):
    """The SRL objective on held-out instances: the expert's own step scores 1, a broken format -1; the per-row
    rewards come back in order, with the format-error and exact-match rates."""
    from srl.data.build import DataConfig, build
    from srl.evaluation import step_objective as so
    from srl.generation import Generation
    from srl.tiny import tiny_model, tiny_tokenizer

    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, "steps.jsonl")
        build(DataConfig(input=os.path.join(DATA, "numbered_solutions.jsonl"), output=out, format="numbered",
                         think="optional"))
        with open(out, encoding="utf-8") as f:
            rows = [json.loads(line) for line in f][:3]
    answers = [f"<think>copy</think>{rows[0]['expert_step']}", "no monologue", "<think>x</think>something else"]
    seen = []

    def fake_generate(model, tokenizer, batch, *, max_new_tokens, do_sample):
        seen.append((len(batch), max_new_tokens, do_sample))
        return [Generation(answers[i], 5, False) for i in range(len(batch))]

    monkeypatch.setattr(so, "generate_batch", fake_generate)
    tokenizer = tiny_tokenizer()
    result = so.step_objective(tiny_model(tokenizer), rows, tokenizer=tokenizer, think="required", max_new_tokens=7)
    assert seen == [(3, 7, False)]
    assert result["rewards"][0] == 1.0 and result["rewards"][1] == -1.0 and 0 <= result["rewards"][2] < 1
    assert result["format_error_rate"] == 1 / 3 and result["exact_match"] == 1 / 3 and result["n"] == 3
    lo, hi = result["mean_reward_ci95"]
    assert lo < result["mean_reward"] < hi
