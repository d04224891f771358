# resnet-jax: one target per task. Every experiment target is a single `python -m` line.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test test-all bench bench-compile bench-analysis clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

test-all: $(STAMP)
	$(PY) -m pytest -q

bench-compile: $(STAMP)
	$(PY) benchmarks/compile_time.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache

bench: $(STAMP)
	$(PY) benchmarks/throughput.py

bench-analysis: $(STAMP)
	$(PY) benchmarks/analysis_speed.py
