"""Which dtype a run computes in: the one home of `--dtype auto` (`srl eval`) and of an unset `--bf16` (training).

On a GPU, TRL's default: bf16 where the GPU supports it. On a CPU, bf16 only where it has native bf16 matrix units,
from the rates measured in docs/benchmarks.md ("fp32 against bf16 matrix products on the CPU",
`benchmarks/dtype_matmul.py`), not from a guess:

- AVX512-BF16 (AMD EPYC, 2026-12-06): bf16 products 2.1-2.7x fp32 at every batched shape of an SRL step (the loss,
  the prefill, 32 rollouts decoded together), 0.7-1.0x for a single decoded row: bf16.
- AMX (`amx_bf16`): bf16. Not measured on its own yet; every CPU with AMX also has AVX512-BF16, the class above.
- Neither (AVX2 only; AMD EPYC, 2026-12-06): bf16 products 0.01-0.06x fp32 (1.2-1.3 GFLOP/s at every shape and
  thread count, against 59-135 for fp32 at a step's batched shapes): fp32.

Training in bf16 on a CPU keeps fp32 weights (the optimizer's master copy) and computes under bf16 autocast
(`training_weights_bf16`): the loss and gradients stay within tolerance of fp32 (tests/test_precision.py), while
bf16 weights would lose updates smaller than bf16's resolution (~0.4% of a weight; the paper's lr is 5e-7).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Dtype = Literal["auto", "float32", "bfloat16"]

# What each class of CPU measured (docs/benchmarks.md): the reason a run prints with its choice.
MEASURED = {
    "amx": "AMX bf16 tiles (a CPU with AMX also has AVX512-BF16, where bf16 products measured 2.1-2.7x fp32 at a "
           "step's batched shapes)",
    "avx512_bf16": "AVX512-BF16: bf16 products measured 2.1-2.7x fp32 at a step's batched shapes (0.7-1.0x for "
                   "one decoded row)",
    None: "no native bf16 matrix units (AVX2 only): bf16 products measured 0.01-0.06x fp32",
}


@dataclass(frozen=True)
class Precision:
    bf16: bool
    reason: str

    @property
    def name(self) -> str:
        return "bf16" if self.bf16 else "fp32"

    def line(self) -> str:
        """The one line a run prints: which dtype and why."""
        return f"dtype: {self.name} ({self.reason}; docs/benchmarks.md)"


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo; empty where it cannot be read): also what
    srl.generation.vllm checks before starting vLLM."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_bf16_units(flags: set[str] | None = None) -> str | None:
    """"amx", "avx512_bf16" or None: the CPU's native bf16 matrix units (by its flags; where they cannot be read,
    oneDNN's own check, which answers for AVX512-BF16 and AMX alike)."""
    flags = cpu_flags() if flags is None else flags
    if "amx_bf16" in flags:
        return "amx"
    if "avx512_bf16" in flags:
        return "avx512_bf16"
    if not flags:
        try:
            import torch

            if torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported():
                return "avx512_bf16"
        except Exception:
            pass
    return None


def choose(requested: Dtype = "auto", *, cuda: bool | None = None, flags: set[str] | None = None) -> Precision:
    """The dtype for `requested` (`auto`: by the hardware, as the module says). `cuda`: whether the run is on a GPU
    (default: whether torch sees one); `flags`: the CPU's (default: this machine's)."""
    if requested != "auto":
        return Precision(requested == "bfloat16", f"asked for {requested}")
    if cuda is None:
        import torch

        cuda = torch.cuda.is_available()
    if cuda:
        import torch

        supported = torch.cuda.is_bf16_supported()
        return Precision(supported, "GPU: TRL's default, bf16 where the GPU supports it" if supported
                         else "GPU without bf16 support")
    units = cpu_bf16_units(flags)
    return Precision(units is not None, "CPU with " + MEASURED[units] if units else "CPU with " + MEASURED[None])


def training_weights_bf16(bf16: bool, on_cpu: bool) -> bool:
    """Whether a training run loads its weights in bf16: on a GPU as TRL's bf16 runs do; on a CPU never (fp32
    master weights, bf16 autocast: the optimizer's small updates are kept)."""
    return bool(bf16) and not on_cpu


def training_line(bf16: bool, *, on_cpu: bool, cuda: bool | None = None) -> str:
    """The line a training run prints: its dtype, and why (the auto choice, or the flag that overrode it)."""
    auto = choose("auto", cuda=False if on_cpu else cuda)
    if bool(bf16) == auto.bf16:
        chosen = auto
    else:
        chosen = Precision(bool(bf16), f"set by --bf16 or the recipe; auto would pick {auto.name}: {auto.reason}")
    line = chosen.line()
    if chosen.bf16 and on_cpu:
        line += "; fp32 weights under bf16 autocast"
    return line
