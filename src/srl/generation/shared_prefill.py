"""Rollouts with a shared prefill: each distinct prompt is prefilled once and its G continuations decoded from the
repeated KV cache (`generate` prefills every row's copy; `generate(num_return_sequences=G)` does not expand a cache
passed in).

`generate_shared(model, prompts, config)` takes one prompt (token ids) per row, as TRL's `_generate_single_turn`
and `srl.generation.hf.generate_batch` do, and returns each row's completion up to and including its first end
token, as TRL keeps it. It applies `generate`'s own logits processors (`model._get_logits_processor`, on `config`
as `generate` completes it) and accepts only those it knows (`SUPPORTED_PROCESSORS`: temperature, top-k, top-p,
min-p, repetition penalty, min_new_tokens); `unsupported(model, config)` says why another configuration must go
through `generate`. Greedy decoding takes the
argmax as `generate` does. Sampling draws from the same probabilities as `generate`'s softmax + `torch.multinomial`,
by inverse CDF (`sample`), which is exact and cheaper on a CPU (measured in docs/benchmarks.md).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from collections.abc import Sequence

import torch

SUPPORTED_PROCESSORS = {"TemperatureLogitsWarper", "TopKLogitsWarper", "TopPLogitsWarper", "MinPLogitsWarper",
                        "RepetitionPenaltyLogitsProcessor", "MinNewTokensLengthLogitsProcessor"}


def sample(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One token per row from `probs` (rows of non-negative weights), by inverse CDF: the first token whose
    cumulative weight exceeds u·total, u ~ U[0, 1). Exactly the distribution `torch.multinomial(probs, 1)` draws
    from; tokens of weight 0 are never drawn.

    >>> sample(torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 2.0]])).tolist()
    [1, 2]
    """
    cdf = probs.cumsum(dim=-1)
    u = torch.rand(probs.size(0), 1, generator=generator, device=probs.device, dtype=cdf.dtype) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).squeeze(1).clamp(max=probs.size(-1) - 1)


def prompt_runs(prompts: Sequence[Sequence[int]] | torch.Tensor, mask: torch.Tensor | None = None
                ) -> list[tuple[int, int]]:
    """(start, end) of each run of consecutive rows with the same prompt: `prompts` are token ids, one row per
    prompt (lists, or a padded tensor compared as a whole on its device, where `mask`, its attention mask, must
    match too). The one definition of "rows that share a prompt", for rollouts (`generate_shared`) and for the
    trainer's log-probs (`srl.training.shared_prefix`).

    >>> prompt_runs([[1, 2], [1, 2], [3], [1, 2]])
    [(0, 2), (2, 3), (3, 4)]
    >>> ids = torch.tensor([[0, 5, 6], [0, 5, 6], [7, 8, 9], [0, 5, 6]])
    >>> prompt_runs(ids, (ids != 0).long())
    [(0, 2), (2, 3), (3, 4)]
    """
    rows = len(prompts)
    if isinstance(prompts, torch.Tensor):
        same = prompts[1:] == prompts[:-1]
        if mask is not None:
            same &= mask[1:] == mask[:-1]
        same = same.all(dim=1).tolist()
    else:
        same = [list(a) == list(b) for a, b in zip(prompts[1:], prompts[:-1])]
    starts = [0] + [i + 1 for i, s in enumerate(same) if not s] if rows else []
    return list(zip(starts, starts[1:] + [rows]))


def _prepared(model, config, prompt_width: int):
    """`config` as `generate` completes it (the model's generation config for unset fields, the special tokens),
    and the logits processors `generate` builds from it."""
    device = next(model.parameters()).device
    config, _ = model._prepare_generation_config(config)
    model._prepare_special_tokens(config, True, device=device)
    processors = model._get_logits_processor(generation_config=config, input_ids_seq_length=prompt_width,
                                             encoder_input_ids=None, prefix_allowed_tokens_fn=None,
                                             logits_processor=None, device=device)
    return config, processors


def unsupported(model, config) -> str | None:
    """Why `generate_shared` cannot reproduce `generate` with `config` (None when it can)."""
    if getattr(config, "num_beams", 1) not in (None, 1) or getattr(config, "num_return_sequences", 1) not in (None, 1):
        return "beam search or num_return_sequences"
    if getattr(config, "cache_implementation", None) not in (None, "dynamic"):
        return f"cache_implementation={config.cache_implementation}"
    if getattr(config, "max_new_tokens", None) is None:
        return "no max_new_tokens"
    try:
        names = {type(p).__name__ for p in _prepared(model, config, 1)[1]}
    except Exception as e:  # a transformers release that changed the private helper: generate() is the safe path
        return f"transformers' logits processors could not be built here ({type(e).__name__})"
    unknown = sorted(names - SUPPORTED_PROCESSORS)
    return f"logits processors {unknown}" if unknown else None


