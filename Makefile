# resnet-jax: one target per task. Every experiment target is a single `python -m` line.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Exact versions of every installed package (pip constraints): what `make install` and so CI
# install, written by `make lock` from a fresh venv.
LOCK := requirements/lock.txt

# The interpreter that creates $(VENV): `make install PYTHON=/path/to/python`, or else the newest
# Python >= 3.12 (JAX >= 0.11 needs it) among these candidates, each one run, not just found: a
# pyenv shim such as `python3.12` stands on the PATH but fails unless a pyenv version selects it,
# so pyenv's installed versions are candidates too. The lock was made, and the whole suite passed,
# with Python 3.13 (no dependency lacks a 3.13 wheel); 3.12 installs exactly the same versions.
# Every locked version has a 3.14 wheel too, but TensorFlow (the optional [tfds] extra) has none.
PYTHON ?=
PYTHON_CANDIDATES = python3.14 python3.13 python3.12 python3 \
	$$(pyenv root 2>/dev/null)/versions/*/bin/python3.1[2-9] \
	$$HOME/.pyenv/versions/*/bin/python3.1[2-9]
PYTHON_OK := import sys; assert sys.version_info >= (3, 12)
# One line per working candidate, "313 path", newest first (the earlier candidate of one
# version first); the first path wins.
FIND_PYTHON = for c in $(PYTHON_CANDIDATES); do \
	  "$$c" -c '$(PYTHON_OK)' 2>/dev/null && \
	    "$$c" -c 'import sys; print(100 * sys.version_info[0] + sys.version_info[1], end=" ")' && \
	    echo "$$c"; \
	done 2>/dev/null | sort -s -rn -k1,1 | head -n 1 | cut -d' ' -f2-
NO_PYTHON = No Python >= 3.12 found: tried python3.14, python3.13, python3.12 and python3 on \
	the PATH and pyenv's installed versions, running each. $(NEED_PYTHON)
NEED_PYTHON := resnet-jax needs Python 3.12 or newer (JAX >= 0.11 does) with its venv module: \
	install one (Debian/Ubuntu: apt-get install python3.13-venv or python3.12-venv; macOS: brew \
	install python@3.13; or pyenv install 3.13, or uv python install 3.13) and run make again, or \
	name it: make install PYTHON=/path/to/python3.13.

# Experiment targets: DATASET=digits|fashion_mnist|cifar10|cifar100, WORKDIR=runs, SEEDS=1,
# JOINT_SEEDS=false (true: each model's seeds in one compiled step; see `make bench-seeds`).
# Append ,smoke to DATASET (e.g. DATASET=digits,smoke) for a two-step run of the same pipeline.
DATASET ?= digits
WORKDIR ?= runs
SEEDS ?= 1
JOINT_SEEDS ?= false
EXPERIMENT := $(PY) -m resnet_jax.experiment --seeds=$(SEEDS) --joint_seeds=$(JOINT_SEEDS)
EXPERIMENTS := degradation shortcuts responses depth-1202 preact lesion paths stochastic-depth \
	effective-paths wide pyramid multi-residual densenet fractalnet ensemble-size

.DEFAULT_GOAL := help
.PHONY: help install install-torch lock test test-all lint bench bench-peer bench-compile \
	bench-analysis bench-densenet bench-seeds bench-input bench-xla-cpu gpu-campaign clean demo \
	all imagenet-18v34 imagenet-fixture fashion-mnist-jpeg \
	$(EXPERIMENTS)

help: ## list the targets (this text)
	@echo "make TARGET [DATASET=digits|fashion_mnist|cifar10|cifar100[,smoke]] [WORKDIR=runs] [SEEDS=1] [JOINT_SEEDS=false]"
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z0-9-]+):.*## /  \1\t/' | expand -t 22

install: $(STAMP) ## create .venv (Python >= 3.12, PYTHON=...) and install the locked versions

# `$(call NEW_VENV,dir)`: a fresh venv in dir from PYTHON or else the newest candidate.
NEW_VENV = py='$(PYTHON)'; \
	if [ -z "$$py" ]; then py=$$($(FIND_PYTHON)); fi; \
	if [ -z "$$py" ]; then echo "$(NO_PYTHON)" >&2; exit 1; fi; \
	if ! "$$py" -c '$(PYTHON_OK)' 2>/dev/null; then \
	  echo "PYTHON=$$py ($$("$$py" -V 2>&1 | head -n 1)) is not a working Python >= 3.12." \
	    "$(NEED_PYTHON)" >&2; exit 1; fi; \
	echo "$$py -m venv --clear $(1)  \# $$("$$py" -V)"; \
	"$$py" -m venv --clear $(1)

