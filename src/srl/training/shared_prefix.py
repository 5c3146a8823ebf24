"""Shared-prefix log-probs: each distinct prompt of a batch forwarded once for the consecutive rows that share it.

TRL's layout repeats a prompt in each of its G rows, so the loss forwards and back-propagates it G times. SRL's
prompts (system prompt + problem + the expert's earlier steps, hundreds of tokens) are long and its actions short,
so most of that work is duplicated. Here, for a batch whose runs of consecutive rows share a prompt, two forwards:

1. the distinct prompts (one per run), left-padded together, without their last token, with gradient when the
   caller needs one; their KV cache is kept;
2. the cache is indexed to one copy per row (`index_select` on the batch axis: gradients flow back into the one
   prompt forward) and `[last prompt token | completion]` is forwarded on top of it, with position ids continuing
   each prompt's and an attention mask over [prompt | completion], through TRL's fused LM head
   (`fused_lm_head=True`: the same temperature), which scores the first completion token from the prompt's last
   position and every other one from the token before it. The LM head and its log-softmax run over these
   completion positions only (the prompt forward keeps one position's logits; padding after a completion's end is
   not scored), in vocabulary tiles (no `(rows, width, vocab)` logits): on a GPU TRL's kernel, on a CPU
   `srl.training.lm_head` (the same values in three products where TRL's kernel does four). On a CPU grouped-query
   attention runs without transformers' `repeat_kv` copy of the cache (`gqa_without_copies`), as in the shared
   prefill's decoding.

Always two forwards per chunk of rows, whatever the data: under DDP every process must run the same number of
forwards (each one may broadcast buffers).

The result is TRL's `(log-probs, entropies)` of shape (rows, completion width), zero where the completion is
padding, as TRL's: equal within float tolerance (rotary position embeddings only see relative positions, so
where the padding sits changes rounding, not values). No 4-D attention mask is needed on this route.

`unsupported_reason` says why a batch cannot take this route (the trainer then uses TRL's own layout).
"""

from __future__ import annotations

import torch

from srl.generation.shared_prefill import gqa_without_copies, prompt_runs
from srl.training.lm_head import cpu_lm_head


class NoCache(RuntimeError):
    """The model returned no KV cache for a prompt: the caller falls back to TRL's layout."""


def group_permutation(runs: list[tuple[int, int]], generator: torch.Generator | None = None) -> torch.Tensor:
    """A random order of the rows that keeps each run (a group, or a group's part on this process) whole and in
    order: TRL shuffles rows before cutting a generation batch into micro-batches, which splits groups. It draws
    the same `randperm(rows)` as TRL's shuffle (runs are ordered by their first row's draw), so the random stream
    advances as in TRL's layout, by the same amount on every process.

    >>> group_permutation([(0, 2), (2, 3), (3, 5)], torch.Generator().manual_seed(0)).tolist()
    [2, 3, 4, 0, 1]
    """
    draw = torch.randperm(runs[-1][1] if runs else 0, generator=generator)
    order = sorted(range(len(runs)), key=lambda i: int(draw[runs[i][0]]))
    return torch.tensor([row for i in order for row in range(*runs[i])], dtype=torch.long)


def permute_rows(batch: dict, permutation: torch.Tensor) -> dict:
    """`batch` (TRL's dict of per-row tensors and lists, and scalars) with its rows in `permutation`'s order,
    as TRL's `shuffle_sequence_dict` permutes them."""
    def permute(value):
        if value is None or (isinstance(value, torch.Tensor) and value.ndim == 0):
            return value
        if isinstance(value, torch.Tensor):
            return value[permutation.to(value.device)]
        return [value[i] for i in permutation.tolist()]

    return {key: permute(value) for key, value in batch.items()}


def shares_prompts(runs: list[tuple[int, int]]) -> bool:
    """Whether some rows share a prompt (else the shared route saves nothing)."""
    return any(end - start > 1 for start, end in runs)


def unsupported_reason(model, prompt_mask: torch.Tensor) -> str | None:
    """Why the shared-prefix route cannot run this model or batch (None when it can)."""
    if not bool((prompt_mask[:, 1:] >= prompt_mask[:, :-1]).all()) or not bool(prompt_mask[:, -1].all()):
        return "the prompts are not left-padded"
    config = getattr(unwrap(model), "config", None)
    if config is None:
        return "the model has no config"
    text = config.get_text_config(decoder=True)
    layer_types = getattr(text, "layer_types", None) or []
    sliding = getattr(text, "sliding_window", None) is not None and getattr(text, "use_sliding_window", True)
    if any(t != "full_attention" for t in layer_types) or sliding:  # a sliding layer's cache drops early keys
        return "the model has sliding-window or non-standard attention layers"
    return None


