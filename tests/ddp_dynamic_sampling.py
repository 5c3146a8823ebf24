"""Run by tests/test_distributed.py under `torchrun --nproc_per_node 2` (CPU, gloo): SRLTrainer with dynamic
sampling where each process holds 6 rows and G=4, so one prompt's rollouts straddle the two processes.
Each process writes what its training batches held to <out>/rank<r>.json."""

import json
import os
import random
import re
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from srl.training.config import SRLConfig  # noqa: E402
from srl.data.instances import InstanceOptions, to_dataset, trajectory_instances  # noqa: E402
from srl.rewards.format import OutputFormat  # noqa: E402
from srl.tiny import synthetic_trajectories, tiny_model, tiny_tokenizer  # noqa: E402
from srl.training.trainer import SRLTrainer  # noqa: E402


def start_value(text):
    return int(re.search(r"Start at (\d+)", text).group(1))


def parity_reward(completions, prompts, **kwargs):
    rng = random.Random()
    return [0.5 if start_value(p[-1]["content"]) % 2 == 0 else rng.random() for p in prompts]


class Recording(SRLTrainer):
    def _generate_and_score_completions(self, inputs):
        out = super()._generate_and_score_completions(inputs)
        if self.model.training:
            tok = self.processing_class
            self.records.append({
                "prompts": tok.batch_decode(out["prompt_ids"], skip_special_tokens=True),
                "advantages": out["advantages"].tolist(),
                "tool_mask": out["tool_mask"].sum(dim=1).tolist(),
                "tokens": int((out["completion_mask"] * out["tool_mask"]).sum()),
                "num_items_in_batch": int(out["num_items_in_batch"]),
            })
        return out


def main(out_dir):
    rows = [r for t in synthetic_trajectories(48) for r in trajectory_instances(t, InstanceOptions(think="off"))]
    tok = tiny_tokenizer()
    args = SRLConfig(output_dir=out_dir, use_cpu=True, bf16=False, per_device_train_batch_size=6, num_generations=4,
                     max_completion_length=6, max_steps=3, learning_rate=1e-3, save_strategy="no", seed=0,
                     dataloader_pin_memory=False, disable_tqdm=True, logging_steps=1, max_generation_rounds=20,
                     ddp_find_unused_parameters=False)
    trainer = Recording(model=tiny_model(tok), reward_funcs=[parity_reward], args=args,
                        train_dataset=to_dataset(rows), processing_class=tok, output_format=OutputFormat(think="off"))
    trainer.records = []
    trainer.train()
    rank = trainer.accelerator.process_index
    logs = [{k: v for k, v in h.items() if k.startswith("dynamic_sampling/")} for h in trainer.state.log_history]
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump({"world": trainer.accelerator.num_processes, "records": trainer.records, "logs": logs}, f)


if __name__ == "__main__":
    main(sys.argv[1])
