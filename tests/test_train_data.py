"""One path to instances (issue 10, item 2): `srl train` given solutions builds its instances with the same
options and the same code as `srl data build`, so every data option works in training too."""

import json
import os

import pytest

from srl.cli import main
from srl.training.presets import stage_arguments
from srl.errors import InputError
from srl.training.rows import rlvr_rows, srl_rows

HERE = os.path.dirname(__file__)
NUMBERED = os.path.join(HERE, "data", "numbered_solutions.jsonl")
BASE = ["--model", "tiny", "--use_cpu", "true", "--bf16", "false"]


def built_by_data_build(tmp_path, flags, path=NUMBERED):
    out = tmp_path / "instances.jsonl"
    assert main(["data", "build", "--input", path, "--output", str(out), *flags]) == 0
    with open(out, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_train_builds_the_instances_data_build_writes(tmp_path):
    template = tmp_path / "template.yaml"
    template.write_text('user: "Task: {problem}\\nSo far:\\n{previous_steps}\\n'
                        'Next: step {step_number}.{title_hint}"\n')
    flags = ["--format", "numbered", "--title_hint", "true", "--max_previous_steps", "1", "--template", str(template),
             "--think", "optional"]
    expected = built_by_data_build(tmp_path, flags)
    train_flags = [("--data_format" if f == "--format" else f) for f in flags]
    run, _ = stage_arguments("srl", [*BASE, "--train_data", NUMBERED, *train_flags, "--output_dir", str(tmp_path / "r")])
    rows = srl_rows(run)
    assert rows == expected
    # ... and the options did something: titles as hints, one previous step, our template.
    hinted = [r for r in rows if r["step_index"] >= 3]
    assert hinted and all("Its title is:" in r["prompt"][1]["content"] for r in rows)
    assert all(r["prompt"][1]["content"].startswith("Task: ") for r in rows)
    for r in hinted:  # only the last previous step is shown
        k, user = r["step_index"], r["prompt"][1]["content"]
        assert f"\n{k - 1}. " in user and f"\n{k - 2}. " not in user, user


def test_train_default_instances_are_unchanged(tmp_path, gsm8k_sample):
    """Without data options, training builds the paper's instances (N-1 per solution), as before."""
    run, _ = stage_arguments("srl", [*BASE, "--train_data", gsm8k_sample, "--limit", "5",
                                 "--output_dir", str(tmp_path / "r")])
    rows = srl_rows(run)
    expected = built_by_data_build_gsm8k(tmp_path, gsm8k_sample)
    assert rows == expected and len({r["trajectory_id"] for r in rows}) == 5


def built_by_data_build_gsm8k(tmp_path, path):
    out = tmp_path / "gsm8k.jsonl"
    assert main(["data", "build", "--input", path, "--output", str(out), "--limit", "5"]) == 0
    with open(out, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_rlvr_reads_solutions_with_the_data_options(tmp_path):
    """The field-name options reach the RLVR stage too: a file whose fields have other names."""
    renamed = tmp_path / "renamed.jsonl"
    with open(NUMBERED, encoding="utf-8") as f, open(renamed, "w", encoding="utf-8") as out:
        for line in f:
            row = json.loads(line)
            out.write(json.dumps({"task": row["problem"], "worked": row["solution"]}) + "\n")
    run, _ = stage_arguments("rlvr", [*BASE, "--train_data", str(renamed), "--data_format", "numbered",
                                  "--problem_field", "task", "--solution_field", "worked",
                                  "--output_dir", str(tmp_path / "r")])
    rows = rlvr_rows(run)
    assert rows and all(r["final_answer"] for r in rows)
    assert rows[0]["prompt"][1]["content"].startswith("A shop sells pencils")


def test_rlvr_rows_say_which_answers_may_fall_back_on_the_last_number(tmp_path):
    """GSM8K solutions give `gold_kind` gsm8k (the reward then takes a last number, as `srl eval` does), MATH-style
    solutions `boxed`; built instances, which do not record the format, count a plain-number answer as GSM8K."""
    from srl.data import BUNDLED_GSM8K

    run, _ = stage_arguments("rlvr", [*BASE, "--train_data", BUNDLED_GSM8K, "--output_dir", str(tmp_path / "g")])
    assert {r["gold_kind"] for r in rlvr_rows(run)} == {"gsm8k"}
    run, _ = stage_arguments("rlvr", [*BASE, "--train_data", NUMBERED, "--data_format", "numbered",
                                  "--output_dir", str(tmp_path / "n")])
    assert {r["gold_kind"] for r in rlvr_rows(run)} == {"boxed"}
    inst = tmp_path / "inst.jsonl"
    assert main(["data", "build", "--input", BUNDLED_GSM8K, "--output", str(inst), "--limit", "5"]) == 0
    run, _ = stage_arguments("rlvr", [*BASE, "--train_data", str(inst), "--output_dir", str(tmp_path / "i")])
    assert {r["gold_kind"] for r in rlvr_rows(run)} == {"gsm8k"}


def test_a_bad_data_option_is_refused_when_parsing(tmp_path):
    with pytest.raises(InputError, match="pattern"):
        stage_arguments("srl", [*BASE, "--data_format", "regex", "--output_dir", str(tmp_path / "r")])


# --- agent trajectories (issue 20: `srl train --data_format mini-swe-agent` was refused) ---
SWE = os.path.join(HERE, "data", "swe")
MINI_SWE_AGENT = os.path.join(SWE, "mini-swe-agent_github_issue.jsonl")  # a real run; it has no resolved flag
AGENT_DATA = {  # every agent format of srl.data.formats, with trajectories it reads and its extra flags
    "swe-agent": (os.path.join(SWE, "nebius_SWE-agent-trajectories.rows.json"), []),
    "openhands": (os.path.join(SWE, "swe-gym_openhands_sampled_trajectories.rows.json"), []),
    "openai-tools": (os.path.join(SWE, "swe-gym_openhands_sampled_trajectories.rows.json"), []),
    "chat": (os.path.join(SWE, "react_log.jsonl"), ["--chat_config", os.path.join(SWE, "react_log.yaml")]),
    "mini-swe-agent": (MINI_SWE_AGENT, ["--resolved_only", "false"]),
}
# The commands that ran in that run, in order (its ```mswea_bash_command blocks).
MINI_SWE_AGENT_COMMANDS = [
    "cat /Users/fuchur/Documents/24/git_sync/swe-agent-test-repo/tests/./missing_colon.py", "ls -la",
    "ls -la tests/", "cat tests/missing_colon.py",
    "sed -i 's/def division(a: float, b: float) -> float/def division(a: float, b: float) -> float:/' "
    "tests/missing_colon.py", "cat tests/missing_colon.py", "python3 tests/missing_colon.py",
    'python3 -c "from tests.missing_colon import division; print(division(23, 0))"',
    "cat > tests/missing_colon.py << 'EOF'\n#!/usr/bin/env python3\n\n\ndef division(a: float, b: float) -> float:\n"
    "    if b == 0:\n        raise ValueError(\"Cannot divide by zero\")\n    return a/b\n\n\n"
    "if __name__ == \"__main__\":\n    print(division(123, 15))\nEOF",
    "echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT && git add -A && git diff --cached"]


def test_every_agent_format_is_a_train_data_format():
    from srl.data.formats import AGENT_FORMATS

    assert set(AGENT_DATA) == set(AGENT_FORMATS)


@pytest.mark.parametrize("fmt", sorted(AGENT_DATA))
def test_train_reads_each_agent_format_as_data_build_does(tmp_path, fmt):
    path, flags = AGENT_DATA[fmt]
    expected = built_by_data_build(tmp_path, ["--format", fmt, *flags, "--think", "off"], path)
    run, _ = stage_arguments("srl", [*BASE, "--train_data", path, "--data_format", fmt, *flags, "--think", "off",
                                 "--output_dir", str(tmp_path / "r")])
    rows = srl_rows(run)
    assert rows and rows == expected


def test_mini_swe_agent_instances_target_the_commands_that_ran(tmp_path):
    run, _ = stage_arguments("srl", [*BASE, "--train_data", MINI_SWE_AGENT, "--data_format", "mini-swe-agent",
                                 "--resolved_only", "false", "--output_dir", str(tmp_path / "r")])
    rows = srl_rows(run)
    assert [r["expert_step"] for r in rows] == MINI_SWE_AGENT_COMMANDS
    assert "ls -la tests/" in rows[3]["prompt"][-2]["content"]  # the last two actions and their outputs precede


@pytest.mark.slow  # a training run (~30 s on a loaded 2-core machine)
def test_srl_train_on_mini_swe_agent_trajectories(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--stage", "srl", *BASE, "--data_format", "mini-swe-agent", "--train_data", MINI_SWE_AGENT,
                 "--resolved_only", "false", "--think", "optional", "--per_device_train_batch_size", "4",
                 "--num_generations", "4", "--max_completion_length", "8", "--max_steps", "1",
                 "--tiny_warm_up_steps", "1", "--max_generation_rounds", "1", "--save_strategy", "no",
                 "--dataloader_pin_memory", "false", "--output_dir", str(out)]) == 0
    completions = [json.loads(line) for line in open(out / "completions.jsonl", encoding="utf-8")]
    assert completions and {c["expert_step"] for c in completions} <= set(MINI_SWE_AGENT_COMMANDS)
    assert os.path.exists(out / "final" / "config.json")
