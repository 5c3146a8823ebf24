"""Generation with transformers: `generate_batch` generates one response per prompt (token ids), left-padded
into one batch, under `torch.inference_mode`, and stops at the model's end tokens (`end_token_ids`). When it
samples and consecutive prompts are identical (`srl eval`'s k samples of a problem), each distinct prompt is
prefilled once (`srl.generation.shared_prefill`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from srl.errors import InputError
from srl.generation import Generation


def end_token_ids(tokenizer, model=None) -> list[int]:
    """The ids that end a response: the tokenizer's eos first, then any other eos of the model's generation
    config (e.g. a base model's `<|endoftext|>` next to the chat `<|im_end|>`)."""
    ids: list[int] = []
    if tokenizer.eos_token_id is not None:
        ids.append(int(tokenizer.eos_token_id))
    extra = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for i in (extra if isinstance(extra, (list, tuple)) else [extra]):
        if i is not None and int(i) not in ids:
            ids.append(int(i))
    if not ids:
        raise InputError("the tokenizer has no end-of-sequence token", field="model")
    return ids


def generate_batch(model, tokenizer, batch: Sequence[list[int]], *, max_new_tokens: int, do_sample: bool,
                   temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0) -> list[Generation]:
    """Generate one response per prompt (token ids), left-padded into one batch."""
    import torch
    from transformers import GenerationConfig

    from srl.generation.shared_prefill import generate_shared, prompt_runs, unsupported

    eos = end_token_ids(tokenizer, model)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
    width = max(len(ids) for ids in batch)
    input_ids = torch.tensor([[pad] * (width - len(ids)) + list(ids) for ids in batch], dtype=torch.long)
    attention = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in batch], dtype=torch.long)
    options: dict[str, Any] = dict(max_new_tokens=max_new_tokens, do_sample=do_sample, pad_token_id=pad,
                                   eos_token_id=eos, use_cache=True)
    if do_sample:
        options.update(temperature=temperature, top_p=top_p, top_k=top_k)
    config = GenerationConfig(**options)
    device = next(model.parameters()).device
    if do_sample and len(prompt_runs(batch)) < len(batch) and unsupported(model, config) is None:
        with torch.inference_mode():  # k samples of a prompt: its prefill once (srl.generation.shared_prefill)
            new = generate_shared(model, batch, config, eos_ids=eos, pad_id=pad)
    else:
        with torch.inference_mode():
            out = model.generate(input_ids=input_ids.to(device), attention_mask=attention.to(device),
                                 generation_config=config)
        new = out[:, width:].tolist()
    results = []
    eos_set = set(eos)
    for row in new:
        end = next((i for i, t in enumerate(row) if t in eos_set), None)
        kept = row if end is None else row[:end]
        results.append(Generation(tokenizer.decode(kept, skip_special_tokens=True),
                                  len(row) if end is None else end + 1, end is None))
    return results
