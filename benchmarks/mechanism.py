"""Does SRL work, and why? A controlled experiment on a task with known difficulty, a model trained from scratch,
and every method run from the same start on the same limited expert data (issue 13, part A). This script makes
the task's data and the pre-trained base model, then runs recipes/compare_mechanism.yaml (`srl compare`).

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/mechanism.py --record docs/results/<name>

1. Task (`mechanism_task.py`): chained arithmetic, one expert line per operation, exact answers. Splits by
   problem: `pretrain` (1-2 operations), `train` (the limited expert data, 3-5 operations), `validation` and
   `test` (3-5 operations), `hard` (6-7 operations: more than any training problem).
2. Base model: a small Llama and a BPE tokenizer built from scratch (`srl.tiny`), pre-trained with
   `srl.tiny.warm_up` on the *pretrain* split only, in both formats the methods use (whole solutions under the
   evaluation prompt, and step-wise instances under the SRL prompt), so it knows the format but has never seen
   a problem longer than 2 operations.
3. From that same start, `srl compare` trains each method with the library's stages (SFT; RLVR: GRPO, outcome
   reward, DAPO dynamic sampling; SRL: step-similarity reward on the step-wise instances; SRL without dynamic
   sampling; SRL → RLVR, half the RL steps each), the RL methods at the same number of optimizer steps, 3 seeds,
   and evaluates every model greedily on `test` and `hard` (answer in `\\boxed{}`) and on the SRL objective
   (held-out step instances of the test problems). Every method runs with `think: off`: the tiny model cannot be
   expected to write a <think> monologue.

Everything lands in --out (default: the recipe's runs/mechanism): data/, base/ (the model, pretrain.json), and
compare's work folders; a rerun reuses the data, the base model and every finished run of the record.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare_recipe  # noqa: E402
import mechanism_task as task  # noqa: E402

SPLITS = ("pretrain", "train", "validation", "test", "hard")
SIZES = {  # name -> data and base model; `small` is the committed experiment, `tiny` the test's
    "small": dict(pretrain=3000, train=300, validation=100, test=200, hard=200, hidden=64, layers=2, vocab=1024,
                  pretrain_steps=600),
    "tiny": dict(pretrain=200, train=16, validation=4, test=8, hard=8, hidden=32, layers=1, vocab=400,
                 pretrain_steps=4),
}


def levels(distractors: int = 0) -> dict[str, task.Level]:
    mid = task.Level(3, 5, distractors=distractors)
    return {"pretrain": task.Level(1, 2, distractors=distractors), "train": mid, "validation": mid, "test": mid,
            "hard": task.Level(6, 7, distractors=distractors)}


def make_data(folder: str, size: dict, distractors: int = 0, seed: int = 0) -> dict[str, str]:
    """`<folder>/<split>.jsonl` for every split (kept when all are there)."""
    from srl.io import write_jsonl

    paths = {s: os.path.join(folder, f"{s}.jsonl") for s in SPLITS}
    if not all(os.path.exists(p) for p in paths.values()):
        for s, rows in task.make_splits({s: size[s] for s in SPLITS}, levels(distractors), seed=seed).items():
            write_jsonl(paths[s], rows)
    return paths


def stage_rows(stage: str, path: str) -> list[dict]:
    """The rows the library's stage trains on for this file, as {prompt (messages), expert_step (text)}."""
    from srl.training.config import RunArguments
    from srl.training.rows import sft_rows, srl_rows

    run = RunArguments(model="tiny", train_data=path, data_format="steps", think="off")
    if stage == "srl":
        return [{"prompt": r["prompt"], "expert_step": r["expert_step"]} for r in srl_rows(run)]
    return [{"prompt": r["prompt"], "expert_step": r["completion"][0]["content"]} for r in sft_rows(run)]


def pretrain(folder: str, pretrain_path: str, size: dict, seed: int = 0) -> str:
    """Tokenizer + model from scratch, pre-trained on the pretrain split in both formats; saved to `folder`
    with `pretrain.json` (parameters, steps, losses, seconds), which marks it finished."""
    from srl.io import write_json
    from srl.tiny import tiny_model, tiny_tokenizer, warm_up

    marker = os.path.join(folder, "pretrain.json")
    if os.path.exists(marker):
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    started = time.time()
    rows = stage_rows("sft", pretrain_path) + stage_rows("srl", pretrain_path)
    corpus = [" ".join(m["content"] for m in r["prompt"]) + " " + r["expert_step"]
              for r in random.Random(0).sample(rows, min(len(rows), 2000))]
    tokenizer = tiny_tokenizer(extra_text=corpus, vocab_size=size["vocab"])
    model = tiny_model(tokenizer, hidden_size=size["hidden"], num_layers=size["layers"], seed=seed)
    losses, phase = [], max(1, size["pretrain_steps"] // 3)
    for i, lr in enumerate((3e-3, 1e-3, 3e-4)):  # three phases of a decaying learning rate
        losses += warm_up(model, tokenizer, rows, steps=phase, lr=lr, batch_size=32, seed=seed + i)
        print(f"[mechanism] pre-training phase {i + 1}/3 (lr {lr:g}): loss {losses[-1]:.3f}, "
              f"{time.time() - started:.0f} s", flush=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    params = sum(p.numel() for p in model.parameters())
    write_json(marker, {"parameters": params, "steps": 3 * phase, "batch_size": 32, "rows": len(rows),
                        "loss_first": losses[0], "loss_last": losses[-1], "seconds": round(time.time() - started, 1)})
    print(f"[mechanism] pre-trained base model ({params:,} parameters) in {time.time() - started:.0f} s, "
          f"loss {losses[0]:.2f} -> {losses[-1]:.2f}", flush=True)
    return folder


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    compare_recipe.add_flags(p, "mechanism")
    p.add_argument("--size", default="small", choices=sorted(SIZES))
    p.add_argument("--distractors", type=int, default=0, help="distractor sentences per problem")
    p.add_argument("--data_seed", type=int, default=0)
    p.add_argument("--base_seed", type=int, default=0)
    args = p.parse_args(argv)
    config = compare_recipe.recipe_values("mechanism", args.out)
    size = SIZES[args.size]
    paths = make_data(os.path.dirname(config["train_data"]), size, args.distractors, args.data_seed)
    pretrain(config["model"], paths["pretrain"], size, args.base_seed)
    return compare_recipe.run("mechanism", args)


if __name__ == "__main__":
    sys.exit(main())
