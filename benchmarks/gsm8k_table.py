"""The GSM8K table (docs/results.md, issue 13 B) on top of `srl compare`: SmolLM2-135M-Instruct trained on GSM8K
train solutions five ways (base, SFT, RLVR, SRL, SRL → RLVR) at the same RL budget, evaluated on the same GSM8K
test and MATH-500 problems, with paired tests. The settings are recipes/compare_gsm8k.yaml; this script writes
its training problems and runs it.

    python benchmarks/gsm8k_table.py [--out runs/gsm8k_table] [--record docs/results/<name>] [--data_only]

Training problems: a seeded subset of GSM8K *train* (`--problems` 560 with `--seed` 0: the same 560 problems
as the table's 500 to train on and 60 held out, of which `srl compare` holds out its own 60 for validation).
GSM8K's test problems never appear there; the evaluations and the held-out step instances come from its test
split.
"""

from __future__ import annotations

import argparse
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare_recipe  # noqa: E402


def training_problems(train_file: str, path: str, problems: int, seed: int) -> str:
    """`problems` lines of `train_file` (GSM8K train) in a seeded order, written to `path`."""
    from srl.io import atomic_open

    with open(train_file, encoding="utf-8") as f:
        lines = [line if line.endswith("\n") else line + "\n" for line in f if line.strip()]
    order = list(range(len(lines)))
    random.Random(seed).shuffle(order)
    with atomic_open(path) as f:
        f.writelines(lines[i] for i in order[:problems])
    return path


def main(argv: list[str] | None = None) -> int:
    from srl.data.benchmarks import data_root

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    compare_recipe.add_flags(p, "gsm8k")
    p.add_argument("--train_file", default=os.path.join(data_root(), "gsm8k", "train.jsonl"), help="GSM8K train")
    p.add_argument("--problems", type=int, default=560, help="training problems (validation included)")
    p.add_argument("--seed", type=int, default=0, help="seed of the subset")
    args = p.parse_args(argv)
    train_data = compare_recipe.recipe_values("gsm8k", args.out)["train_data"]
    training_problems(args.train_file, train_data, args.problems, args.seed)
    return compare_recipe.run("gsm8k", args)


if __name__ == "__main__":
    sys.exit(main())
