"""A tiny causal LM, its tokenizer and a synthetic multi-step task, all built locally in seconds with no
download: what the tests and the CPU demo run on.

- `tiny_tokenizer()`: a byte-level BPE (any text encodes; 512 tokens) with a ChatML chat template.
- `tiny_model(tokenizer)`: a randomly initialised 2-layer Llama (hidden 64).
- `synthetic_trajectories(n)`: "add d to a, k times" problems whose expert steps are `a+d=b` lines; similar
  actions get partial credit, so the step reward varies across rollouts even for an untrained model.
- `warm_up(model, tokenizer, rows)`: a short supervised pre-training on instance prompts + targets, so that the
  tiny model writes step-shaped text before RL starts (used by the tests and the demo; it is *not* SRL).
"""

from __future__ import annotations

import random

from srl.data.trajectories import Step, Trajectory

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<|pad|>", "<|im_start|>", "<|im_end|>"]


def synthetic_trajectories(n: int = 64, seed: int = 0, min_steps: int = 3, max_steps: int = 5) -> list[Trajectory]:
    """`n` problems "Start at a and add d, k times." with steps "a+d=b" (k steps).

    >>> t = synthetic_trajectories(1)[0]
    >>> t.problem, [s.text for s in t.steps][:2], t.final_answer
    ('Start at 7 and add 7, 3 times.', ['7+7=14', '14+7=21'], '28')
    """
    rng = random.Random(seed)
    out = []
    for i in range(n):
        a, d, k = rng.randint(1, 9), rng.randint(1, 9), rng.randint(min_steps, max_steps)
        steps, value = [], a
        for _ in range(k):
            steps.append(Step(f"{value}+{d}={value + d}"))
            value += d
        out.append(Trajectory(f"synthetic-{i}", f"Start at {a} and add {d}, {k} times.", steps, str(value),
                              source="synthetic"))
    return out


def tiny_tokenizer(extra_text: list[str] | None = None, vocab_size: int = 512):
    """A byte-level BPE tokenizer trained in well under a second on the prompts' vocabulary."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from srl.data.prompts import SYSTEM_PROMPT, SYSTEM_PROMPT_NO_THINK

    corpus = [SYSTEM_PROMPT, SYSTEM_PROMPT_NO_THINK, "Problem:\nSolution so far:\n(no steps yet)\nWrite step only.",
              "<think> </think>"] + [t.problem + " " + " ".join(s.text for s in t.steps)
                                     for t in synthetic_trajectories(200)] + list(extra_text or [])
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|pad|>",
                                        bos_token=None, padding_side="left")
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def tiny_model(tokenizer, hidden_size: int = 64, num_layers: int = 2, seed: int = 0):
    """A randomly initialised Llama-architecture causal LM sized for tests (~100k parameters)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                         num_hidden_layers=num_layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=2048, tie_word_embeddings=True,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=None)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def warm_up(model, tokenizer, rows: list[dict], steps: int = 60, lr: float = 3e-3, batch_size: int = 16,
            seed: int = 0, response_prefix: str = "") -> list[float]:
    """Briefly train `model` to continue each row's chat `prompt` with its `expert_step` (+ end of turn).
    Returns the losses. Loss is on the response tokens only."""
    import torch

    from srl.console import progress_bar

    rng = random.Random(seed)
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    losses = []
    with progress_bar("tiny (random test model): supervised warm-up before RL (--tiny_warm_up_steps)",
                      steps) as advance:
        for _ in range(steps):
            losses.append(_warm_up_step(model, tokenizer, rng.sample(rows, min(batch_size, len(rows))), optimizer,
                                        response_prefix))
            advance()
    model.eval()
    return losses


def _warm_up_step(model, tokenizer, batch: list[dict], optimizer, response_prefix: str) -> float:
    """One supervised step of `warm_up` on `batch`; returns its loss."""
    import torch

    ids, labels = [], []
    for row in batch:
        p = tokenizer.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=False)
        p_ids = tokenizer(p, add_special_tokens=False)["input_ids"]
        r_ids = tokenizer(response_prefix + row["expert_step"] + tokenizer.eos_token,
                          add_special_tokens=False)["input_ids"]
        ids.append(p_ids + r_ids)
        labels.append([-100] * len(p_ids) + r_ids)
    width = max(len(x) for x in ids)
    input_ids = torch.tensor([x + [tokenizer.pad_token_id] * (width - len(x)) for x in ids])
    label_t = torch.tensor([x + [-100] * (width - len(x)) for x in labels])
    attention = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids])
    loss = model(input_ids=input_ids, attention_mask=attention, labels=label_t).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    return loss.item()
