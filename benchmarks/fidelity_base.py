"""The fidelity experiment's base model (issue 21): a tokenizer and a small Llama built from scratch, pre-trained on
the *pretrain* split of `fidelity_task` (the student's easier problems) in both formats the methods use.

    OMP_NUM_THREADS=1 python benchmarks/fidelity_base.py --out runs/fidelity --save_every 500

- Whole solutions under the evaluation prompt (`srl.data.prompts.EVAL_SYSTEM_PROMPT`, what `srl eval` and RLVR
  show): the student's solution, a `<think>` scratchpad per stage then its folded line, then the answer line
  (`fidelity_task.student_solution`).
- Step-wise instances under the SRL prompt with the monologue (`--think required`), built by the library's own
  instance builder (`srl.data.build.instance_rows`, `--data_format steps`, the answer step included so the
  student knows when to answer): the target is `<think>` + that stage's scratchpad + `</think>` + the folded
  line (`fidelity_task.student_steps`).

The student's pre-training solutions carry its habit (`--slip_rate`, `fidelity_task.slips`): where a subtraction
from >= 20 needs a borrow, 90% of them slip (drawn once per row, fixed by the row's id).

Training: AdamW, linear warm-up then cosine decay, loss on the response tokens only, batches drawn from the two
formats in turn (`--step_share` of them step-wise). Rows are tokenized when first drawn. The pretrain split is
large (30,000 problems) so that rows are rarely seen twice: with 6,000 the base memorised them and copied the
operations of unseen problems badly (docs/results.md).

Writes `<out>/data/<split>.jsonl` (kept if present) and `<out>/base/` (a `save_pretrained` folder that
`srl train`, `srl eval` and `srl compare` take as `model:`). Resumable: a finished base (its `pretrain.json`,
written last) is reused; an unfinished one is trained again from the start.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fidelity_task as task  # noqa: E402

MARKER = "pretrain.json"
STEP_SHARE = 0.5  # share of pre-training batches that are step-wise instances
PRETRAIN_STAGES = task.LEVELS["pretrain"].stages  # stages per pretrain problem
TEST_STAGES = task.LEVELS["test"].stages  # stages per train, validation and test problem
SLIP_RATE = task.SLIP_RATE  # how often the student's pre-training solutions slip where they can
SIZES = {  # name -> model and schedule; `small` is the experiment's base, `tiny` the end-to-end test
    "small": dict(hidden=64, layers=2, heads=4, vocab=768, steps=4500, batch=16, lr=3e-3),
    "tiny": dict(hidden=32, layers=1, heads=4, vocab=400, steps=3, batch=4, lr=3e-3),
}


def whole_rows(path: str, slip_rate: float = 0.0) -> list[dict]:
    """(prompt, target) rows: the student's whole solutions under the evaluation prompt (with its slips)."""
    from srl.data.prompts import EVAL_SYSTEM_PROMPT

    return [{"prompt": [{"role": "system", "content": EVAL_SYSTEM_PROMPT}, {"role": "user", "content": r["problem"]}],
             "target": task.student_solution(r, slip_rate)} for r in task.read_jsonl(path)]


def step_rows(path: str, include_last_step: bool = True, think: str = "required", slip_rate: float = 0.0) -> list[dict]:
    """The step-wise instances of `path` exactly as `srl data build --format steps --id_field id` makes them,
    each with `target`: the student's response (scratchpad + action; `think="off"`: the action; with its slips)."""
    from srl.data.build import DataConfig, instance_rows

    by_id = {r["id"]: r for r in task.read_jsonl(path)}
    cfg = DataConfig(input=path, output=os.devnull, format="steps", id_field="id", think=think,
                     include_last_step=include_last_step)
    rows = []
    for row in instance_rows(cfg):
        student = task.student_steps(by_id[row["trajectory_id"]], slip_rate)[row["step_index"] - 1]
        rows.append({**row, "target": student if think != "off" else student.rsplit("\n", 1)[1]})
    return rows