# A $(VENV) of Python < 3.12 is made anew, one of 3.12+ kept unless PYTHON names an interpreter
# (`make clean install PYTHON=...` changes it). The package and its test tools install at the
# versions of $(LOCK).
$(STAMP): setup.cfg pyproject.toml $(LOCK)
	@if [ -n '$(PYTHON)' ] || ! $(PY) -c '$(PYTHON_OK)' 2>/dev/null; then \
	  $(call NEW_VENV,$(VENV)); fi
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c $(LOCK) -e '.[test]'
	touch $(STAMP)

# The torch side of the conversion tests (tests/test_convert.py runs torchvision's and timm's
# ResNets next to ours): torch, torchvision, timm and safetensors at the versions of
# $(TORCH_REQUIREMENTS), in a venv of their own, since torch wheels exist for fewer Pythons than
# JAX's (the tests find it as $(TORCH_VENV)/bin/python, or as $$TORCH_PYTHON). Its Python:
# TORCH_PYTHON_BASE=/path/to/python, or else the first working candidate below (3.11 first: its
# wheels lie on this project's machines). PyPI's Linux torch is the CUDA build (about 5 GB with
# its libraries); TORCH_PIP_FLAGS can point pip at PyTorch's CPU wheel index instead.
TORCH_VENV ?= .venv-torch
TORCH_PYTHON_BASE ?=
TORCH_PIP_FLAGS ?=
TORCH_REQUIREMENTS := requirements/torch.txt
TORCH_STAMP := $(TORCH_VENV)/.installed
TORCH_PYTHON_CANDIDATES = python3.11 $$(pyenv root 2>/dev/null)/versions/*/bin/python3.11 \
	$$HOME/.pyenv/versions/*/bin/python3.11 python3.12 python3.13 python3
install-torch: $(TORCH_STAMP) ## create .venv-torch: torch, torchvision and timm for the conversion tests

$(TORCH_STAMP): $(TORCH_REQUIREMENTS)
	@py='$(TORCH_PYTHON_BASE)'; \
	if [ -z "$$py" ]; then for c in $(TORCH_PYTHON_CANDIDATES); do \
	  if "$$c" -c 'import venv' 2>/dev/null; then py="$$c"; break; fi; done; fi; \
	if [ -z "$$py" ]; then echo "install-torch: no working Python among" \
	  "$(TORCH_PYTHON_CANDIDATES); name one: make install-torch TORCH_PYTHON_BASE=/path/to/python3.11" >&2; \
	  exit 1; fi; \
	echo "$$py -m venv --clear $(TORCH_VENV)  # $$("$$py" -V)"; \
	"$$py" -m venv --clear $(TORCH_VENV)
	$(TORCH_VENV)/bin/python -m pip install -q $(TORCH_PIP_FLAGS) -r $(TORCH_REQUIREMENTS)
	touch $(TORCH_STAMP)

LOCK_VENV := build/lock-venv
lock: ## rewrite requirements/lock.txt: the newest versions, installed in a fresh venv
	@$(call NEW_VENV,$(LOCK_VENV))
	$(LOCK_VENV)/bin/python -m pip install -q --upgrade pip
	$(LOCK_VENV)/bin/python -m pip install -q -e '.[test]'
	@mkdir -p $(dir $(LOCK))
	@{ echo "# Exact versions that \`make install\` installs (pip constraints), written by"; \
	  echo "# \`make lock\` from a fresh install of .[test] with $$($(LOCK_VENV)/bin/python -V)," \
	    "$$(uname -s) $$(uname -m), $$(date -u +%Y-%m-%d)."; \
	  $(LOCK_VENV)/bin/python -m pip freeze --exclude-editable; } > $(LOCK)
	rm -rf $(LOCK_VENV)
	@echo "wrote $(LOCK)"

# One worker per core (pytest-xdist), each file on one worker so its compiled functions are
# reused: most of a test's time is XLA compiling, which runs on one core. Files are handed out in
# collection order, the longest first (tests/conftest.py), not by their number of tests.
PYTEST := $(PY) -m pytest -q -n auto --dist loadfile --no-loadscope-reorder

test: $(STAMP) ## the fast test suite (what CI runs)
	$(PYTEST) -m "not slow" --durations=15

test-all: $(STAMP) ## every test, the slow smoke runs of each experiment included
	$(PYTEST)

lint: $(STAMP) ## ruff, and the import contracts of the package's floors (setup.cfg)
	$(PY) -m ruff check src tests experiments benchmarks
	$(VENV)/bin/lint-imports

# Every benchmark prints first the versions it ran with (one JSON line, benchmarks/versions.py).
bench-compile: $(STAMP) ## train-step compile time, ResNet-110 vs ResNet-1202
	$(PY) benchmarks/versions.py
	$(PY) benchmarks/compile_time.py