# True inside `gqa_without_copies` in this thread (or asyncio task): the switch below is read per context, so a
# forward in another thread keeps transformers' own choice.
_GQA_ON_CPU = contextvars.ContextVar("srl_gqa_on_cpu", default=False)


def _install_gqa_switch(sdpa_attention) -> None:
    """Wrap transformers' `use_gqa_in_sdpa` once: inside `gqa_without_copies` (this context only) grouped-query
    heads go to torch with a mask too; everywhere else the original decides."""
    original = sdpa_attention.use_gqa_in_sdpa
    if getattr(original, "srl_switch", False):
        return

    def use_gqa_in_sdpa(attention_mask, key, value, *args, **kwargs):
        if _GQA_ON_CPU.get():
            return key.shape[-1] == value.shape[-1] <= 256
        return original(attention_mask, key, value, *args, **kwargs)

    use_gqa_in_sdpa.srl_switch = True
    use_gqa_in_sdpa.original = original
    sdpa_attention.use_gqa_in_sdpa = use_gqa_in_sdpa


@contextlib.contextmanager
def gqa_without_copies(device: torch.device):
    """On a CPU, let transformers' sdpa attention hand grouped-query heads to torch (`enable_gqa`) with a mask too.
    transformers only does so without a mask (for CUDA, where a mask sends GQA to the slow math kernel) and
    otherwise copies every layer's whole KV cache to the query heads' count at every decoding step: 8.0 of 19.0 s
    of a 32-row SmolLM2 decode here. torch's CPU kernel takes the mask, forward and backward; the outputs are the
    same (tests/test_shared_prefill.py compares them with `generate`, tests/test_shared_prefix.py the loss and
    gradients with TRL's layout). Used by the shared prefill's decoding and by the shared-prefix loss
    (srl.training.shared_prefix). Scoped to this context's forwards: other threads are not affected."""
    try:
        from transformers.integrations import sdpa_attention
    except ImportError:
        sdpa_attention = None
    if device.type != "cpu" or getattr(sdpa_attention, "use_gqa_in_sdpa", None) is None:
        yield
        return
    _install_gqa_switch(sdpa_attention)
    token = _GQA_ON_CPU.set(True)
    try:
        yield
    finally:
        _GQA_ON_CPU.reset(token)


def rows_per_cache(cache, groups: list[tuple[int, int]], row_group: torch.Tensor, room: int) -> None:
    """Give each row of `groups` (runs of rows) a copy of its distinct prompt's entry in `cache` (the prefill's
    DynamicCache, one entry per run), in buffers with `room` more positions that decoding then fills in place.
    transformers' DynamicLayer grows by `torch.cat`, re-allocating and copying every layer's whole cache at every
    step: 7.0 of 21.0 s of a 32-row, 24-token SmolLM2 decode here (docs/benchmarks.md). Layers of another kind
    (sliding windows) are indexed as `generate` does."""
    from transformers.cache_utils import DynamicLayer

    for i, layer in enumerate(cache.layers):
        if type(layer) is DynamicLayer and layer.is_initialized and layer.keys.numel():
            cache.layers[i] = _preallocated_layer()(layer.keys, layer.values, groups, room)
        else:
            layer.batch_select_indices(row_group)


@functools.cache
def _preallocated_layer():
    from transformers.cache_utils import DynamicLayer

    class PreallocatedLayer(DynamicLayer):
        """A DynamicLayer whose keys and values are views of buffers with room to grow (see `rows_per_cache`)."""

        def __init__(self, keys, values, groups, room):
            super().__init__()
            self.dtype, self.device, self.is_initialized = keys.dtype, keys.device, True
            self.length = keys.size(-2)
            rows = groups[-1][1]
            self.buffers = []
            for states in (keys, values):
                buffer = states.new_empty((rows, states.size(1), self.length + room, states.size(-1)))
                for g, (start, end) in enumerate(groups):  # broadcast: no per-row temporary
                    buffer[start:end, :, :self.length] = states[g]
                self.buffers.append(buffer)
            self.keys, self.values = (b[:, :, :self.length] for b in self.buffers)

        def update(self, key_states, value_states, *args, **kwargs):
            new = key_states.size(-2)
            if self.length + new > self.buffers[0].size(-2):  # past the room asked for: grow as DynamicLayer
                return super().update(key_states, value_states, *args, **kwargs)
            for buffer, states in zip(self.buffers, (key_states, value_states)):
                buffer[:, :, self.length:self.length + new] = states
            self.length += new
            self.keys, self.values = (b[:, :, :self.length] for b in self.buffers)
            return self.keys, self.values

    return PreallocatedLayer


