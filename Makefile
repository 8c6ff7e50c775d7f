# The two commands of the README: `make demo` and `make test`. Both create .venv on first use (or when
# requirements.txt / pyproject.toml changed) and install the pinned requirements plus the editable packages.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO_DIR ?= demo_runs
PYTEST_ARGS ?=

.PHONY: setup demo test bench clean

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $(STAMP)

demo: setup
	$(PY) scripts/demo.py --out $(DEMO_DIR)

# Three workers on two cores: a third of the suite's wall time is spent waiting on subprocesses (signal,
# torchrun and kill -9 tests), which a third worker fills.
test: setup
	$(PY) -m pytest -q -n 3 $(PYTEST_ARGS)

bench: setup
	$(PY) scripts/bench.py

clean:
	rm -rf $(DEMO_DIR) .pytest_cache
