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
EXPERIMENTS := degradation shortcuts responses depth-1202 preact lesion paths stochastic-depth \
	effective-paths wide pyramid multi-residual densenet fractalnet ensemble-size

.DEFAULT_GOAL := help
.PHONY: help install test test-all lint bench bench-peer bench-compile bench-analysis bench-densenet \
	clean \
	demo all \
	$(EXPERIMENTS)

help: ## list the targets (this text)
	@echo "make TARGET [DATASET=digits|fashion_mnist|cifar10|cifar100[,smoke]] [WORKDIR=runs] [SEEDS=1]"
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z0-9-]+):.*## /  \1\t/' | expand -t 20

install: $(STAMP) ## create .venv and install the package with its test tools

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

# One worker per core (pytest-xdist), each file on one worker so its compiled functions are
# reused: most of a test's time is XLA compiling, which runs on one core.
PYTEST := $(PY) -m pytest -q -n auto --dist loadfile

test: $(STAMP) ## the fast test suite (what CI runs)
	$(PYTEST) -m "not slow"

test-all: $(STAMP) ## every test, the slow smoke runs of each experiment included
	$(PYTEST)

lint: $(STAMP) ## ruff, and the import contracts of the package's floors (setup.cfg)
	$(PY) -m ruff check src tests experiments benchmarks
	$(VENV)/bin/lint-imports

bench-compile: $(STAMP) ## train-step compile time, ResNet-110 vs ResNet-1202
	$(PY) benchmarks/compile_time.py

clean: ## remove .venv and build files
	rm -rf $(VENV) build src/*.egg-info .pytest_cache

bench: $(STAMP) ## train-step images/s: real data path vs a one-batch data set
	$(PY) benchmarks/throughput.py
	$(PY) benchmarks/stochastic_depth.py --depth=20 --image_size=16 --batch_size=64

# The peer's torch may live in another Python (a CPU wheel exists for fewer Python versions).
TORCH_PYTHON ?= $(PY)
bench-peer: $(STAMP) ## our train step vs PyTorch's on ResNet-20/56/110 (torch: the [bench] extra)
	@$(TORCH_PYTHON) -c "import torch" 2>/dev/null || { echo "bench-peer needs torch in \
	$(TORCH_PYTHON): $(PY) -m pip install -e '.[bench]', or TORCH_PYTHON=a Python that has it"; \
	exit 1; }
	$(PY) benchmarks/peer.py --torch_python=$(TORCH_PYTHON)

bench-densenet: $(STAMP) ## DenseNet-BC peak memory and step time, with and without remat
	$(PY) benchmarks/densenet_memory.py

bench-analysis: $(STAMP) ## speed of the exact path decomposition and the lesion sweeps
	$(PY) benchmarks/analysis_speed.py

demo: $(STAMP) ## the main job: plain vs residual nets on digits, every analysis, a report
	$(PY) -m resnet_jax.experiment --config=experiments/demo.py --workdir=reports/demo

degradation: $(STAMP) ## plain vs ResNet at 20-110 layers (He 2015 Fig. 6)
	$(EXPERIMENT) --config=experiments/degradation.py:$(DATASET) --workdir=$(WORKDIR)/degradation

shortcuts: $(STAMP) ## shortcut options A, B, C on ResNet-32
	$(EXPERIMENT) --config=experiments/shortcuts.py:$(DATASET) --workdir=$(WORKDIR)/shortcuts

responses: $(STAMP) ## layer response stds (He 2015 Fig. 7)
	$(EXPERIMENT) --config=experiments/responses.py:$(DATASET) --workdir=$(WORKDIR)/responses

depth-1202: $(STAMP) ## ResNet-1202 vs ResNet-110
	$(EXPERIMENT) --config=experiments/depth_1202.py:$(DATASET) --workdir=$(WORKDIR)/depth_1202

preact: $(STAMP) ## original vs pre-activation units (He 2016)
	$(EXPERIMENT) --config=experiments/preact.py:$(DATASET) --workdir=$(WORKDIR)/preact

lesion: $(STAMP) ## deleting and reordering blocks (Veit 2016 Figs. 3, 5)
	$(EXPERIMENT) --config=experiments/lesion.py:$(DATASET) --workdir=$(WORKDIR)/lesion

paths: $(STAMP) ## gradient by path length (Veit 2016 Fig. 6)
	$(EXPERIMENT) --config=experiments/paths.py:$(DATASET) --workdir=$(WORKDIR)/paths

stochastic-depth: $(STAMP) ## stochastic depth vs constant depth ResNet-110, lesions of both
	$(EXPERIMENT) --config=experiments/stochastic_depth.py:$(DATASET) --workdir=$(WORKDIR)/stochastic_depth

effective-paths: $(STAMP) ## training 23 of 54 blocks per mini-batch (Veit 2016 §5)
	$(EXPERIMENT) --config=experiments/effective_paths.py:$(DATASET) --workdir=$(WORKDIR)/effective_paths

multi-residual: $(STAMP) ## k = 1, 2, 4 branches per block at a similar size (Abdi 2016)
	$(EXPERIMENT) --config=experiments/multi_residual.py:$(DATASET) --workdir=$(WORKDIR)/multi_residual

densenet: $(STAMP) ## DenseNet and DenseNet-BC vs a ResNet, with lesions (Huang 2017)
	$(EXPERIMENT) --config=experiments/densenet.py:$(DATASET) --workdir=$(WORKDIR)/densenet

fractalnet: $(STAMP) ## FractalNet's columns, with and without drop-path (Larsson 2017)
	$(EXPERIMENT) --config=experiments/fractalnet.py:$(DATASET) --workdir=$(WORKDIR)/fractalnet

wide: $(STAMP) ## Wide ResNets vs the ResNet with as many blocks (Zagoruyko 2016)
	$(EXPERIMENT) --config=experiments/wide.py:$(DATASET) --workdir=$(WORKDIR)/wide

pyramid: $(STAMP) ## PyramidNet vs ResNet and its SD twin, one-block lesions (Han 2017)
	$(EXPERIMENT) --config=experiments/pyramid.py:$(DATASET) --workdir=$(WORKDIR)/pyramid

ensemble-size: $(STAMP) ## test error vs log2(paths) across depth, branches, width, families
	$(EXPERIMENT) --config=experiments/ensemble_size.py:$(DATASET) --workdir=$(WORKDIR)/ensemble_size

all: $(EXPERIMENTS) ## every experiment target above