# --- decoding over one copy of each prompt's cache (CPU) ------------------------------------------------------
# The cache of `shared_prompt_cache` inside `attend_shared_prompts`, in this thread (or asyncio task).
_SHARED_CACHE = contextvars.ContextVar("srl_shared_prompt_cache", default=None)


def shares_prompt_cache(model, groups: list[tuple[int, int]], cache) -> bool:
    """Whether decoding can attend over one copy of each distinct prompt's cache (`shared_prompt_cache`): on a
    CPU (where decoding attention reads the whole cache at every token: the copies cost memory traffic), with
    transformers' sdpa attention, no attention soft-capping, full-attention layers, and groups of equal size."""
    from transformers.cache_utils import DynamicLayer

    config = model.config.get_text_config(decoder=True)
    return (cache.layers[0].keys.device.type == "cpu" and getattr(config, "_attn_implementation", None) == "sdpa"
            and getattr(config, "attn_logit_softcapping", None) is None and len({e - s for s, e in groups}) == 1
            and all(type(layer) is DynamicLayer and layer.is_initialized for layer in cache.layers))


def shared_prompt_cache(cache, groups: list[tuple[int, int]], prompt_mask: torch.Tensor, room: int) -> None:
    """Turn the prefill's cache (one entry per distinct prompt, all groups of equal size) into layers that keep
    that one entry and each row's new tokens apart (`SharedPromptLayer`): no per-row copy of the prompts. Decode
    inside `attend_shared_prompts(cache)`."""
    rows = groups[-1][1]
    for i, layer in enumerate(cache.layers):
        cache.layers[i] = _shared_prompt_layer()(layer.keys, layer.values, prompt_mask.bool(), rows, room)


@contextlib.contextmanager
def attend_shared_prompts(cache):
    """Inside, transformers' sdpa attention over a `SharedPromptLayer` attends each row's query to its prompt's one
    cache entry and to its own new tokens, in one softmax (the same values as attention over the row's copy)."""
    _install_shared_attention()
    token = _SHARED_CACHE.set(cache)
    try:
        yield
    finally:
        _SHARED_CACHE.reset(token)


def _install_shared_attention() -> None:
    """Wrap transformers' "sdpa" attention function once: inside `attend_shared_prompts` (this context only), a
    layer of the current cache that is a `SharedPromptLayer` attends by `attend`; everywhere else the original."""
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if getattr(AttentionInterface._global_mapping.get("sdpa"), "srl_switch", False):
        return

    def sdpa_or_shared(module, query, key, value, attention_mask, *args, **kwargs):
        cache = _SHARED_CACHE.get()
        layer = cache.layers[module.layer_idx] if cache is not None else None
        if isinstance(layer, _shared_prompt_layer()) and query.size(2) == 1:
            return layer.attend(query, kwargs.get("scaling")), None
        return sdpa_attention_forward(module, query, key, value, attention_mask, *args, **kwargs)

    sdpa_or_shared.srl_switch = True
    AttentionInterface.register("sdpa", sdpa_or_shared)


@functools.cache
def _shared_prompt_layer():
    from transformers.cache_utils import DynamicLayer

    class SharedPromptLayer(DynamicLayer):
        """One cache entry per distinct prompt, (groups, kv heads, prompt width, head dim) with its padding mask,
        and each row's new tokens in a buffer with room for them. Rows are grouped: rows [g*n, (g+1)*n) continue
        prompt g. `keys`/`values` are the new tokens' (what `update` returns); lengths count the prompt too."""

        def __init__(self, keys, values, prompt_mask, rows, room):
            super().__init__()
            self.dtype, self.device, self.is_initialized = keys.dtype, keys.device, True
            self.prompt_keys, self.prompt_values, self.new = keys, values, 0
            n = rows // keys.size(0)  # the rows' prompt padding, as an additive mask (0 or -inf)
            self.padding = torch.zeros(prompt_mask.shape, dtype=torch.float32, device=keys.device).masked_fill_(
                ~prompt_mask, float("-inf")).repeat_interleave(n, dim=0)[:, None, None, :]
            shape = (rows, keys.size(1), max(room, 1), keys.size(-1))
            self.buffers = [keys.new_empty(shape), values.new_empty(shape)]
            self.keys, self.values = (b[:, :, :0] for b in self.buffers)

        def update(self, key_states, value_states, *args, **kwargs):
            n = key_states.size(-2)
            if self.new + n > self.buffers[0].size(-2):  # past the room asked for: twice as much
                self.buffers = [torch.cat([b[:, :, :self.new], b.new_empty(b.shape[:2] + (self.new + 2 * n,) +
                                                                          b.shape[3:])], dim=2) for b in self.buffers]
            for buffer, states in zip(self.buffers, (key_states, value_states)):
                buffer[:, :, self.new:self.new + n] = states
            self.new += n
            self.keys, self.values = (b[:, :, :self.new] for b in self.buffers)
            return self.keys, self.values

        def get_seq_length(self) -> int:
            return self.prompt_keys.size(-2) + self.new

        def attend(self, query, scaling):
            """Attention of one new query per row, (rows, heads, 1, head dim), over its prompt's entry and its own
            new tokens: one softmax over both; returns (rows, 1, heads, head dim) as transformers' sdpa does."""
            rows, heads, _, dim = query.shape
            groups, kv_heads, width = self.prompt_keys.size(0), self.prompt_keys.size(1), self.prompt_keys.size(2)
            n, rep = rows // groups, heads // kv_heads
            scaling = dim ** -0.5 if scaling is None else scaling
            q = query.view(groups, n, kv_heads, rep, dim).transpose(1, 2).reshape(groups, kv_heads, n * rep, dim)

            def to_rows(x):  # (groups, kv heads, n * rep, k) -> (rows, kv heads, rep, k)
                return x.view(groups, kv_heads, n, rep, -1).transpose(1, 2).reshape(rows, kv_heads, rep, -1)

            prompt = to_rows(torch.matmul(q, self.prompt_keys.transpose(-1, -2))).float().mul_(scaling)
            prompt.add_(self.padding)
            own = torch.matmul(query.view(rows, kv_heads, rep, dim), self.keys.transpose(-1, -2)).float()
            probs = torch.softmax(torch.cat([prompt, own.mul_(scaling)], dim=-1), dim=-1).to(query.dtype)
            on_prompt = probs[..., :width].reshape(groups, n, kv_heads, rep, width).transpose(1, 2)
            out = torch.matmul(on_prompt.reshape(groups, kv_heads, n * rep, width), self.prompt_values)
            out = to_rows(out) + torch.matmul(probs[..., width:], self.values)
            return out.reshape(rows, 1, heads, dim)

    return SharedPromptLayer


