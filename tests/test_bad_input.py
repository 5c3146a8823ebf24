"""Issue 12: every case of the bad-input campaign is one line on stderr, exit code 2, and nothing left behind.

Each row: (name, files to create, argv with {tmp} for the temporary folder, expected message fragment).
"""

import json
import os

import pytest

from srl.cli import main

GOOD = {"question": "What is 1+1?", "answer": "1 plus 1 is 2.\nSo it is 2.\n#### 2"}
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
