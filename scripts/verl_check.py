"""Part 2 of `make verl-check` (runs in verl's environment, with srl importable): verl's own code reads our
exports and scores the completions of part 1 (scripts/verl_check_cases.py).

    PYTHONPATH=src .venv-verl/bin/python scripts/verl_check.py WORK_DIR

For each export folder it checks, with verl 0.9.1 and without Ray or a GPU:

1. config: verl's Hydra config composes from the export's srl_verl.yaml with the overrides run_srl.sh passes
   (every key exists in verl's schema), `verl.utils.config.validate_config` accepts it, and the values are the
   exported ones (batch in prompts, rollout.n, lr, KL off, filter_groups metric);
2. data: `verl.utils.dataset.rl_dataset.RLHFDataset` loads train.parquet with the export's data config and
   the tokenizer (no prompt dropped by its length filter), each item holds our prompt, data_source and
   ground truth, and verl's rollout tokenisation (`create_continuous_token_builder(...).build_initial_tokens`)
   gives the token ids of `apply_chat_template(prompt, add_generation_prompt=True)`, which TRL feeds
   `srl train`;
3. reward: `verl.experimental.reward_loop.RewardLoopWorker` (reward manager `naive`, the reward loaded by
   `get_custom_reward_fn` from the path run_srl.sh sets) scores a `DataProto` of the tokenised completions:
   every score equals `srl train`'s reward exactly, and the logged parts are there;
4. dynamic sampling: verl's group filter (`ReplayBuffer._dapo_filtered_keys`, verl/trainer/ppo/v1/
   replay_buffer.py: a group is dropped when `np.std` of its metric is exactly 0) keeps the same groups as
   our std > 1e-6 filter on these groups;
5. the key trap: the pre-0.9 top-level `custom_reward_function.path` composes without error but
   `get_custom_reward_fn` ignores it.

Exit code 0 when everything holds; the failures are printed otherwise.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time
from collections import defaultdict

FAILURES: list[str] = []


def check(ok: bool, what: str) -> bool:
    if not ok:
        FAILURES.append(what)
        print(f"  FAIL {what}")
    return ok


def script_overrides(folder: str) -> list[str]:
    """The `key="$HERE/file"` overrides run_srl.sh passes, with $HERE resolved to the folder."""
    with open(os.path.join(folder, "run_srl.sh"), encoding="utf-8") as f:
        pairs = re.findall(r'^\s+([\w.]+)="\$HERE/([^"]+)"', f.read(), flags=re.M)
    return [f"{key}={os.path.join(folder, name)}" for key, name in pairs]


def compose(folder: str, overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=os.path.abspath(folder), version_base=None):
        return hydra_compose("srl_verl", overrides=overrides)


def check_config(folder: str, tokenizer_dir: str):
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    with open(os.path.join(folder, "srl_export.json"), encoding="utf-8") as f:
        exported = json.load(f)["config"]
    cfg = compose(folder, script_overrides(folder) + [f"actor_rollout_ref.model.path={tokenizer_dir}"])
    validate_config(cfg, use_reference_policy=need_reference_policy(cfg), use_critic=need_critic(cfg))
    stage = exported["stage"]
    expected = {
        "data.train_batch_size": exported["train_batch_size"] or (512 if stage == "srl" else 128),
        "actor_rollout_ref.rollout.n": exported["rollout_n"],
        "actor_rollout_ref.actor.optim.lr": exported["learning_rate"],
        "actor_rollout_ref.rollout.temperature": exported["temperature"],
        "actor_rollout_ref.actor.use_kl_loss": False,
        "algorithm.use_kl_in_reward": False,
        "algorithm.adv_estimator": "grpo",
        "actor_rollout_ref.actor.grad_clip": 1.0,
        "algorithm.filter_groups.enable": exported["dynamic_sampling"],
        "algorithm.filter_groups.metric": "score" if stage == "srl" else "acc",
        "reward.custom_reward_function.path": os.path.join(folder, "srl_reward.py"),
        "reward.custom_reward_function.name": "compute_score",
        "data.train_files": os.path.join(folder, "train.parquet"),
    }
    for key, want in expected.items():
        node = cfg
        for part in key.split("."):
            node = node[part]
        check(node == want, f"{folder}: {key} = {node!r}, expected {want!r}")
    print(f"  config: composed from srl_verl.yaml + run_srl.sh overrides, validate_config passed; "
          f"{len(expected)} values as exported")
    return cfg


def check_dataset(folder: str, cfg, tokenizer):
    import pyarrow.parquet as pq
    from verl.utils.dataset.rl_dataset import RLHFDataset
    from verl.utils.tokenizer.continuous_token_wiring import create_continuous_token_builder

    rows = pq.read_table(os.path.join(folder, "train.parquet")).to_pylist()
    dataset = RLHFDataset(data_files=os.path.join(folder, "train.parquet"), tokenizer=tokenizer, config=cfg.data)
    check(len(dataset) == len(rows), f"{folder}: RLHFDataset kept {len(dataset)} of {len(rows)} rows")
    builder = create_continuous_token_builder(tokenizer)
    mismatched = 0
    for i in range(len(dataset)):
        item, row = dataset[i], rows[i]
        same = (list(item["raw_prompt"]) == row["prompt"] and item["data_source"] == row["data_source"]
                and item["reward_model"]["ground_truth"] == row["reward_model"]["ground_truth"]
                and item["extra_info"] == row["extra_info"])
        ids = builder.build_initial_tokens(list(item["raw_prompt"]))
        trl_ids = tokenizer.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=True)
        trl_ids = trl_ids["input_ids"] if isinstance(trl_ids, dict) or hasattr(trl_ids, "keys") else trl_ids
        mismatched += not (same and list(ids) == list(trl_ids))
    check(mismatched == 0, f"{folder}: {mismatched} items differ from the parquet rows or the chat template")
    print(f"  data: RLHFDataset loaded {len(dataset)}/{len(rows)} rows; prompts, ground truths and extra_info "
          f"intact; verl's prompt token ids = apply_chat_template's on every row")
    return dataset


def score_with_verl(cfg, dataset, cases: list[dict], tokenizer) -> list[dict]:
    """RewardLoopWorker.compute_score_batch on a DataProto of (prompt row, tokenised completion)."""
    import numpy as np
    import torch
    from verl import DataProto
    from verl.experimental.reward_loop import RewardLoopWorker
    from verl.utils.dataset.rl_dataset import collate_fn

    worker = RewardLoopWorker(cfg)
    items = collate_fn([dataset[c["index"]] for c in cases])
    responses = [tokenizer.encode(c["completion"], add_special_tokens=False) for c in cases]
    width = max(len(r) for r in responses)
    pad = tokenizer.pad_token_id
    response_ids = torch.tensor([r + [pad] * (width - len(r)) for r in responses])  # (N, width), right-padded
    response_mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in responses])
    prompt_mask = torch.ones(len(cases), 1, dtype=response_mask.dtype)  # (N, 1): the prompt is not read here
    data = DataProto.from_dict(
        tensors={"responses": response_ids, "attention_mask": torch.cat([prompt_mask, response_mask], dim=1)},
        non_tensors={k: items[k] for k in ("data_source", "reward_model", "extra_info", "raw_prompt")
                     if isinstance(items.get(k), np.ndarray)})
    return asyncio.get_event_loop().run_until_complete(worker.compute_score_batch(data))


def check_rewards(folder: str, cfg, dataset, cases: list[dict], tokenizer) -> None:
    import numpy as np

    started = time.perf_counter()
    outputs = score_with_verl(cfg, dataset, cases, tokenizer)
    seconds = time.perf_counter() - started
    stage_metric = "score" if cases[0]["export"] != "rlvr" else "acc"
    parts = {"score", "similarity", "format_ok"} if stage_metric == "score" else {"score", "acc"}
    differ = [(c["kind"], c["expected"], o["reward_score"]) for c, o in zip(cases, outputs)
              if o["reward_score"] != c["expected"]]
    check(not differ, f"{folder}: {len(differ)} of {len(cases)} verl scores differ from srl train's: {differ[:3]}")
    check(all(set(o["reward_extra_info"]) >= parts for o in outputs), f"{folder}: logged parts missing")
    kinds = defaultdict(list)
    for c in cases:
        kinds[c["kind"]].append(c["expected"])
    print(f"  reward: RewardLoopWorker scored {len(cases)} completions in {seconds:.1f} s; "
          f"{len(cases) - len(differ)} equal srl train's reward exactly")
    print("    mean reward by kind: " + ", ".join(f"{k} {sum(v) / len(v):.3f}" for k, v in kinds.items()))

    groups = defaultdict(list)
    for c, o in zip(cases, outputs):
        groups[c["group"]].append((c["ours_keep_group"], o["reward_extra_info"][stage_metric]))
    verl_keep = {g: not (len(v) > 1 and float(np.std([x for _, x in v])) == 0.0) for g, v in groups.items()}
    ours_keep = {g: v[0][0] for g, v in groups.items()}
    disagree = [g for g in groups if verl_keep[g] != ours_keep[g]]
    check(not disagree, f"{folder}: verl's group filter and ours disagree on groups {disagree}")
    print(f"  dynamic sampling: {sum(verl_keep.values())}/{len(groups)} groups kept by verl's filter "
          f"(metric {stage_metric}), {sum(ours_keep.values())} by ours (std > 1e-6); same decision on all")


def check_legacy_key_trap(folder: str) -> None:
    from verl.trainer.ppo.reward import get_custom_reward_fn

    overrides = [o for o in script_overrides(folder) if not o.startswith("reward.custom_reward_function.path")]
    legacy = compose(folder, overrides + [f"custom_reward_function.path={folder}/srl_reward.py"])
    check(get_custom_reward_fn(legacy) is None, "the legacy top-level key is no longer ignored: update the docs")
    print("  trap: top-level custom_reward_function.path composes but get_custom_reward_fn ignores it (None)")


def main(work: str) -> int:
    import verl
    from transformers import AutoTokenizer

    print(f"verl {verl.__version__} from {os.path.dirname(verl.__file__)}")
    tokenizer_dir = os.path.join(work, "tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    with open(os.path.join(work, "cases.jsonl"), encoding="utf-8") as f:
        cases = [json.loads(line) for line in f]
    by_export = defaultdict(list)
    for c in cases:
        by_export[c["export"]].append(c)
    roundtrip = sum(tokenizer.decode(tokenizer.encode(c["completion"], add_special_tokens=False),
                                     skip_special_tokens=True) == c["completion"] for c in cases)
    check(roundtrip == len(cases), f"the tokenizer round-trips {roundtrip}/{len(cases)} completions")
    for name, export_cases in by_export.items():
        folder = os.path.abspath(os.path.join(work, name))
        print(f"{name}:")
        cfg = check_config(folder, tokenizer_dir)
        dataset = check_dataset(folder, cfg, tokenizer)
        check_rewards(folder, cfg, dataset, export_cases, tokenizer)
    check_legacy_key_trap(os.path.abspath(os.path.join(work, "srl_required")))
    print(f"verl-check: {len(cases)} completions, {len(by_export)} exports: "
          + ("PASSED" if not FAILURES else f"{len(FAILURES)} FAILED"))
    return 1 if FAILURES else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1]))