def tokenize(tokenizer, row: dict) -> tuple[list[int], int]:
    """(prompt + target + end-of-turn token ids, prompt length) of a row; cached on the row."""
    if "_ids" not in row:
        text = tokenizer.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=False)
        p = tokenizer(text, add_special_tokens=False)["input_ids"]
        r = tokenizer(row["target"] + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
        row["_ids"] = (p + r, len(p))
    return row["_ids"]


def batch_tensors(batch: list[tuple[list[int], int]], pad_id: int):
    import torch

    width = max(len(ids) for ids, _ in batch)
    ids = torch.full((len(batch), width), pad_id)
    labels = torch.full((len(batch), width), -100)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, (x, n) in enumerate(batch):  # right padding: positions start at 0 for every row
        ids[i, :len(x)] = torch.tensor(x)
        labels[i, n:len(x)] = torch.tensor(x[n:])
        mask[i, :len(x)] = 1
    return ids, labels, mask


def train(model, tokenizer, whole: list, steps: list, size: dict, step_share: float, seed: int, log,
          save_every: int = 0, save=None) -> list[float]:
    """Pre-train in place; returns the loss of every optimizer step. `save(step)` every `save_every` steps."""
    import torch

    rng = random.Random(seed)
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=size["lr"], weight_decay=0.01, betas=(0.9, 0.98))
    total, warm = size["steps"], max(1, size["steps"] // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: min((i + 1) / warm, 0.5 * (
        1 + math.cos(math.pi * min(1.0, (i - warm) / max(1, total - warm)))) if i >= warm else 1.0))
    model.train()
    losses, started = [], time.time()
    for i in range(total):
        pool = steps if rng.random() < step_share else whole
        batch = [tokenize(tokenizer, row) for row in rng.sample(pool, min(size["batch"], len(pool)))]
        ids, labels, mask = batch_tensors(batch, tokenizer.pad_token_id)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        losses.append(loss.item())
        if (i + 1) % max(1, total // 20) == 0 or i + 1 == total:
            recent = losses[-max(1, total // 20):]
            log(f"step {i + 1}/{total}: loss {sum(recent) / len(recent):.3f}, lr {schedule.get_last_lr()[0]:.2e}, "
                f"{time.time() - started:.0f} s")
        if save_every and (i + 1) % save_every == 0 and i + 1 < total:
            model.eval()
            save(i + 1)
            model.train()
    model.eval()
    return losses


def pretrain(out: str, size_name: str = "small", seed: int = 0, step_share: float = STEP_SHARE, data_sizes=None,
             overrides: dict | None = None, pretrain_stages: tuple[int, int] = PRETRAIN_STAGES, init: str | None = None,
             slip_rate: float = SLIP_RATE, save_every: int = 0, test_stages: tuple[int, int] = TEST_STAGES,
             log=print) -> str:
    """Data + base model under `out`; returns the base folder (reused when its marker exists).
    `pretrain_stages`, `test_stages`: (min, max) stages of the pretrain split's problems and of the experiment's
    (train, validation, test; `fidelity_task.levels`, which also sets the hard split's); `init`: a
    finished base folder to continue pre-training from (its tokenizer and weights; a new schedule); `slip_rate`:
    how often the student's pre-training solutions slip where they can (`fidelity_task.slips`); `save_every`: also
    save the model every this many steps to `<out>/checkpoints/step-<n>` (to measure the preconditions along
    the way)."""
    import torch

    from srl.io import write_json
    from srl.tiny import tiny_tokenizer

    size = {**SIZES[size_name], **(overrides or {})}
    levels = task.levels(tuple(pretrain_stages), tuple(test_stages))
    paths = task.write_splits(os.path.join(out, "data"), data_sizes, levels=levels)
    folder = os.path.join(out, "base")
    if os.path.exists(os.path.join(folder, MARKER)):
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    started, cpu = time.time(), time.process_time()
    whole, steps = whole_rows(paths["pretrain"], slip_rate), step_rows(paths["pretrain"], slip_rate=slip_rate)
    if init:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer, model = AutoTokenizer.from_pretrained(init), AutoModelForCausalLM.from_pretrained(init)
    else:
        sample = random.Random(0).sample(whole + steps, min(len(whole + steps), 3000))
        tokenizer = tiny_tokenizer(extra_text=[" ".join(m["content"] for m in r["prompt"]) + " " + r["target"]
                                               for r in sample], vocab_size=size["vocab"])
        model = build_model(tokenizer, size, seed)
    params = sum(p.numel() for p in model.parameters())
    log(f"{params:,} parameters; {len(whole)} whole solutions, {len(steps)} step instances")
    def save(step: int) -> None:
        checkpoint = os.path.join(out, "checkpoints", f"step-{step}")
        model.save_pretrained(checkpoint)
        tokenizer.save_pretrained(checkpoint)

    losses = train(model, tokenizer, whole, steps, size, step_share, seed, log, save_every, save)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    write_json(os.path.join(folder, MARKER), {
        "parameters": params, "size": size_name, "settings": size, "step_share": step_share, "seed": seed,
        "pretrain_stages": list(pretrain_stages), "test_stages": list(test_stages), "slip_rate": slip_rate, "init": init and read_marker(init),
        "whole_rows": len(whole), "step_rows": len(steps), "loss_first": losses[0],
        "loss_last_5pct": sum(losses[-max(1, len(losses) // 20):]) / max(1, len(losses) // 20),
        "torch_threads": torch.get_num_threads(), "seconds": round(time.time() - started, 1),
        "cpu_seconds": round(time.process_time() - cpu, 1)})
    log(f"saved {folder} after {time.time() - started:.0f} s")
    return folder


def read_marker(folder: str) -> dict:
    """The finished base's pre-training record (`pretrain.json`)."""
    with open(os.path.join(folder, MARKER), encoding="utf-8") as f:
        return json.load(f)


def build_model(tokenizer, size: dict, seed: int):
    """A Llama sized by `size` (srl.tiny.tiny_model's architecture with more heads/layers where asked)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    h = size["hidden"]
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=h, intermediate_size=4 * h,
                         num_hidden_layers=size["layers"], num_attention_heads=size["heads"],
                         num_key_value_heads=size["heads"], max_position_embeddings=2048, tie_word_embeddings=True,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=None)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/fidelity", help="work folder: data/ and base/")
    p.add_argument("--size", default="small", choices=sorted(SIZES))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--step_share", type=float, default=STEP_SHARE, help="share of batches that are step-wise instances")
    p.add_argument("--pretrain_stages", type=int, nargs=2, default=PRETRAIN_STAGES, metavar=("MIN", "MAX"),
                   help="stages per pretrain problem (each of 1-3 operations)")
    for name in ("hidden", "layers", "heads", "vocab", "steps", "batch"):
        p.add_argument(f"--{name}", type=int, default=None, help=f"override the size's {name}")
    p.add_argument("--lr", type=float, default=None, help="override the size's peak learning rate")
    p.add_argument("--test_stages", type=int, nargs=2, default=TEST_STAGES, metavar=("MIN", "MAX"),
                   help="stages per train, validation and test problem (hard: 1-3 more)")
    p.add_argument("--slip_rate", type=float, default=SLIP_RATE,
                   help="how often the student's pre-training solutions slip where they can (fidelity_task.slips)")
    p.add_argument("--save_every", type=int, default=0, help="also save <out>/checkpoints/step-<n> every n steps")
    p.add_argument("--init", default=None, help="continue pre-training this finished base folder (new schedule)")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    overrides = {k: getattr(args, k) for k in ("hidden", "layers", "heads", "vocab", "steps", "batch", "lr")
                 if getattr(args, k) is not None}
    folder = pretrain(args.out, args.size, args.seed, args.step_share, overrides=overrides,
                      pretrain_stages=tuple(args.pretrain_stages), init=args.init, slip_rate=args.slip_rate,
                      save_every=args.save_every, test_stages=tuple(args.test_stages),
                      log=lambda m: print(f"[fidelity_base] {m}", flush=True))
    print(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
