"""Issue 12: every case of the bad-input campaign is one line on stderr, exit code 2, and nothing left behind.

Each row: (name, files to create, argv with {tmp} for the temporary folder, expected message fragment).
"""

import json
import os

import pytest

from srl.cli import main

GOOD = {"question": "What is 1+1?", "answer": "1 plus 1 is 2.\nSo it is 2.\n#### 2"}
AGENT = {"resolved": True, "messages": [{"role": "user", "content": "List the files."},
                                        {"role": "assistant", "content": "THOUGHT: ls.\n\n```bash\nls\n```"},
                                        {"role": "user", "content": "a.py"}]}
NO_CONTENT = {"resolved": True, "messages": [{"role": "user", "content": "List the files."},
                                             {"role": "assistant", "text_": "ls"}]}
ALL_REJECTED = {"resolved": True, "messages": [{"role": "user", "content": "List the files."},
                                               {"role": "assistant", "content": "```bash\nls\n```\n```bash\npwd\n```"},
                                               {"role": "user", "content": "Please always provide EXACTLY ONE action "
                                                                           "in triple backticks, found 2 actions."}]}
ONE_STEP = {"question": "q", "answer": "#### 2"}

CASES = [
    ("empty input", {"in.jsonl": ""}, ["data", "build", "--input", "{tmp}/in.jsonl", "--output", "{tmp}/out.jsonl"],
     "no records"),
    ("whitespace-only input", {"in.jsonl": "  \n\n \n"},
     ["data", "build", "--input", "{tmp}/in.jsonl", "--output", "{tmp}/out.jsonl"], "no records"),
    ("every row skipped", {"in.jsonl": json.dumps(ONE_STEP) + "\n"},
     ["data", "build", "--input", "{tmp}/in.jsonl", "--output", "{tmp}/out.jsonl"], "0 instances"),
    ("NaN in JSON", {"in.jsonl": '{"question": "q", "answer": NaN}\n'},
     ["data", "build", "--input", "{tmp}/in.jsonl", "--output", "{tmp}/out.jsonl"], "in.jsonl:1: invalid JSON"),
    ("negative limit", {"in.jsonl": json.dumps(GOOD) + "\n"},
     ["data", "build", "--input", "{tmp}/in.jsonl", "--output", "{tmp}/out.jsonl", "--limit", "-1"],
     "field 'limit'"),
    ("output is a user's folder", {"in.jsonl": json.dumps(GOOD) + "\n", "mine/notes.txt": "keep"},
     ["data", "build", "--input", "{tmp}/in.jsonl", "--output", "{tmp}/mine"], "field 'output'"),
    ("output folder holds the input", {"mine/in.jsonl": json.dumps(GOOD) + "\n"},
     ["data", "build", "--input", "{tmp}/mine/in.jsonl", "--output", "{tmp}/mine"], "field 'output'"),
    ("output is the input", {"in.jsonl": json.dumps(GOOD) + "\n"},
     ["data", "build", "--input", "{tmp}/in.jsonl", "--output", "{tmp}/in.jsonl"], "field 'output'"),
    ("data show -n -1", {"in.jsonl": json.dumps(GOOD) + "\n"}, ["data", "show", "{tmp}/in.jsonl", "-n", "-1"],
     "field 'num'"),
    # agent options: one line naming the field, before anything is read
    ("--chat_config without --format chat", {"in.jsonl": json.dumps(AGENT) + "\n", "fmt.yaml": "action_match: one\n"},
     ["data", "build", "--format", "swe-agent", "--chat_config", "{tmp}/fmt.yaml", "--input", "{tmp}/in.jsonl",
      "--output", "{tmp}/out.jsonl"], "field 'chat_config'"),
    ("agent option with a math format", {"in.jsonl": json.dumps(GOOD) + "\n"},
     ["data", "build", "--format", "gsm8k", "--last_pairs", "3", "--input", "{tmp}/in.jsonl", "--output",
      "{tmp}/out.jsonl"], "field 'last_pairs'"),
    ("--drop_submit with a math format", {"in.jsonl": json.dumps(GOOD) + "\n"},
     ["data", "build", "--format", "math", "--drop_submit", "--input", "{tmp}/in.jsonl", "--output",
      "{tmp}/out.jsonl"], "field 'drop_submit'"),
    ("--rejected_turns with a math format", {"in.jsonl": json.dumps(GOOD) + "\n"},
     ["data", "build", "--rejected_turns", "show", "--input", "{tmp}/in.jsonl", "--output", "{tmp}/out.jsonl"],
     "field 'rejected_turns'"),
    ("math option with an agent format", {"in.jsonl": json.dumps(AGENT) + "\n"},
     ["data", "build", "--format", "mini-swe-agent", "--keep_calculator", "--input", "{tmp}/in.jsonl", "--output",
      "{tmp}/out.jsonl"], "field 'keep_calculator'"),
    ("--scaffold_instructions where the format knows none", {"in.jsonl": json.dumps(AGENT) + "\n"},
     ["data", "build", "--format", "openai-tools", "--scaffold_instructions", "remove", "--input", "{tmp}/in.jsonl",
      "--output", "{tmp}/out.jsonl"], "field 'scaffold_instructions'"),
    ("message without a content string", {"in.jsonl": json.dumps(AGENT) + "\n" + json.dumps(NO_CONTENT) + "\n"},
     ["data", "build", "--format", "chat", "--input", "{tmp}/in.jsonl", "--output", "{tmp}/out.jsonl"],
     "in.jsonl:2: field 'messages[1].content'"),
    ("every agent turn rejected by the scaffold", {"in.jsonl": json.dumps(ALL_REJECTED) + "\n"},
     ["data", "build", "--format", "mini-swe-agent", "--input", "{tmp}/in.jsonl", "--output", "{tmp}/out.jsonl"],
     "0 instances"),
    # srl train: refused at parse time or on the data, before a model loads, and nothing written
    ("learning rate -1", {}, ["train", "--stage", "srl", "--learning_rate", "-1", "--output_dir", "{tmp}/run"],
     "field 'learning_rate'"),
    ("batch size 0", {}, ["train", "--stage", "srl", "--per_device_train_batch_size", "0", "--output_dir",
                          "{tmp}/run"], "field 'per_device_train_batch_size'"),
    ("max completion length 0", {}, ["train", "--stage", "srl", "--max_completion_length", "0", "--output_dir",
                                     "{tmp}/run"], "field 'max_completion_length'"),
    ("max steps -5", {}, ["train", "--stage", "sft", "--max_steps", "-5", "--output_dir", "{tmp}/run"],
     "field 'max_steps'"),
    ("output_dir is a file", {"run": "x"}, ["train", "--stage", "srl", "--output_dir", "{tmp}/run"],
     "field 'output_dir'"),
    ("model config.json invalid", {"model/config.json": "{not json"},
     ["train", "--stage", "srl", "--model", "{tmp}/model", "--output_dir", "{tmp}/run"], "config.json"),
    ("expert_step null", {"inst.jsonl": json.dumps({"prompt": [{"role": "user", "content": "q"}],
                                                    "expert_step": None}) + "\n"},
     ["train", "--stage", "srl", "--model", "tiny", "--train_data", "{tmp}/inst.jsonl", "--output_dir", "{tmp}/run"],
     "inst.jsonl:1: field 'expert_step'"),
    ("prompt of the wrong type", {"inst.jsonl": json.dumps({"prompt": 5, "expert_step": "x"}) + "\n"},
     ["train", "--stage", "srl", "--model", "tiny", "--train_data", "{tmp}/inst.jsonl", "--output_dir", "{tmp}/run"],
     "inst.jsonl:1: field 'prompt'"),
    ("a data option on built instances", {"inst.jsonl": json.dumps({"prompt": "q", "expert_step": "x"}) + "\n"},
     ["train", "--stage", "srl", "--model", "tiny", "--train_data", "{tmp}/inst.jsonl", "--data_format", "instances",
      "--drop_submit", "--output_dir", "{tmp}/run"],
     "field 'drop_submit': --drop_submit applies when --train_data holds solutions or trajectories"),
    ("a data option on instances found by auto", {"inst.jsonl": json.dumps({"prompt": "q", "expert_step": "x"}) + "\n"},
     ["train", "--stage", "rlvr", "--model", "tiny", "--train_data", "{tmp}/inst.jsonl", "--max_previous_steps", "2",
      "--output_dir", "{tmp}/run"], "inst.jsonl: field 'max_previous_steps': --max_previous_steps applies"),
    ("no --model for training", {}, ["train", "--stage", "srl", "--output_dir", "{tmp}/run"],
     "field 'model': no model given: name one with --model"),
    ("no --model for the pipeline", {}, ["pipeline", "--output_dir", "{tmp}/run"],
     "field 'model': no model given: name one with --model"),
    ("no --model for eval", {}, ["eval", "--data", "gsm8k"], "--model"),
    ("an agent option with --data_format auto", {},
     ["train", "--stage", "srl", "--last_pairs", "3", "--output_dir", "{tmp}/run"],
     "field 'last_pairs': is for agent trajectories: name their format with --data_format (openai-tools"),
]