clean: ## remove .venv and build files
	rm -rf $(VENV) build src/*.egg-info .pytest_cache

bench: $(STAMP) ## train-step images/s: real data path vs a one-batch data set
	$(PY) benchmarks/versions.py
	$(PY) benchmarks/throughput.py
	$(PY) benchmarks/stochastic_depth.py --depth=110 --rounds=3 --steps=3

bench-seeds: $(STAMP) ## images/s of several seeds in one compiled step vs one run per seed
	$(PY) benchmarks/joint_seeds.py

# The peer's torch may live in another Python (a CPU wheel exists for fewer Python versions).
# PEER_FLAGS: benchmarks/peer.py's flags, e.g. --models=resnet20,resnet56,resnet110 for the ResNets
# alone, --ours="conv_grad_chunks=1;" for the plain convolutions beside the default (ResNets only).
TORCH_PYTHON ?= $(PY)
PEER_FLAGS ?=
bench-peer: $(STAMP) ## our train step vs PyTorch's: ResNet-20/56/110 and one net per descendant family
	@$(TORCH_PYTHON) -c "import torch" 2>/dev/null || { echo "bench-peer needs torch in \
	$(TORCH_PYTHON): $(PY) -m pip install -e '.[bench]', or TORCH_PYTHON=a Python that has it"; \
	exit 1; }
	$(PY) benchmarks/versions.py
	$(PY) benchmarks/peer.py --torch_python=$(TORCH_PYTHON) $(PEER_FLAGS)

# On a GPU machine: CAMPAIGN_FLAGS="--out=DIR [--budget_s=S] [--items=...]" (see the script).
CAMPAIGN_FLAGS ?= --out=gpu_campaign
gpu-campaign: $(STAMP) ## the GPU campaign: peer benchmark and full-recipe runs within a budget
	$(PY) benchmarks/gpu_campaign.py $(CAMPAIGN_FLAGS)

bench-densenet: $(STAMP) ## DenseNet-BC peak memory and step time, with and without remat
	$(PY) benchmarks/versions.py
	$(PY) benchmarks/densenet_memory.py

bench-input: $(STAMP) ## the streamed input path: decode, pipeline with 1 and 2 workers, fed step
	$(PY) benchmarks/versions.py
	$(PY) benchmarks/input.py

bench-xla-cpu: $(STAMP) ## minimal reproductions of three XLA:CPU traps in convolutions
	$(PY) benchmarks/xla_cpu_traps.py

bench-analysis: $(STAMP) ## speed of the exact path decomposition and the lesion sweeps
	$(PY) benchmarks/versions.py
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

# ImageNet's half of He 2015. DATASET=imagenet (the default here) needs DATA_DIR=, a directory of
# `python -m resnet_jax.data.prepare_imagenet`; DATASET=imagenet_fixture[,smoke] and
# fashion_mnist_jpeg[,smoke] are prepared offline in build/ first.
IMAGENET_DATASET = $(if $(filter command line environment,$(origin DATASET)),$(DATASET),imagenet)
DATA_DIR ?=
IMAGENET_DATA := $(if $(findstring imagenet_fixture,$(IMAGENET_DATASET)),imagenet-fixture) \
	$(if $(findstring fashion_mnist_jpeg,$(IMAGENET_DATASET)),fashion-mnist-jpeg)
imagenet-18v34: $(STAMP) $(IMAGENET_DATA) ## plain vs ResNet-18/34 on ImageNet (He 2015 Fig. 4, Table 2)
	$(EXPERIMENT) --config=experiments/imagenet_18v34.py:$(IMAGENET_DATASET) \
	  $(if $(DATA_DIR),--config.train.data_dir=$(DATA_DIR)) --workdir=$(WORKDIR)/imagenet_18v34

# The offline stand-ins in ImageNet's format: the tree of JPEGs, then its prepared shards.
FIXTURES := build/imagenet_fixture build/fashion_mnist_jpeg
imagenet-fixture: build/imagenet_fixture/prepared/dataset.json ## real photos in ImageNet's layout, prepared
fashion-mnist-jpeg: build/fashion_mnist_jpeg/prepared/dataset.json ## Fashion-MNIST as JPEGs, prepared
build/imagenet_fixture/prepared/dataset.json: | $(STAMP)
	$(PY) -m resnet_jax.data.fixtures --kind=imagenet --out=build/imagenet_fixture/raw
	$(PY) -m resnet_jax.data.prepare_imagenet --train_dir=build/imagenet_fixture/raw/train \
	  --val_dir=build/imagenet_fixture/raw/val --out=build/imagenet_fixture/prepared
build/fashion_mnist_jpeg/prepared/dataset.json: | $(STAMP)
	$(PY) -m resnet_jax.data.fixtures --kind=fashion_mnist_jpeg --out=build/fashion_mnist_jpeg/raw
	$(PY) -m resnet_jax.data.prepare_imagenet --train_dir=build/fashion_mnist_jpeg/raw/train \
	  --val_dir=build/fashion_mnist_jpeg/raw/val --out=build/fashion_mnist_jpeg/prepared

all: $(EXPERIMENTS) ## every experiment target above
