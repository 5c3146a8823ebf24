"""Resolve a model name to something loadable, and load it for training.

A name is a local folder (a `save_pretrained` model with its tokenizer), a Hugging Face id already in the local
cache (nothing is downloaded when HF_HUB_OFFLINE=1), or `tiny`: a 2-layer model and tokenizer built locally in
seconds and, when training rows are given, briefly warmed up on them (see `srl.tiny`).
"""

from __future__ import annotations

import os

from srl.errors import InputError

TINY = "tiny"


def check_model_name(name: str) -> None:
    """Fail fast, before anything is loaded, on a model path that does not exist."""
    if name == TINY:
        return
    looks_local = name.startswith((".", "/", "~")) or os.sep in name and name.count("/") != 1
    if os.path.exists(os.path.expanduser(name)):
        if os.path.isdir(name) and not os.path.exists(os.path.join(name, "config.json")):
            raise InputError("a folder without config.json is not a model (expected save_pretrained output)",
                             path=name, field="model")
        return
    if looks_local:
        raise InputError("no such model folder", path=name, field="model")
    try:  # a hub id: only accepted if it is in the local cache (no downloads at run time)
        from huggingface_hub import try_to_load_from_cache

        if not isinstance(try_to_load_from_cache(name, "config.json"), str):
            raise InputError("not a local folder and not in the Hugging Face cache (nothing is downloaded)",
                             path=name, field="model")
    except ImportError:  # pragma: no cover
        pass


def load_model_and_tokenizer(name: str, *, bf16: bool = False, warm_up_rows: list[dict] | None = None,
                             seed: int = 0, response_prefix: str = ""):
    """(model, tokenizer) for training. bf16 weights when asked (and the hardware has it)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    check_model_name(name)
    if name == TINY:
        from srl.tiny import tiny_model, tiny_tokenizer, warm_up

        tokenizer = tiny_tokenizer()
        model = tiny_model(tokenizer, seed=seed)
        if warm_up_rows:
            warm_up(model, tokenizer, warm_up_rows, seed=seed, response_prefix=response_prefix)
        return model, tokenizer
    dtype = torch.bfloat16 if bf16 else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(name)
    model = AutoModelForCausalLM.from_pretrained(name, dtype=dtype)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def bf16_supported() -> bool:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    try:  # CPUs with AVX512-BF16 / AMX run bf16 matmuls natively
        return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    except Exception:
        return False