@pytest.mark.parametrize("name,files,argv,message", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_nothing_left(name, files, argv, message, tmp_path, capsys):
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    code = main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, (name, err)
    assert len(err.strip().splitlines()) == 1 and message in err, (name, err)
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before, name  # nothing written, nothing removed, no temporary file left
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".srl-tmp")]


# --- rewards stay bounded on the campaign's monsters (issue 12 item 7) -----------------------------------------
MONSTERS = [r"9^{9^{9^{9}}}", r"(10^{10})!", r"10!!!!!!!!", r"\binom{100000}{50000}", r"\binom{2^{20}}{2^{19}}",
            r"\Gamma(10^{10})", r"9999!", r"(9!)!", "(" * 600 + "1" + ")" * 600]
# The reward's limit is 1 s (`srl.rewards.functions.ANSWER_TIMEOUT`; the campaign's own inputs are refused up
# front in < 1 ms); the bound below leaves room for a loaded machine
# while still catching the failures seen before the fix (5 s on the main thread, > 60 s off it).
BOUND_S = 3.0


def _timed_rewards():
    import time

    from srl.rewards.answers import start_answer_checker
    from srl.rewards import outcome_reward, srl_reward

    slowest = (0.0, "")
    for monster in MONSTERS:
        for completion, gold in [(f"so \\boxed{{{monster}}}", "72"), ("\\boxed{72}", monster)]:
            # untimed: waits until the checking process is up (a check that ran out of time killed the last one;
            # its spare may still be starting on a loaded machine)
            assert start_answer_checker(wait=True)
            start = time.perf_counter()
            value = outcome_reward(completion, gold)
            slowest = max(slowest, (time.perf_counter() - start, monster[:20]))
            assert value == 0.0
    start = time.perf_counter()
    assert 0.0 <= srl_reward("a" * 1_000_000, "a" * 999_999 + "b", think="off", autojunk=False) <= 1.0
    return max(slowest, (time.perf_counter() - start, "1e6 characters, autojunk off"))


