"""Rollouts with a shared prefill (issue 11, item 2): greedy outputs identical to `generate`, sampling from the same
distribution (the inverse-CDF sampler against exact probabilities, and a model's first-token distribution after
generate's own logits processors), end tokens and max_new_tokens handled as TRL keeps completions, and the
trainer's hf backend and `srl eval`'s k samples going through it."""

import pytest
import torch
from transformers import GenerationConfig

from srl.generation.hf import generate_batch
from srl.generation.shared_prefill import generate_shared, prompt_runs, rows_per_cache, sample, unsupported
from srl.tiny import tiny_model, tiny_tokenizer


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def sharp_model(tok, arch="llama"):
    """A random tiny model with large weights, so that greedy decoding writes varied tokens (a default-initialised
    one repeats a single token)."""
    if arch == "llama":
        model = tiny_model(tok)
    else:
        from test_shared_prefix import tiny_qwen2

        model = tiny_qwen2(tok)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(8)
    return model.eval()


def prompts(tok, lengths=(7, 12, 3), G=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    distinct = [torch.randint(3, len(tok), (n,), generator=g).tolist() for n in lengths]
    return [p for p in distinct for _ in range(G)]


def trl_completions(model, tok, rows, config, eos):
    """`generate` on the left-padded rows, each completion cut after its first end token, as TRL keeps it."""
    width = max(len(r) for r in rows)
    ids = torch.tensor([[tok.pad_token_id] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=mask, generation_config=config)[:, width:].tolist()
    return [r[:next((i + 1 for i, t in enumerate(r) if t in eos), len(r))] for r in out]


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_greedy_outputs_equal_generate(tok, arch, monkeypatch):
    """(Both tiny models have grouped-query attention: 4 query heads, 2 KV heads.) Groups of equal size decode
    over one copy of each prompt's cache (`SharedPromptLayer`)."""
    from transformers.integrations import sdpa_attention

    from srl.generation.shared_prefill import _shared_prompt_layer

    layer, attended = _shared_prompt_layer(), []
    real = layer.attend
    monkeypatch.setattr(layer, "attend", lambda self, *a: attended.append(1) or real(self, *a))
    model = sharp_model(tok, arch)
    rows = prompts(tok)
    config = GenerationConfig(max_new_tokens=12, do_sample=False, pad_token_id=tok.pad_token_id,
                              eos_token_id=[tok.eos_token_id])
    free = generate_shared(model, rows, config, eos_ids=[tok.eos_token_id], pad_id=tok.pad_token_id)
    assert free == trl_completions(model, tok, rows, config, [tok.eos_token_id])
    assert len({tuple(r) for r in free}) == 3 and all(len(r) == 12 for r in free)  # varied, cut at max_new_tokens
    eos = [free[0][3], free[4][1]]  # end tokens the model writes early: completions stop at different lengths
    config = GenerationConfig(max_new_tokens=12, do_sample=False, pad_token_id=tok.pad_token_id, eos_token_id=eos)
    ours = generate_shared(model, rows, config, eos_ids=eos, pad_id=tok.pad_token_id)
    assert ours == trl_completions(model, tok, rows, config, eos)
    assert sorted({len(r) for r in ours}) == [2, 4, 12] and ours[0][-1] == eos[0]
    config = GenerationConfig(max_new_tokens=12, min_new_tokens=6, do_sample=False, pad_token_id=tok.pad_token_id,
                              eos_token_id=eos)  # the end tokens are suppressed for 6 tokens
    ours = generate_shared(model, rows, config, eos_ids=eos, pad_id=tok.pad_token_id)
    assert ours == trl_completions(model, tok, rows, config, eos) and min(len(r) for r in ours) >= 6
    assert len(attended) == 3 * 11 * model.config.num_hidden_layers  # 3 calls x 11 decoding steps x layers
    # the CPU GQA switch is scoped to generate_shared's context: outside it, transformers' own rule decides
    switch, key = sdpa_attention.use_gqa_in_sdpa, torch.zeros(1, 2, 3, 8)
    assert switch(torch.ones(1, 1, 3, 3), key, key) == switch.original(torch.ones(1, 1, 3, 3), key, key)


def test_each_row_s_cache_grows_in_place_and_holds_its_prompt(tok):
    """`rows_per_cache` gives each row its distinct prompt's keys and values (as `batch_select_indices` would) in
    buffers that decoding fills in place (no re-allocation per step, the cost of DynamicLayer's `torch.cat`); past
    the room asked for it still grows correctly."""
    from transformers import DynamicCache

    model = tiny_model(tok)
    ids = torch.randint(3, len(tok), (2, 6), generator=torch.Generator().manual_seed(0))
    groups, row_group = [(0, 2), (2, 5)], torch.tensor([0, 0, 1, 1, 1])
    with torch.no_grad():
        cache = model(input_ids=ids, use_cache=True).past_key_values
        expected = [(layer.keys[row_group], layer.values[row_group]) for layer in cache.layers]
        rows_per_cache(cache, groups, row_group, room=2)
        pointers = [layer.keys.data_ptr() for layer in cache.layers]
        for layer, (keys, values) in zip(cache.layers, expected):
            assert torch.equal(layer.keys, keys) and torch.equal(layer.values, values)
        steps = [torch.randn(5, keys.size(1), 1, keys.size(-1)) for _ in range(3)]
        reference = DynamicCache()
        for step, states in enumerate(steps):
            for i, layer in enumerate(cache.layers):
                if step == 0:
                    reference.update(expected[i][0], expected[i][1], i)
                keys, values = layer.update(states, 2 * states)
                ref_keys, ref_values = reference.update(states, 2 * states, i)
                assert torch.equal(keys, ref_keys) and torch.equal(values, ref_values)
            if step < 2:  # within the room: the same buffers
                assert [layer.keys.data_ptr() for layer in cache.layers] == pointers
        assert cache.get_seq_length() == 6 + 3


def test_the_cpu_gqa_switch_is_per_thread():
    """Inside `gqa_without_copies` in one thread, a forward in another thread keeps transformers' rule."""
    import threading

    from transformers.integrations import sdpa_attention

    from srl.generation.shared_prefill import gqa_without_copies

    key, mask = torch.zeros(1, 2, 3, 8), torch.ones(1, 1, 3, 3)
    inside, entered, done = [], threading.Event(), threading.Event()

    def other_thread():
        entered.wait()
        inside.append(sdpa_attention.use_gqa_in_sdpa(mask, key, key))
        done.set()

    worker = threading.Thread(target=other_thread)
    worker.start()
    with gqa_without_copies(torch.device("cpu")):
        assert sdpa_attention.use_gqa_in_sdpa(mask, key, key) is True  # with a mask, on: no KV copies here
        entered.set()
        done.wait()
    worker.join()
    assert inside == [sdpa_attention.use_gqa_in_sdpa.original(mask, key, key)]


def test_the_sampler_draws_the_exact_distribution():
    probs = torch.tensor([0.0, 0.5, 0.25, 0.0, 0.125, 0.0625, 0.0625, 0.0])
    n = 200_000
    draws = sample(probs.expand(n, -1), torch.Generator().manual_seed(0))
    freq = torch.bincount(draws, minlength=probs.numel()).double() / n
    assert bool((freq[probs == 0] == 0).all())  # a token of probability 0 is never drawn
    sigma = (probs * (1 - probs) / n).double().sqrt()
    assert bool(((freq - probs).abs() <= 5 * sigma + 1e-12).all()), (freq, probs)
    unnormalised = sample(torch.tensor([[0.0, 3.0, 0.0, 1.0]]).expand(40_000, -1), torch.Generator().manual_seed(1))
    assert abs(float((unnormalised == 1).double().mean()) - 0.75) < 5 * (0.75 * 0.25 / 40_000) ** 0.5
    assert set(unnormalised.tolist()) == {1, 3}


def test_sampling_draws_generate_s_first_token_distribution(tok):
    """One prompt, 20,000 rows: the first tokens' frequencies match the probabilities `generate` samples from
    (softmax after its temperature, top-k and top-p processors), within 5 standard deviations each."""
    model = tiny_model(tok).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3)
    prompt = prompts(tok, lengths=(9,), G=1)[0]
    config = GenerationConfig(max_new_tokens=1, do_sample=True, temperature=0.7, top_k=40, top_p=0.9,
                              pad_token_id=tok.pad_token_id, eos_token_id=[tok.eos_token_id])
    processors = model._get_logits_processor(generation_config=config, input_ids_seq_length=len(prompt))
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt])).logits[:, -1].float()
    probs = torch.softmax(processors(torch.tensor([prompt]), logits), dim=-1)[0].double()
    assert 3 <= int((probs > 0).sum()) <= 40  # the processors did cut the distribution
    n = 20_000
    torch.manual_seed(0)
    draws = torch.tensor([r[0] for r in generate_shared(model, [prompt] * n, config, eos_ids=[tok.eos_token_id],
                                                        pad_id=tok.pad_token_id)])
    freq = torch.bincount(draws, minlength=probs.numel()).double() / n
    assert bool((freq[probs == 0] == 0).all())
    assert bool(((freq - probs).abs() <= 5 * (probs * (1 - probs) / n).sqrt() + 1e-12).all())


