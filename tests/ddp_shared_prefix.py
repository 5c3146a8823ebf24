"""Run by tests/test_distributed.py under `torchrun --nproc_per_node 2` (CPU, gloo): SRLTrainer with shared prefixes
where each process holds 6 rows and G=4, so one prompt's group straddles the two processes. It trains 2 steps (DDP
through the shared-prefix forwards), then computes the loss of its last micro-batch through the DDP-wrapped model
with --shared_prefix false and true; each process writes both all-reduced gradients to <out>/rank<r>.pt."""

import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from test_shared_prefix import FixedRollouts, make_trainer, parity_reward  # noqa: E402
from srl.generation.shared_prefill import prompt_runs  # noqa: E402


def main(out_dir):
    trainer = make_trainer(out_dir, reward=parity_reward, trainer_class=FixedRollouts, per_device_train_batch_size=6,
                           max_steps=2, max_generation_rounds=20, beta=0.0, top_entropy_quantile=1.0,
                           ddp_find_unused_parameters=False)
    trainer.micro_batches = []
    trainer.train()
    inputs = trainer._buffered_inputs[0]
    model = trainer.model_wrapped
    grads = {}
    for shared in (False, True):
        trainer.args.shared_prefix = shared
        model.zero_grad()
        trainer.compute_loss(model, inputs).backward()
        grads[shared] = {n: p.grad.clone() for n, p in model.named_parameters()}
    torch.save({"world": trainer.accelerator.num_processes, "runs": prompt_runs(inputs["prompt_ids"],
                                                                               inputs["prompt_mask"]),
                "grads": grads, "micro_batches": trainer.micro_batches},
               os.path.join(out_dir, f"rank{trainer.accelerator.process_index}.pt"))


if __name__ == "__main__":
    main(sys.argv[1])