def shared_prefix_logps(model, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, completion_ids: torch.Tensor,
                        completion_mask: torch.Tensor, *, batch_size: int | None = None,
                        compute_entropy: bool = False, runs: list[tuple[int, int]] | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-token log-probs (and entropies) of the completions, each distinct prompt forwarded once per chunk.

    `model` is the (possibly wrapped: DDP, PEFT) causal LM that TRL patched with its fused LM head. Rows are
    scored in chunks of `batch_size` (all at once when None), as TRL chunks them. Returns tensors of shape
    (rows, completion width)."""
    rows = prompt_ids.size(0)
    runs = prompt_runs(prompt_ids, prompt_mask) if runs is None else runs
    step = batch_size or rows
    logps, entropies = [], []
    for a in range(0, rows, step):
        b = min(a + step, rows)
        chunk_runs = [(max(s, a) - a, min(e, b) - a) for s, e in runs if s < b and e > a]
        with gqa_without_copies(prompt_ids.device):  # no `repeat_kv` copy of the rows' prompt cache (CPU)
            lp, ent = _score_chunk(model, prompt_ids[a:b], prompt_mask[a:b], completion_ids[a:b],
                                   completion_mask[a:b], chunk_runs, compute_entropy)
        logps.append(lp)
        entropies.append(ent)
    return torch.cat(logps), (torch.cat(entropies) if compute_entropy else None)


def _score_chunk(model, prompt_ids, prompt_mask, completion_ids, completion_mask, runs, compute_entropy):
    from transformers import DynamicCache

    n, width = completion_ids.shape
    first = torch.tensor([s for s, _ in runs], device=prompt_ids.device)
    row_run = torch.repeat_interleave(torch.arange(len(runs), device=prompt_ids.device),
                                      torch.tensor([e - s for s, e in runs], device=prompt_ids.device))
    keep = prompt_mask[first].any(dim=0).nonzero()  # drop the columns that are padding in every distinct prompt
    start = int(keep[0]) if keep.numel() else prompt_mask.size(1) - 1
    prefix_ids, prefix_mask = prompt_ids[first, start:-1], prompt_mask[first, start:-1]
    lengths = prompt_mask.sum(dim=1)  # per row, last token included
    cache, past_mask = None, prefix_mask[row_run]
    if prefix_ids.size(1) > 0:
        out = model(input_ids=prefix_ids, attention_mask=prefix_mask,
                    position_ids=(prefix_mask.cumsum(dim=1) - 1).clamp(min=0), use_cache=True, logits_to_keep=1)
        if out.past_key_values is None:
            raise NoCache("the model returned no KV cache")
        cache = DynamicCache(ddp_cache_data=[(layer.keys.index_select(0, row_run),
                                              layer.values.index_select(0, row_run))
                                             for layer in out.past_key_values.layers])
    input_ids = torch.cat([prompt_ids[:, -1:], completion_ids], dim=1)
    ones = torch.ones(n, 1, dtype=completion_mask.dtype, device=completion_mask.device)
    attention_mask = torch.cat([past_mask.to(completion_mask.dtype), ones, completion_mask], dim=1)
    position_ids = (lengths - 1).unsqueeze(1) + torch.arange(width + 1, device=input_ids.device).unsqueeze(0)
    labels = input_ids.masked_fill(torch.cat([ones, completion_mask], dim=1) == 0, -100)
    labels[:, 0] = -100
    with cpu_lm_head(labels[:, 1:] != -100):  # on a CPU: 3 products, not TRL's 4; only labelled positions
        out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                    past_key_values=cache, labels=labels, fused_lm_head=True)
    return out.log_probs, (out.entropy if compute_entropy else None)


def shared_prefill_unavailable(trainer, prompt_ids, images, multimodal_fields) -> str | None:
    """Why a `SRLTrainer` generates these rows with TRL's `generate` ("" when the user chose it), or None for
    the shared prefill (srl.generation.shared_prefill)."""
    from srl.generation.shared_prefill import unsupported

    if not trainer.args.shared_prefix or trainer.use_vllm:  # vLLM: the engine's prefix cache shares the prefill
        return ""
    if trainer.use_transformers_continuous_batching:
        return "transformers' continuous batching"
    if images is not None or multimodal_fields:
        return "multimodal inputs"
    if len(prompt_runs(prompt_ids)) == len(prompt_ids):
        return ""  # nothing to share (e.g. the think budget's second pass): `generate` as TRL
    return unsupported(unwrap(trainer.model), trainer.generation_config)


def shared_prefill_rollouts(trainer, prompt_ids) -> list[list[int]]:
    """TRL's regular transformers generation (`_generate_single_turn`), each distinct prompt prefilled once."""
    from trl.models import unwrap_model_for_generation

    from srl.generation.shared_prefill import generate_shared

    with (unwrap_model_for_generation(trainer.model_wrapped, trainer.accelerator,
                                      gather_deepspeed3_params=trainer.args.ds3_gather_for_generation,
                                      generation_kwargs=trainer.generation_kwargs,
                                      gradient_checkpointing_kwargs=trainer.args.gradient_checkpointing_kwargs)
          as model, torch.no_grad(), trainer._dist.summon_full_params(trainer.model_wrapped, recurse=False)):
        return generate_shared(model, prompt_ids, trainer.generation_config, eos_ids=trainer.eos_token_ids,
                               pad_id=trainer._tokenizer.pad_token_id)


def unwrap(model):
    """The transformers model under DDP / PEFT wrappers."""
    model = getattr(model, "module", model)
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    return model