def test_sampled_rows_stop_at_their_end_token(tok):
    model = sharp_model(tok)
    rows = prompts(tok, G=16)
    eos = list(range(3, len(tok), 7))  # many end tokens: most rows stop early, at different steps
    config = GenerationConfig(max_new_tokens=10, do_sample=True, pad_token_id=tok.pad_token_id, eos_token_id=eos)
    torch.manual_seed(0)
    out = generate_shared(model, rows, config, eos_ids=eos, pad_id=tok.pad_token_id)
    assert len(out) == len(rows) and len({len(r) for r in out}) > 2
    for r in out:
        ends = [i for i, t in enumerate(r) if t in eos]
        assert ends in ([], [len(r) - 1]) and (ends or len(r) == 10)


def test_unsupported_configurations_go_through_generate(tok):
    model = tiny_model(tok)
    ok = dict(max_new_tokens=4, do_sample=True, pad_token_id=tok.pad_token_id, eos_token_id=[tok.eos_token_id])
    assert unsupported(model, GenerationConfig(**ok, temperature=0.7, top_k=5, top_p=0.9, min_p=0.05,
                                               repetition_penalty=1.1)) is None
    assert "NoRepeatNGram" in unsupported(model, GenerationConfig(**ok, no_repeat_ngram_size=2))
    assert "num_return_sequences" in unsupported(model, GenerationConfig(**ok, num_return_sequences=2))
    assert prompt_runs([[1], [1], [2]]) == [(0, 2), (2, 3)]


