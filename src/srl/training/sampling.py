"""Dynamic sampling (Section 3 of the paper; DAPO's filter for the RLVR stage): keep a prompt's group of G
rollouts only if its rewards vary, and refill the batch with fresh prompts until it holds enough informative
groups.

The pieces here are pure functions over tensors, so that `SRLTrainer` only has to call them:

- `informative_groups(rewards, G, eps)`: which groups to keep (population std of rewards > eps);
- `concat_rows` / `take_rows`: stack the per-row tensors of several generation rounds (prompts are left-padded,
  completions right-padded, so they are padded on those sides) and cut the batch out of them.

A group of SRL step rewards has zero std when all G actions are equally (dis)similar to the expert step, e.g.
all break the format (-1). For the binary outcome reward of RLVR, std > 0 is exactly DAPO's "neither all
correct nor all wrong".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Per-row tensors TRL's GRPOTrainer returns, and on which side each is padded (True: left).
LEFT_PADDED = ("prompt_ids", "prompt_mask")
RIGHT_PADDED = ("completion_ids", "completion_mask", "tool_mask", "old_per_token_logps", "ref_per_token_logps",
                "sampling_per_token_logps", "importance_sampling_ratio")


def group_std(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """Population standard deviation of each group of `group_size` consecutive rewards.

    rewards: (num_groups * G,) -> (num_groups,). Computed in float64 so that G equal values give exactly 0.
    """
    grouped = rewards.detach().to(torch.float64).view(-1, group_size)  # (num_groups, G)
    return grouped.std(dim=1, unbiased=False)


def informative_groups(rewards: torch.Tensor, group_size: int, eps: float = 1e-6) -> torch.Tensor:
    """Bool mask (num_groups,): True for groups whose population reward std exceeds `eps` (the paper's
    dynamic sampling). NaN rewards (unscorable completions) count as missing.

    >>> informative_groups(torch.tensor([1., 1., 0., 1., -1., -1.]), 2).tolist()
    [False, True, False]
    """
    rewards = torch.nan_to_num(rewards.detach().to(torch.float64), nan=0.0)
    return group_std(rewards, group_size) > eps


def pad_width(t: torch.Tensor, width: int, value, left: bool) -> torch.Tensor:
    """Pad the second dimension of `t` (rows, length[, ...]) to `width`, on the left or the right."""
    missing = width - t.size(1)
    if missing <= 0:
        return t
    pad = [0, 0] * (t.dim() - 2) + ([missing, 0] if left else [0, missing])
    return F.pad(t, pad, value=value)


def concat_rows(chunks: list[dict[str, torch.Tensor]], pad_values: dict[str, float]) -> dict[str, torch.Tensor]:
    """Concatenate dicts of per-row tensors along rows, padding sequence tensors to a common length on the
    side TRL pads them (`LEFT_PADDED` on the left, others on the right) with `pad_values[key]` (default 0)."""
    out = {}
    for key in chunks[0]:
        tensors = [c[key] for c in chunks]
        if tensors[0].dim() >= 2 and (key in LEFT_PADDED or key in RIGHT_PADDED):
            width = max(t.size(1) for t in tensors)
            tensors = [pad_width(t, width, pad_values.get(key, 0), key in LEFT_PADDED) for t in tensors]
        out[key] = torch.cat(tensors, dim=0)
    return out


def take_rows(batch: dict[str, torch.Tensor], rows: torch.Tensor | slice) -> dict[str, torch.Tensor]:
    """Select rows of every per-row tensor."""
    return {k: v[rows] for k, v in batch.items()}


def trim_padding(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop columns that are padding in every row (left for prompts, right for completions), so a batch cut
    out of longer rounds is no wider than it needs to be."""
    out = dict(batch)
    if "prompt_mask" in batch and batch["prompt_mask"].numel():
        used = batch["prompt_mask"].any(dim=0).nonzero()
        first = int(used[0]) if len(used) else batch["prompt_mask"].size(1)
        for key in LEFT_PADDED:
            if key in out:
                out[key] = out[key][:, first:]
    if "completion_mask" in batch and batch["completion_mask"].numel():
        used = batch["completion_mask"].any(dim=0).nonzero()
        last = int(used[-1]) + 1 if len(used) else 1
        for key in RIGHT_PADDED:
            if key in out and out[key].dim() >= 2 and out[key].size(1) == batch["completion_mask"].size(1):
                out[key] = out[key][:, :last]
    return out
