"""Speed of the SRL step-similarity reward: stdlib difflib vs cydifflib vs srl's C extension.

Run from the repository root (after `make install`, or `.venv/bin/pip install -e .`):

    .venv/bin/python benchmarks/reward_speed.py                 # 300 pairs, best of 3
    .venv/bin/python benchmarks/reward_speed.py --pairs 1000 --repeats 5 --data path/to/file.jsonl

Pairs of ~450-character "steps" are cut from real worked solutions (MATH test `solution`, else GSM8K train
`answer`, else the small fixture tests/data/gsm8k_steps_pairs.jsonl), cut at whitespace: half of them are
two overlapping windows of one solution (a close prediction), half are windows of two different solutions
(a poor prediction). Every backend's value is checked to be bit-identical (==) to
`difflib.SequenceMatcher(None, predicted, expert, autojunk).ratio()` before anything is timed; then the
script prints pairs/s, microseconds per pair and the speed-up over the stdlib, with autojunk on (the
stdlib default, the paper's metric) and off.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import random
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(REPO), "shared", "data")
SOURCES = [
    (os.path.join(SHARED, "math_test_5000", "test.jsonl"), "solution"),
    (os.path.join(SHARED, "gsm8k", "train.jsonl"), "answer"),
    (os.path.join(REPO, "tests", "data", "gsm8k_steps_pairs.jsonl"), "expert"),
]
STEP = 450


def load_texts(path: str | None) -> tuple[str, list[str]]:
    """(source path, solution texts) from the first readable source."""
    candidates = [(path, None)] if path else SOURCES
    for file, field in candidates:
        if not os.path.exists(file):
            continue
        with open(file, encoding="utf-8") as f:
            rows = [json.loads(line) for line in f if line.strip()]
        if field is None:  # user file: take the first field that holds text
            field = next(k for k in ("solution", "answer", "expert", "text") if k in rows[0])
        texts = [row[field] for row in rows if isinstance(row.get(field), str)]
        if rows and field == "expert":  # the fixture: whole rows are short, join them into solutions
            texts = ["\n".join(texts[i : i + 5]) for i in range(0, len(texts), 5)]
        return file, texts
    raise SystemExit("no text source found: pass --data FILE.jsonl")


def window(text: str, start: int, rng: random.Random) -> str:
    """About STEP characters of text from start, both ends moved to a whitespace boundary."""
    start = text.rfind(" ", 0, start) + 1 if start else 0
    end = text.find(" ", start + STEP - rng.randrange(0, 40))
    return text[start : end if end != -1 else len(text)]


def make_pairs(texts: list[str], n: int, seed: int = 0) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    long_texts = [t for t in texts if len(t) >= STEP + 100] or ["\n".join(texts)]
    pairs = []
    while len(pairs) < n:
        expert_text = rng.choice(long_texts)
        start = rng.randrange(0, len(expert_text) - STEP) if len(expert_text) > STEP else 0
        expert = window(expert_text, start, rng)
        if len(pairs) % 2 == 0:  # a close prediction: an overlapping window of the same solution
            shift = max(0, min(len(expert_text) - STEP, start + rng.randrange(-150, 150))) if len(expert_text) > STEP else 0
            predicted = window(expert_text, shift, rng)
        else:  # a poor prediction: a window of another solution
            other = rng.choice(long_texts)
            predicted = window(other, rng.randrange(0, max(1, len(other) - STEP)), rng)
        pairs.append((predicted, expert))
    return pairs


def backends():
    """name -> ratio(a, b, autojunk)."""
    out = {"stdlib difflib": lambda a, b, j: difflib.SequenceMatcher(None, a, b, j).ratio()}
    try:
        import cydifflib

        out["cydifflib"] = lambda a, b, j: cydifflib.SequenceMatcher(None, a, b, j).ratio()
    except ImportError:
        print("cydifflib not installed: skipped", file=sys.stderr)
    from srl.rewards import text_similarity as S

    if "srl.rewards._difflib" in S.MATCHERS:  # the C extension's matched size, as the reward uses it
        matched = S.MATCHERS["srl.rewards._difflib"]
        out["srl.rewards._difflib (C)"] = lambda a, b, j: 2.0 * matched(a, b, j) / (len(a) + len(b)) if a or b else 1.0
    else:
        print("srl.rewards._difflib not compiled: skipped", file=sys.stderr)

    out[f"srl.rewards.text_similarity() [{S.BACKEND}]"] = lambda a, b, j: S.similarity(a, b, autojunk=j)
    return out


def time_backend(fn, pairs, autojunk: bool, repeats: int) -> float:
    """Best wall time of `repeats` passes over all pairs, in seconds per pair."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for a, b in pairs:
            fn(a, b, autojunk)
        best = min(best, time.perf_counter() - start)
    return best / len(pairs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data", help="a .jsonl file with a solution/answer/expert/text field")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    source, texts = load_texts(args.data)
    pairs = make_pairs(texts, args.pairs, args.seed)
    mean_len = sum(len(a) + len(b) for a, b in pairs) / (2 * len(pairs))
    print(f"source: {os.path.relpath(source, REPO)}  pairs: {len(pairs)}  mean step length: {mean_len:.0f} chars")
    print(f"python {sys.version.split()[0]}, best of {args.repeats}\n")

    impls = backends()
    for autojunk in (True, False):
        expected = [difflib.SequenceMatcher(None, a, b, autojunk).ratio() for a, b in pairs]
        for name, fn in impls.items():
            got = [fn(a, b, autojunk) for a, b in pairs]
            bad = sum(g != e for g, e in zip(got, expected))
            if bad:
                print(f"MISMATCH: {name} differs from stdlib on {bad} pairs (autojunk={autojunk})")
                return 1
        mean = sum(expected) / len(expected)
        print(f"autojunk={autojunk}: all values identical to stdlib (mean ratio {mean:.4f})")
        print(f"  {'backend':38s} {'pairs/s':>10s} {'us/pair':>10s} {'speed-up':>9s}")
        base = None
        for name, fn in impls.items():
            per_pair = time_backend(fn, pairs, autojunk, args.repeats)
            base = base or per_pair
            print(f"  {name:38s} {1 / per_pair:10.0f} {per_pair * 1e6:10.1f} {base / per_pair:8.1f}x")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
