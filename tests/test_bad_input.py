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


def _gzip(text: str) -> bytes:
    import gzip

    return gzip.compress(text.encode("utf-8"), mtime=0)


def _instance(prompt, step="x") -> str:
    return json.dumps({"prompt": prompt, "expert_step": step}) + "\n"


MANY = json.dumps(GOOD) + "\n"
VARIED = "".join(json.dumps({**GOOD, "question": f"What is {i}+1?"}) + "\n" for i in range(2000))
EVAL_ROW = json.dumps({"problem": "What is 1+1?", "answer": "2"}) + "\n"
DEEP = '{"question": ' + "[" * 100_000 + "]" * 100_000 + ', "answer": "x"}'
TEACHER = ["--model", "m", "--base_url", "http://127.0.0.1:9/v1"]

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
    # issue 24 item 7: a model folder that cannot load
    ("model folder with config.json but no weights", {"model/config.json": '{"model_type": "llama"}',
                                                      "bench.jsonl": EVAL_ROW},
     ["eval", "--model", "{tmp}/model", "--data", "{tmp}/bench.jsonl", "--output_dir", "{tmp}/e"],
     "model: field 'model': has config.json but no weights (model.safetensors, pytorch_model.bin"),
    ("train: model folder with config.json but no weights", {"model/config.json": '{"model_type": "llama"}'},
     ["train", "--stage", "srl", "--model", "{tmp}/model", "--output_dir", "{tmp}/run"],
     "model: field 'model': has config.json but no weights"),
    ("model folder without a tokenizer", {"model/config.json": '{"model_type": "llama"}', "model/model.safetensors": "",
                                          "bench.jsonl": EVAL_ROW},
     ["eval", "--model", "{tmp}/model", "--data", "{tmp}/bench.jsonl", "--output_dir", "{tmp}/e"],
     "model: field 'model': has no tokenizer (tokenizer.json or tokenizer_config.json)"),
    # issue 24 item 4: bad input files
    ("truncated .gz", {"in.jsonl.gz": _gzip(VARIED)[:len(_gzip(VARIED)) // 2]},
     ["data", "build", "--input", "{tmp}/in.jsonl.gz", "--output", "{tmp}/out.jsonl"],
     "in.jsonl.gz: cannot decompress after line "),
    ("corrupt .gz", {"in.jsonl.gz": b"\x1f\x8b\x08\x00" + b"garbage" * 20},
     ["data", "build", "--input", "{tmp}/in.jsonl.gz", "--output", "{tmp}/out.jsonl"],
     "in.jsonl.gz: cannot decompress: not valid gzip data"),
    ("plain text named .gz", {"in.jsonl.gz": MANY},
     ["data", "build", "--input", "{tmp}/in.jsonl.gz", "--output", "{tmp}/out.jsonl"],
     "in.jsonl.gz: cannot decompress: not valid gzip data (Not a gzipped file"),
    ("truncated .json.gz", {"in.json.gz": _gzip("[" + MANY * 50 + "]")[:100]},
     ["data", "build", "--input", "{tmp}/in.json.gz", "--output", "{tmp}/out.jsonl"],
     "in.json.gz: cannot decompress: the compressed data ends early"),
    ("JSON nested 100,000 deep", {"in.jsonl": DEEP + "\n"},
     ["data", "build", "--input", "{tmp}/in.jsonl", "--output", "{tmp}/out.jsonl"],
     "in.jsonl:1: invalid JSON: nested too deeply"),
    ("JSON nested 100,000 deep in a .json list", {"in.json": "[" + DEEP + "]"},
     ["data", "build", "--input", "{tmp}/in.json", "--output", "{tmp}/out.jsonl"],
     "in.json: invalid JSON: nested too deeply"),
    ("JSON nested 100,000 deep in a benchmark", {"bench.jsonl": DEEP + "\n"},
     ["eval", "--model", "tiny", "--data", "{tmp}/bench.jsonl", "--output_dir", "{tmp}/e"],
     "bench.jsonl:1: invalid JSON: nested too deeply"),
    *[(f"--config nested 100,000 deep ({name})", {name: text, "in.jsonl": MANY},
       ["data", "build", "--config", "{tmp}/" + name, "--input", "{tmp}/in.jsonl", "--output", "{tmp}/out.jsonl"],
       f"{name}: invalid {kind}: nested too deeply")
      for name, text, kind in (("deep.yaml", "limit: " + "[" * 100_000 + "]" * 100_000, "YAML"),
                               ("deep.json", '{"limit": ' + "[" * 100_000 + "]" * 100_000 + "}", "JSON"))],
    ("lone surrogate", {"in.jsonl": MANY + json.dumps({"question": "a\ud800b", "answer": GOOD["answer"]}) + "\n"},
     ["data", "build", "--input", "{tmp}/in.jsonl", "--output", "{tmp}/out.jsonl"],
     "in.jsonl:2: field 'question': a lone surrogate"),
    ("lone surrogate in a message, to parquet",
     {"in.jsonl": json.dumps({**AGENT, "messages": AGENT["messages"][:2] + [{"role": "user",
                                                                            "content": "\udfff"}]}) + "\n"},
     ["data", "build", "--format", "mini-swe-agent", "--input", "{tmp}/in.jsonl", "--output", "{tmp}/out.parquet"],
     "in.jsonl:1: field 'messages[2].content': a lone surrogate"),
    ("prompt a string, then messages", {"inst.jsonl": _instance("q") + _instance([{"role": "user", "content": "q"}])},
     ["data", "show", "{tmp}/inst.jsonl", "-n", "5"],
     "inst.jsonl:2: field 'prompt': is a list of messages, but on line 1 it is a string"),
    # issue 24 item 5: srl data show checks what it shows
    ("show: empty file", {"inst.jsonl": ""}, ["data", "show", "{tmp}/inst.jsonl"], "inst.jsonl: no instances"),
    ("show: whitespace-only file", {"inst.jsonl": " \n\n\t\n"}, ["data", "show", "{tmp}/inst.jsonl"],
     "inst.jsonl: no instances"),
    ("show: --start past the end", {"inst.jsonl": _instance("q")}, ["data", "show", "{tmp}/inst.jsonl", "--start", "5"],
     "field 'start': no instance from --start 5: the file holds 1"),
    ("show: prompt a list of ints", {"inst.jsonl": _instance([1, 2])}, ["data", "show", "{tmp}/inst.jsonl"],
     "inst.jsonl:1: field 'prompt[0]': must be a message {role, content}, got number"),
    ("show: prompt a list of strings", {"inst.jsonl": _instance(["a", "b"])}, ["data", "show", "{tmp}/inst.jsonl"],
     "inst.jsonl:1: field 'prompt[0]': must be a message {role, content}, got string"),
    ("show: prompt an object", {"inst.jsonl": _instance({"role": "user"})}, ["data", "show", "{tmp}/inst.jsonl"],
     "inst.jsonl:1: field 'prompt': must be a string or a list of chat messages {role, content}, got object"),
    ("show: prompt an empty list", {"inst.jsonl": _instance([])}, ["data", "show", "{tmp}/inst.jsonl"],
     "inst.jsonl:1: field 'prompt': must be a string or a list of chat messages {role, content}, got an empty list"),
    ("show: message without content", {"inst.jsonl": _instance([{"role": "user"}])},
     ["data", "show", "{tmp}/inst.jsonl"], "inst.jsonl:1: field 'prompt[0].content': missing"),
    ("show: message without role", {"inst.jsonl": _instance([{"content": "q"}])},
     ["data", "show", "{tmp}/inst.jsonl"], "inst.jsonl:1: field 'prompt[0].role': missing"),
    ("show: content a list", {"inst.jsonl": _instance([{"role": "user", "content": [{"type": "text"}]}])},
     ["data", "show", "{tmp}/inst.jsonl"], "inst.jsonl:1: field 'prompt[0].content': must be a string, got list"),
    ("show: expert_step null", {"inst.jsonl": _instance("q", None)}, ["data", "show", "{tmp}/inst.jsonl"],
     "inst.jsonl:1: field 'expert_step': must be a non-empty string, got null"),
    ("show: expert_step a list", {"inst.jsonl": _instance("q", ["a"])}, ["data", "show", "{tmp}/inst.jsonl"],
     "inst.jsonl:1: field 'expert_step': must be a non-empty string, got list"),
    ("show: expert_step empty", {"inst.jsonl": _instance("q", " ")}, ["data", "show", "{tmp}/inst.jsonl"],
     "inst.jsonl:1: field 'expert_step': must be a non-empty string"),
    ("show: solutions, not instances", {"in.jsonl": MANY}, ["data", "show", "{tmp}/in.jsonl"],
     "in.jsonl:1: field 'prompt': missing: is this a file of step-wise instances"),
    ("show: a bad second row is checked when shown", {"inst.jsonl": _instance("q") + _instance("q", 3)},
     ["data", "show", "{tmp}/inst.jsonl"], "inst.jsonl:2: field 'expert_step'"),
    # issue 24 item 9: messages that name the option
    ("--max_chars -5", {"in.jsonl": MANY},
     ["data", "build", "--input", "{tmp}/in.jsonl", "--output", "{tmp}/out.jsonl", "--max_chars", "-5"],
     "field 'max_chars': must be >= 1, got -5"),
    ("--input ''", {}, ["data", "build", "--input", "", "--output", "{tmp}/out.jsonl"], "field 'input': empty"),
    ("--output ''", {"in.jsonl": MANY}, ["data", "build", "--input", "{tmp}/in.jsonl", "--output", ""],
     "field 'output': empty"),
    ("show without a file", {}, ["data", "show"],
     "srl: error: the following arguments are required: path (see `srl data show --help`)"),
    ("show with an unknown option", {"inst.jsonl": _instance("q")}, ["data", "show", "{tmp}/inst.jsonl", "--nope"],
     "srl: error: unrecognized arguments: --nope (see `srl data show --help`)"),
    ("show -n not a number", {"inst.jsonl": _instance("q")}, ["data", "show", "{tmp}/inst.jsonl", "-n", "x"],
     "argument -n/--num: invalid int value: 'x'"),
    ("models with an unknown option", {}, ["models", "--nope"],
     "srl: error: unrecognized arguments: --nope (see `srl models --help`)"),
    ("an output name too long for the file system", {"in.jsonl": MANY},
     ["data", "build", "--input", "{tmp}/in.jsonl", "--output", "{tmp}/" + "x" * 300 + ".jsonl"],
     "x.jsonl: file name too long; nothing was written"),
    ("--template a folder", {"in.jsonl": MANY, "t/a.yaml": "x: 1\n"},
     ["data", "build", "--input", "{tmp}/in.jsonl", "--output", "{tmp}/out.jsonl", "--template", "{tmp}/t"],
     "t: is a folder; a template file was expected"),
    ("--chat_config a folder", {"in.jsonl": json.dumps(AGENT) + "\n", "t/a.yaml": "x: 1\n"},
     ["data", "build", "--format", "chat", "--input", "{tmp}/in.jsonl", "--output", "{tmp}/out.jsonl",
      "--chat_config", "{tmp}/t"], "t: is a folder; a chat format file was expected"),
    ("a UTF-8 byte-order mark", {"in.jsonl": "\ufeff" + MANY},
     ["data", "build", "--input", "{tmp}/in.jsonl", "--output", "{tmp}/out.jsonl"],
     "in.jsonl:1: invalid JSON: Unexpected UTF-8 BOM"),
    ("eval --output_dir a file", {"bench.jsonl": EVAL_ROW},
     ["eval", "--model", "tiny", "--data", "{tmp}/bench.jsonl", "--output_dir", "{tmp}/bench.jsonl"],
     "bench.jsonl: field 'output_dir': exists and is not a folder"),
    # issue 24 item 3: --config a folder, outputs below a file
    *[(f"{' '.join(argv[:2])}: --config a folder", {"conf/a.yaml": "x: 1\n", "in.jsonl": MANY, "bench.jsonl": EVAL_ROW},
       [*argv, "--config", "{tmp}/conf"], "conf: is a folder; a config file was expected")
      for argv in (["data", "build", "--input", "{tmp}/in.jsonl", "--output", "{tmp}/out.jsonl"],
                   ["data", "export", "--input", "{tmp}/in.jsonl", "--output", "{tmp}/v"],
                   ["data", "generate", "--input", "{tmp}/bench.jsonl", "--output", "{tmp}/k.jsonl", *TEACHER],
                   ["data", "rewrite", "--input", "{tmp}/in.jsonl", "--solution_field", "answer", "--output",
                    "{tmp}/k.jsonl", *TEACHER],
                   ["eval", "--model", "tiny", "--data", "{tmp}/bench.jsonl", "--output_dir", "{tmp}/e"])],
    *[(f"{' '.join(argv[:2])}: output below a file", {"afile": "x", "in.jsonl": MANY, "bench.jsonl": EVAL_ROW},
       argv, message)
      for argv, message in (
          (["data", "build", "--input", "{tmp}/in.jsonl", "--output", "{tmp}/afile/out.jsonl"],
           "afile: field 'output': exists and is not a folder"),
          (["data", "export", "--input", "{tmp}/in.jsonl", "--output", "{tmp}/afile/v"],
           "afile: exists and is not a folder; nothing was written"),
          (["data", "generate", "--input", "{tmp}/bench.jsonl", "--output", "{tmp}/afile/k.jsonl", *TEACHER],
           "afile: field 'output': exists and is not a folder"),
          (["data", "rewrite", "--input", "{tmp}/in.jsonl", "--solution_field", "answer", "--output",
            "{tmp}/afile/k.jsonl", *TEACHER], "afile: field 'output': exists and is not a folder"),
          (["eval", "--model", "tiny", "--data", "{tmp}/bench.jsonl", "--output_dir", "{tmp}/afile/e"],
           "afile/e: field 'output_dir': cannot be created: "))],
    # issue 24, in the lead's files: train, demo
    ("train: empty --train_data", {}, ["train", "--stage", "srl", "--model", "tiny", "--train_data", "",
                                       "--output_dir", "{tmp}/r"], "field 'train_data': empty"),
    ("train: prompt a string, then messages", {"inst.jsonl": json.dumps({"prompt": "q", "expert_step": "a"}) + "\n" +
                                               json.dumps({"prompt": [{"role": "user", "content": "q"}],
                                                           "expert_step": "b"}) + "\n"},
     ["train", "--stage", "srl", "--model", "tiny", "--use_cpu", "true", "--train_data", "{tmp}/inst.jsonl",
      "--output_dir", "{tmp}/r"], "inst.jsonl:2: field 'prompt': is a list of messages, but on line 1"),
    ("demo: a bad option value", {}, ["demo", "--max_steps", "x", "--output_dir", "{tmp}/d"],
     "argument --max_steps: invalid int value"),
    ("demo: a bad learning rate, before instances.jsonl is written", {},
     ["demo", "--model", "tiny", "--learning_rate", "-1", "--output_dir", "{tmp}/d"], "field 'learning_rate'"),
    ("pipeline: a bad RLVR option, before SRL trains", {},
     ["pipeline", "--model", "tiny", "--use_cpu", "true", "--output_dir", "{tmp}/p", "--rlvr.learning_rate", "-1"],
     "field 'learning_rate': must be > 0"),
    ("pipeline: an unknown RLVR option, before SRL trains", {},
     ["pipeline", "--model", "tiny", "--use_cpu", "true", "--output_dir", "{tmp}/p", "--rlvr.nosuch", "1"],
     "unknown option(s): --nosuch"),
]


@pytest.mark.parametrize("name,files,argv,message", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_nothing_left(name, files, argv, message, tmp_path, capsys):
    for rel, content in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            (tmp_path / rel).write_bytes(content)
        else:
            (tmp_path / rel).write_text(content)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    code = main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, (name, err)
    assert len(err.strip().splitlines()) == 1 and message in err, (name, err)
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before, name  # nothing written, nothing removed, no temporary file left
    assert not [p for p in os.listdir(tmp_path) if ".srl-partial-" in p]


@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage"])
def test_a_model_folder_with_damaged_weights_is_one_line(damage, tmp_path, capsys):
    from srl.tiny import tiny_model, tiny_tokenizer

    tokenizer = tiny_tokenizer()
    tiny_model(tokenizer, seed=0).save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    weights = tmp_path / "model" / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes({"empty": b"", "truncated": data[: len(data) // 2], "garbage": b"x" * 1000}[damage])
    (tmp_path / "bench.jsonl").write_text(EVAL_ROW)
    code = main(["eval", "--model", str(tmp_path / "model"), "--data", str(tmp_path / "bench.jsonl"), "--output_dir",
                 str(tmp_path / "e")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith(f"srl: error: {tmp_path / 'model'}: field 'model': cannot be loaded: "), err
    assert not (tmp_path / "e").exists()


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


# Issue 24 item 11: answers that pass the up-front refusal but keep sympy busy in one long C call, checked back to
# back with no wait in between (each kills the checking process; the next must not wait for a fresh start-up past
# its own time): every call returns within the timeout, on the main thread and in threads calling at once.
BUSY = [r"\Gamma(10^{10})", r"9999!", "(" * 600 + "1" + ")" * 600, r"99999^{99999}", r"9^{99999}",
        r"\frac{9^{9999}}{7^{9999}}"]
SLACK_S = 0.8  # past the timeout: a kill and the bookkeeping, on a loaded machine (1.97 s seen at load 5; the failure was 2-4 s)


def _busy_calls(results: list) -> None:
    import time

    from srl.rewards import outcome_reward

    for monster in BUSY:
        start = time.perf_counter()
        value = outcome_reward(f"so \\boxed{{{monster}}}", "72")
        results.append((time.perf_counter() - start, monster[:20], value))


def test_every_reward_call_ends_within_its_timeout_on_the_main_thread():
    from srl.rewards.answers import start_answer_checker
    from srl.rewards.functions import ANSWER_TIMEOUT

    assert start_answer_checker(wait=True)  # the very first start-up is documented as not counted
    results = []
    _busy_calls(results)
    assert max(results)[0] <= ANSWER_TIMEOUT + SLACK_S and {v for _, _, v in results} == {0.0}, max(results)


def test_every_reward_call_ends_within_its_timeout_in_threads_at_once():
    import threading

    from srl.rewards import outcome_reward
    from srl.rewards.answers import start_answer_checker
    from srl.rewards.functions import ANSWER_TIMEOUT

    assert start_answer_checker(wait=True)
    results = []
    threads = [threading.Thread(target=_busy_calls, args=(results,), daemon=True) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(results) == 3 * len(BUSY) and max(results)[0] <= ANSWER_TIMEOUT + SLACK_S, max(results)
    assert start_answer_checker(wait=True) and outcome_reward("\\boxed{\\frac{1}{2}}", "0.5") == 1.0  # still right


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
    stale_file = tmp_path / ".out.jsonl.srl-partial-abc123.jsonl"  # what a SIGKILLed build leaves behind
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
    while time.time() < deadline and not [p for p in os.listdir(tmp_path) if ".srl-partial-" in p]:
        time.sleep(0.05)  # wait until it is writing
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "srl: interrupted" and "Traceback" not in err
    assert sorted(os.listdir(tmp_path)) == ["big.jsonl"]


# --- I/O errors (issue 24 item 3): a full or read-only disk, a permission denied: one line, exit 2, nothing left --
# Real file systems: a tmpfs of 64 KiB (full after the first few rows) and a read-only tmpfs, mounted for the test
# (the `disks` fixture, conftest.py).
BENCH = "".join(json.dumps({"problem": f"What is {i}+1? Think it through at length, with care.", "answer": str(i + 1)})
                + "\n" for i in range(60))
# rows that compress badly (parquet compresses), 250 KiB
BIG = "".join(json.dumps({**GOOD, "question": f"What is {i}+1? " + " ".join(
    __import__("hashlib").sha256(f"{i}-{j}".encode()).hexdigest() for j in range(8))}) + "\n" for i in range(400))
DISK_CASES = [
    *[(f"build, full disk, {what}", ["data", "build", "--input", "{tmp}/in.jsonl", "--output", f"{{tmp}}/full/{out}"],
       f"full/{out}: no space left on the device (disk full); nothing was written")
      for what, out in (("jsonl", "out.jsonl"), ("json", "out.json"), ("parquet", "o.parquet"),
                        ("datasets folder", "ds"), ("into new folders", "new/sub/out.jsonl"))],
    ("build, read-only disk", ["data", "build", "--input", "{tmp}/in.jsonl", "--output", "{tmp}/ro/out.jsonl"],
     "ro: field 'output': cannot be written (Read-only file system)"),
    ("export, full disk", ["data", "export", "--input", "{tmp}/in.jsonl", "--output", "{tmp}/full/v"],
     "full/v: no space left on the device (disk full); nothing was written"),
    ("export, read-only disk", ["data", "export", "--input", "{tmp}/in.jsonl", "--output", "{tmp}/ro/v"],
     "ro/v: read-only file system; nothing was written"),
    ("generate, --journal on a read-only disk", ["data", "generate", "--input", "{tmp}/bench.jsonl", "--output",
                                                 "{tmp}/k.jsonl", "--journal", "{tmp}/ro/k.calls.jsonl", *TEACHER],
     "ro: field 'journal': cannot be written"),
    ("generate, read-only disk", ["data", "generate", "--input", "{tmp}/bench.jsonl", "--output",
                                  "{tmp}/ro/k.jsonl", *TEACHER], "ro: field 'output': cannot be written"),
    ("rewrite, read-only disk", ["data", "rewrite", "--input", "{tmp}/in.jsonl", "--solution_field", "answer",
                                 "--output", "{tmp}/ro/k.jsonl", *TEACHER], "ro: field 'output': cannot be written"),
    ("eval, full disk", ["eval", "--model", "tiny", "--data", "{tmp}/bench.jsonl", "--max_new_tokens", "48", "--k", "8",
                         "--output_dir", "{tmp}/full/e"],
     "full/e/problems.jsonl: no space left on the device (disk full)"),
    ("eval, read-only disk", ["eval", "--model", "tiny", "--data", "{tmp}/bench.jsonl", "--output_dir", "{tmp}/ro/e"],
     "ro/e: field 'output_dir': cannot be written (Read-only file system"),
]


@pytest.mark.parametrize("name,argv,message", DISK_CASES, ids=[c[0] for c in DISK_CASES])
def test_a_full_or_read_only_disk_is_one_line_exit_2_nothing_left(name, argv, message, disks, capsys):
    (disks / "in.jsonl").write_text(BIG)
    (disks / "bench.jsonl").write_text(BENCH)
    code = main([a.replace("{tmp}", str(disks)) for a in argv])
    lines = capsys.readouterr().err.strip().splitlines()  # an evaluation's progress line may come first (a log)
    assert code == 2 and lines[-1].startswith("srl: error: ") and message in lines[-1], (name, lines)
    assert not [line for line in lines[:-1] if line.startswith("srl") or "Traceback" in line], (name, lines)
    assert os.listdir(disks / "full") == [] and os.listdir(disks / "ro") == []  # nothing left, no temporary


class _DacCapabilities:
    """Root's power to read and write through any file permission (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH), dropped
    from this thread's effective set and raised again (they stay permitted) with the capget/capset system calls.
    Without them root meets file modes as their owner does: a file of mode 000 cannot be read, a folder of mode
    555 not written, while Python's own files (root's, readable by their owner) still import."""

    VERSION_3, DAC_BITS = 0x20080522, (1 << 1) | (1 << 2)

    def __init__(self):
        import ctypes

        self.libc = ctypes.CDLL(None, use_errno=True)
        self.header = (ctypes.c_uint32 * 2)(self.VERSION_3, 0)
        self.data = (ctypes.c_uint32 * 6)()  # two {effective, permitted, inheritable}

    def _set(self, drop: bool) -> None:
        import ctypes

        if self.libc.syscall(125, self.header, self.data) != 0:  # capget (x86_64)
            raise OSError(ctypes.get_errno(), "capget")
        self.data[0] = self.data[0] & ~self.DAC_BITS if drop else self.data[0] | (self.data[1] & self.DAC_BITS)
        if self.libc.syscall(126, self.header, self.data) != 0:  # capset (x86_64)
            raise OSError(ctypes.get_errno(), "capset")

    def __enter__(self):
        self._set(drop=True)

    def __exit__(self, *exc):
        self._set(drop=False)


@pytest.fixture
def unprivileged(tmp_path):
    """`run(argv)`: `main(argv)` without the power to bypass file permissions: root's DAC capabilities dropped
    for the call when the tests run as root (as CI does), else as the user itself."""
    import contextlib
    import platform

    if os.geteuid() == 0 and platform.machine() != "x86_64":
        pytest.skip("dropping root's file-permission capabilities is written for x86_64 system call numbers")

    def run(argv):
        with _DacCapabilities() if os.geteuid() == 0 else contextlib.nullcontext():
            return main(argv)

    yield tmp_path, run
    for path in tmp_path.rglob("*"):  # let pytest remove it
        os.chmod(path, 0o700)


PERMISSION_CASES = [
    ("build: input unreadable", ["data", "build", "--input", "{tmp}/secret.jsonl", "--output", "{tmp}/open/o.jsonl"],
     "secret.jsonl: permission denied; nothing was written"),
    ("build: output folder not writable", ["data", "build", "--input", "{tmp}/in.jsonl", "--output",
                                           "{tmp}/locked/o.jsonl"],
     "locked: field 'output': cannot be written (Permission denied)"),
    ("build: --config unreadable", ["data", "build", "--config", "{tmp}/secret.yaml", "--input", "{tmp}/in.jsonl",
                                    "--output", "{tmp}/open/o.jsonl"], "secret.yaml: permission denied"),
    ("export: input unreadable", ["data", "export", "--input", "{tmp}/secret.jsonl", "--output", "{tmp}/open/v"],
     "secret.jsonl: permission denied; nothing was written"),
    ("export: output folder not writable", ["data", "export", "--input", "{tmp}/in.jsonl", "--output",
                                            "{tmp}/locked/v"], "locked/v: permission denied; nothing was written"),
    ("generate: input unreadable", ["data", "generate", "--input", "{tmp}/secret.jsonl", "--output",
                                    "{tmp}/open/k.jsonl", *TEACHER], "secret.jsonl: permission denied"),
    ("generate: output folder not writable", ["data", "generate", "--input", "{tmp}/bench.jsonl", "--output",
                                              "{tmp}/locked/k.jsonl", *TEACHER],
     "locked: field 'output': cannot be written (Permission denied)"),
    ("rewrite: input unreadable", ["data", "rewrite", "--input", "{tmp}/secret.jsonl", "--output",
                                   "{tmp}/open/k.jsonl", *TEACHER], "secret.jsonl: permission denied"),
    ("rewrite: output folder not writable", ["data", "rewrite", "--input", "{tmp}/in.jsonl", "--solution_field",
                                             "answer", "--output", "{tmp}/locked/k.jsonl", *TEACHER],
     "locked: field 'output': cannot be written (Permission denied)"),
    ("eval: benchmark unreadable", ["eval", "--model", "tiny", "--data", "{tmp}/secret.jsonl", "--output_dir",
                                    "{tmp}/open/e"], "secret.jsonl: permission denied"),
    ("eval: output folder not writable", ["eval", "--model", "tiny", "--data", "{tmp}/bench.jsonl", "--output_dir",
                                          "{tmp}/locked/e"],
     "locked/e: field 'output_dir': cannot be written (Permission denied: "),
    ("show: file unreadable", ["data", "show", "{tmp}/secret.jsonl"], "secret.jsonl: permission denied"),
]


@pytest.mark.parametrize("name,argv,message", PERMISSION_CASES, ids=[c[0] for c in PERMISSION_CASES])
def test_permission_denied_is_one_line_exit_2_nothing_left(name, argv, message, unprivileged, capsys):
    folder, run = unprivileged
    for file, text, mode in (("in.jsonl", MANY, 0o644), ("bench.jsonl", EVAL_ROW, 0o644),
                             ("secret.jsonl", MANY, 0o000), ("secret.yaml", "limit: 1\n", 0o000)):
        (folder / file).write_text(text)
        os.chmod(folder / file, mode)
    for sub, mode in (("open", 0o777), ("locked", 0o555)):
        (folder / sub).mkdir()
        os.chmod(folder / sub, mode)
    code = run([a.replace("{tmp}", str(folder)) for a in argv])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, (name, err)
    assert os.listdir(folder / "open") == [] and os.listdir(folder / "locked") == []


# --- file modes (issue 24 item 10) ----------------------------------------------------------------------------
def _modes(folder) -> dict[str, str]:
    return {str(p.relative_to(folder)): oct(p.stat().st_mode & 0o777) for p in sorted(folder.rglob("*"))}


def test_a_training_run_and_its_checkpoints_follow_the_umask(tmp_path, capsys):
    """safetensors (>= 0.8) writes model.safetensors 0600 whatever the umask; every file of a run follows it."""
    from srl.data.instances import InstanceOptions, trajectory_instances, write_rows
    from srl.tiny import synthetic_trajectories

    data = str(tmp_path / "inst.jsonl")
    write_rows([r for t in synthetic_trajectories(4) for r in trajectory_instances(t, InstanceOptions(think="off"))],
               data)
    old = os.umask(0o022)
    try:
        code = main(["train", "--stage", "srl", "--model", "tiny", "--train_data", data, "--think", "off",
                     "--use_cpu", "true", "--bf16", "false", "--per_device_train_batch_size", "4", "--num_generations",
                     "2", "--max_completion_length", "4", "--max_steps", "1", "--save_steps", "1",
                     "--dataloader_pin_memory", "false", "--output_dir", str(tmp_path / "run")])
    finally:
        os.umask(old)
    assert code == 0, capsys.readouterr().err
    modes = _modes(tmp_path / "run")
    assert "checkpoint-1/model.safetensors" in modes and "final/model.safetensors" in modes
    odd = {name: mode for name, mode in modes.items()
           if mode != (oct(0o755) if (tmp_path / "run" / name).is_dir() else oct(0o644))}
    assert not odd, odd


def test_eval_and_export_outputs_follow_the_umask(tmp_path, capsys):
    bench = tmp_path / "bench.jsonl"
    bench.write_text(EVAL_ROW)
    (tmp_path / "in.jsonl").write_text(MANY * 3)
    old = os.umask(0o027)
    try:
        assert main(["eval", "--model", "tiny", "--data", str(bench), "--max_new_tokens", "4", "--output_dir",
                     str(tmp_path / "e")]) == 0
        assert main(["data", "export", "--input", str(tmp_path / "in.jsonl"), "--output", str(tmp_path / "v")]) == 0
    finally:
        os.umask(old)
    modes = {**_modes(tmp_path / "e"), **_modes(tmp_path / "v")}
    assert modes["problems.jsonl"] == modes["summary.json"] == modes["train.parquet"] == oct(0o640), modes
