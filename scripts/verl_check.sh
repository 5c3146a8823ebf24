#!/usr/bin/env bash
# `make verl-check`: verl's own code reads `srl data export --to verl` output and scores real completions.
#
#   bash scripts/verl_check.sh            (SRL_PYTHON: srl's Python, default .venv/bin/python)
#
# verl pins its own transformers (5.10 for verl 0.9.1; srl uses 5.19), so verl lives in a separate virtual
# environment, .venv-verl (gitignored), created on the first run: CPU torch first (so that verl does not pull a
# CUDA build), then verl and the reward's one dependency, math-verify (its antlr 4.9.3 variant: verl's Hydra pins
# antlr4-python3-runtime 4.9.*). srl itself comes from this tree through PYTHONPATH, as a user would
# `pip install --no-deps ./supervised-rl` (a clone) there. No Ray, no GPU. Measured on 2 shared CPU cores: install 3 min
# (load ~2) to 9 min (load ~10), check 2.5 min (load ~10); docs/scaling.md.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SRL_PYTHON="${SRL_PYTHON:-$ROOT/.venv/bin/python}"
VENV="${VERL_VENV:-$ROOT/.venv-verl}"
WORK="${VERL_CHECK_DIR:-$ROOT/runs/verl-check}"
VERL_VERSION=0.9.1
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1

if ! "$VENV/bin/python" -c "import verl, math_verify, sys; sys.exit(verl.__version__ != '$VERL_VERSION')" 2>/dev/null; then
    echo "verl-check: installing verl $VERL_VERSION into $VENV"
    "${PYTHON:-python3}" -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip
    "$VENV/bin/pip" install -q "${TORCH_SPEC:-torch==2.13.0}"
    "$VENV/bin/pip" install -q "verl==$VERL_VERSION" "math-verify[antlr4_9_3]>=0.7" cydifflib
fi

rm -rf "$WORK"
PYTHONPATH="$ROOT/src" "$SRL_PYTHON" "$ROOT/scripts/verl_check_cases.py" "$WORK"
PYTHONPATH="$ROOT/src" "$VENV/bin/python" "$ROOT/scripts/verl_check.py" "$WORK"