def test_rewards_are_bounded_on_the_main_thread():
    seconds, case = _timed_rewards()
    assert seconds < BOUND_S, case


def test_rewards_are_bounded_off_the_main_thread():
    import threading

    from srl.rewards.answers import answers_match

    result = {}

    def run():
        result["slowest"] = _timed_rewards()
        result["equal"] = answers_match("0.5", "\\frac{1}{2}", timeout=5)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(120)
    assert not thread.is_alive() and result["slowest"][0] < BOUND_S and result["equal"], result


def test_a_reward_never_raises_on_an_unprintable_object():
    from srl.rewards import outcome_reward, srl_reward

    class Evil:
        def __str__(self):
            raise RuntimeError("no")

    assert srl_reward(Evil(), "x") == -1.0 and outcome_reward(Evil(), "1") == 0.0 and outcome_reward("1", Evil()) == 0.0


# --- files as users expect (issue 12 item 3) ---------------------------------------------------------------------
def test_compressed_inputs_are_read_transparently(tmp_path, gsm8k_sample, capsys):
    import gzip

    gz = tmp_path / "gsm8k_train_sample.jsonl.gz"
    with open(gsm8k_sample, "rb") as src, gzip.open(gz, "wb") as dst:
        dst.write(src.read())
    assert main(["data", "build", "--input", str(gz), "--output", str(tmp_path / "a.jsonl"), "--limit", "5"]) == 0
    assert main(["data", "build", "--input", gsm8k_sample, "--output", str(tmp_path / "b.jsonl"), "--limit", "5"]) == 0
    assert (tmp_path / "a.jsonl").read_text() == (tmp_path / "b.jsonl").read_text()


def test_outputs_follow_the_umask_and_stale_temporaries_are_removed(tmp_path, gsm8k_sample, capsys):
    stale_file = tmp_path / ".out.jsonl.tmp-abc123.jsonl"  # what a SIGKILLed build leaves behind
    stale_file.write_text("x" * 1000)
    old = os.umask(0o022)
    try:
        assert main(["data", "build", "--input", gsm8k_sample, "--output", str(tmp_path / "out.jsonl"),
                     "--limit", "3"]) == 0
    finally:
        os.umask(old)
    assert oct((tmp_path / "out.jsonl").stat().st_mode & 0o777) == oct(0o644)
    assert not stale_file.exists()


def test_sigterm_ends_a_build_with_one_line_and_no_temporary_file(tmp_path):
    """A build interrupted by SIGTERM (as a scheduler or `kill` sends) leaves neither output nor temporary file."""
    import signal
    import subprocess
    import sys
    import time

    big = tmp_path / "big.jsonl"
    line = json.dumps(GOOD) + "\n"
    big.write_text(line * 200_000)
    proc = subprocess.Popen([sys.executable, "-m", "srl.cli", "data", "build", "--input", str(big), "--output",
                             str(tmp_path / "out.jsonl")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not [p for p in os.listdir(tmp_path) if ".tmp-" in p]:
        time.sleep(0.05)  # wait until it is writing
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "srl: interrupted" and "Traceback" not in err
    assert sorted(os.listdir(tmp_path)) == ["big.jsonl"]
