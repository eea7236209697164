# Two entry points, as in the README: `make demo` and `make test`. Both set up .venv first.
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch; on a machine with a GPU set TORCH_SPEC to the build you want.
TORCH_SPEC ?= torch==2.13.0

.PHONY: setup demo test test-slow

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[assets,reports,test,adaptation]"
	touch $@

demo: setup
	HF_HUB_OFFLINE=1 $(PY) recipes/compare_strategies.py --config demo

test: setup
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q

test-slow: setup
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -m "real_weights or multiprocess"