@torch.no_grad()
def generate_shared(model, prompts: Sequence[Sequence[int]], config, *, eos_ids: Sequence[int], pad_id: int,
                    generator: torch.Generator | None = None) -> list[list[int]]:
    """One completion per row of `prompts` (token ids), each distinct run of identical prompts prefilled once.
    Returns each completion up to and including its first token of `eos_ids` (at most `config.max_new_tokens`)."""
    device = next(model.parameters()).device
    with gqa_without_copies(device):
        return _generate_shared(model, prompts, config, eos_ids, pad_id, generator, device)


def _generate_shared(model, prompts, config, eos_ids, pad_id, generator, device) -> list[list[int]]:
    groups = prompt_runs(prompts)
    distinct = [list(prompts[s]) for s, _ in groups]
    row_group = torch.tensor([g for g, (s, e) in enumerate(groups) for _ in range(s, e)], device=device)
    width = max(len(p) for p in distinct)
    ids = torch.tensor([[pad_id] * (width - len(p)) + p for p in distinct], device=device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in distinct], device=device)
    out = model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(dim=1) - 1).clamp(min=0),
                use_cache=True, logits_to_keep=1)
    cache = out.past_key_values
    shared = shares_prompt_cache(model, groups, cache)
    if shared:  # no copies: each row attends to its prompt's one entry
        shared_prompt_cache(cache, groups, mask, room=config.max_new_tokens)
    else:  # one copy of its prompt's cache per row
        rows_per_cache(cache, groups, row_group, room=config.max_new_tokens)
    logits = out.logits[:, -1].float()[row_group]
    sequences, attention = ids[row_group], mask[row_group]
    positions = attention.sum(dim=1)
    config, processors = _prepared(model, config, width)
    eos = torch.tensor(list(eos_ids), device=device)
    finished = torch.zeros(len(prompts), dtype=torch.bool, device=device)
    new = []
    with attend_shared_prompts(cache) if shared else contextlib.nullcontext():
        for step in range(config.max_new_tokens):
            scores = processors(sequences, logits)
            token = sample(torch.softmax(scores, dim=-1), generator) if config.do_sample else scores.argmax(dim=-1)
            token = torch.where(finished, torch.full_like(token, pad_id), token)
            new.append(token)
            finished |= torch.isin(token, eos)
            if bool(finished.all()) or step + 1 == config.max_new_tokens:
                break
            sequences = torch.cat([sequences, token[:, None]], dim=1)
            attention = torch.cat([attention, torch.ones_like(attention[:, :1])], dim=1)
            out = model(input_ids=token[:, None], attention_mask=attention, position_ids=positions[:, None],
                        past_key_values=cache, use_cache=True)
            positions = positions + 1
            logits = out.logits[:, -1].float()
    tokens = torch.stack(new, dim=1).tolist() if new else [[] for _ in prompts]
    eos_set = set(int(i) for i in eos_ids)
    return [row[:next((i + 1 for i, t in enumerate(row) if t in eos_set), len(row))] for row in tokens]
