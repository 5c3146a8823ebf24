# Two entry points for a fresh clone: `make demo` and `make test`. Both create .venv and install first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.srl-installed

.PHONY: demo test test-slow install clean verl-check

install: $(STAMP)

$(STAMP): pyproject.toml setup.py scripts/install.sh
	bash scripts/install.sh $(PYTHON) $(VENV)
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/srl demo

test: $(STAMP)
	$(PY) -m pytest

# The slow tests (training runs, vLLM engines, model conversion), left out of `make test`.
test-slow: $(STAMP)
	$(PY) -m pytest -m slow

# verl's own code reads `srl data export --to verl` output and scores 720 real completions (separate venv
# .venv-verl, created on the first run; install 3-9 min + check 2.5 min on 2 busy CPU cores). Not part of `make test`.
verl-check: $(STAMP)
	SRL_PYTHON=$(PY) bash scripts/verl_check.sh

clean:
	rm -rf $(VENV) .venv-verl build src/*.egg-info
