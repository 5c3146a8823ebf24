"""Generation: turning prompts into completions, shared by training and evaluation.

    hf            transformers `generate`, batched and left-padded (`generate_batch`)
    vllm          the backend choice (`hf` / `vllm` / `auto`) and vLLM: the colocated engine used by training,
                  `VLLMGenerator` used by `srl eval`
    shared_prefill  rollouts that prefill each distinct prompt once and decode its G continuations from the
                  repeated cache (the trainer's `hf` backend, `srl eval`'s k samples)
    think_budget  close a monologue still open after N tokens, then let the model write its action

`Generation` is the record both backends return for one response.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Generation:
    """One generated response: its text, its length in tokens (up to and including the end token) and
    whether it was cut at max_new_tokens."""

    text: str
    tokens: int
    truncated: bool
