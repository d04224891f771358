# resnet-jax: one target per task. Every experiment target is a single `python -m` line.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# Experiment targets: DATASET=digits|fashion_mnist|cifar10|cifar100, WORKDIR=runs, SEEDS=1.
# Append ,smoke to DATASET (e.g. DATASET=digits,smoke) for a two-step run of the same pipeline.
DATASET ?= digits
WORKDIR ?= runs
SEEDS ?= 1
EXPERIMENT := $(PY) -m resnet_jax.experiment --seeds=$(SEEDS)
EXPERIMENTS := degradation shortcuts responses depth-1202 preact lesion paths

.PHONY: install test test-all lint bench bench-compile bench-analysis clean demo all $(EXPERIMENTS)

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

# ruff, and the import contracts of setup.cfg (the floors of the package; docs/architecture.md).
lint: $(STAMP)
	$(PY) -m ruff check src tests experiments benchmarks
	$(VENV)/bin/lint-imports

bench-compile: $(STAMP)
	$(PY) benchmarks/compile_time.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache

bench: $(STAMP)
	$(PY) benchmarks/throughput.py

bench-analysis: $(STAMP)
	$(PY) benchmarks/analysis_speed.py

# The main job: plain and residual nets on the embedded digits data, every analysis, a report.
demo: $(STAMP)
	$(PY) -m resnet_jax.experiment --config=experiments/demo.py --workdir=reports/demo

degradation: $(STAMP)
	$(EXPERIMENT) --config=experiments/degradation.py:$(DATASET) --workdir=$(WORKDIR)/degradation

shortcuts: $(STAMP)
	$(EXPERIMENT) --config=experiments/shortcuts.py:$(DATASET) --workdir=$(WORKDIR)/shortcuts

responses: $(STAMP)
	$(EXPERIMENT) --config=experiments/responses.py:$(DATASET) --workdir=$(WORKDIR)/responses

depth-1202: $(STAMP)
	$(EXPERIMENT) --config=experiments/depth_1202.py:$(DATASET) --workdir=$(WORKDIR)/depth_1202

preact: $(STAMP)
	$(EXPERIMENT) --config=experiments/preact.py:$(DATASET) --workdir=$(WORKDIR)/preact

lesion: $(STAMP)
	$(EXPERIMENT) --config=experiments/lesion.py:$(DATASET) --workdir=$(WORKDIR)/lesion

paths: $(STAMP)
	$(EXPERIMENT) --config=experiments/paths.py:$(DATASET) --workdir=$(WORKDIR)/paths

all: $(EXPERIMENTS)
