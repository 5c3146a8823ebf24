# Two entry points for a fresh clone: `make demo` and `make test`. Both create .venv and install first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.srl-installed

.PHONY: demo test test-slow install clean

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

clean:
	rm -rf $(VENV) build src/*.egg-info