def test_eval_samples_share_the_prefill(tok, monkeypatch):
    """`srl eval`'s k samples of a problem come as consecutive identical prompts: they go through the shared
    prefill; greedy answers (distinct prompts) through `generate`."""
    import srl.generation.shared_prefill as module

    calls = []
    shared = module.generate_shared
    monkeypatch.setattr(module, "generate_shared", lambda *a, **k: calls.append(1) or shared(*a, **k))
    model = sharp_model(tok)
    rows = prompts(tok, G=3)
    torch.manual_seed(0)
    out = generate_batch(model, tok, rows, max_new_tokens=6, do_sample=True, temperature=0.8)
    assert len(calls) == 1 and len(out) == 9
    assert all(1 <= g.tokens <= 6 and g.truncated == (g.tokens == 6) for g in out)
    generate_batch(model, tok, rows[::3], max_new_tokens=6, do_sample=True)
    generate_batch(model, tok, rows, max_new_tokens=6, do_sample=False)
    assert len(calls) == 1


def test_groups_of_unequal_size_decode_over_copies_and_equal_generate(tok, monkeypatch):
    from srl.generation.shared_prefill import _shared_prompt_layer

    monkeypatch.setattr(_shared_prompt_layer(), "attend", lambda *a: pytest.fail("unequal groups: copies expected"))
    model = sharp_model(tok)
    rows = prompts(tok, lengths=(7, 12), G=3) + prompts(tok, lengths=(5,), G=2, seed=1)
    config = GenerationConfig(max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id,
                              eos_token_id=[tok.eos_token_id])
    assert generate_shared(model, rows, config, eos_ids=[tok.eos_token_id], pad_id=tok.pad_token_id) == \
        trl_completions(model, tok, rows, config, [tok.eos_token_id])


def test_attention_over_one_copy_of_each_prompt_equals_attention_over_the_rows_copies():
    """`SharedPromptLayer.attend` against torch's attention over each row's copy of its (left-padded) prompt and
    its own new tokens, with grouped-query heads (6 query heads over 2 KV heads), after several new tokens and
    past the room it was given."""
    from srl.generation.shared_prefill import _shared_prompt_layer

    g = torch.Generator().manual_seed(0)
    groups, n, kv_heads, rep, width, dim = 3, 4, 2, 3, 9, 16
    keys, values = (torch.randn(groups, kv_heads, width, dim, generator=g) for _ in range(2))
    prompt_mask = torch.ones(groups, width, dtype=torch.bool)
    prompt_mask[0, :4], prompt_mask[2, :1] = False, False  # left padding
    layer = _shared_prompt_layer()(keys, values, prompt_mask, groups * n, room=2)
    rows = groups * n
    for step in range(4):  # room 2: the buffers grow at the third token
        new_k, new_v = (torch.randn(rows, kv_heads, 1, dim, generator=g) for _ in range(2))
        layer.update(new_k, new_v)
        query = torch.randn(rows, kv_heads * rep, 1, dim, generator=g)
        ours = layer.attend(query, 0.3)
        full_k = torch.cat([keys.repeat_interleave(n, 0), layer.keys], dim=2).repeat_interleave(rep, 1)
        full_v = torch.cat([values.repeat_interleave(n, 0), layer.values], dim=2).repeat_interleave(rep, 1)
        mask = torch.cat([prompt_mask.repeat_interleave(n, 0), torch.ones(rows, step + 1, dtype=torch.bool)], 1)
        theirs = torch.nn.functional.scaled_dot_product_attention(query, full_k, full_v, attn_mask=mask[:, None, None],
                                                                  scale=0.3).transpose(1, 2)
        assert layer.get_seq_length() == width + step + 1
        assert torch.allclose(ours, theirs, atol=1e-5), float((ours - theirs).abs().max())
