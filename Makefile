# qsnn-lightning: `make help` lists the targets.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := help
EXP    ?= fmnist_1w2u
ARGS   ?=
CKPT   ?=
SWEEP  ?= lambda_k
LOCAL  ?=
BENCH_ARGS ?=
OUT    ?= export
TARGET ?= host
FMNIST := /usr/share/datasets/fashion-mnist
JOBS   ?= 2

.PHONY: help setup data train experiments evaluate export sweep test test-full lint footprint bench neurobench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP) ## create the virtual environment and install the package (idempotent)

data: ## find or install Fashion-MNIST (Debian package dataset-fashion-mnist; as root, else torchvision downloads it)
	@test -d $(FMNIST) || { test "$$(id -u)" = 0 && command -v apt-get >/dev/null && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null; } || \
	  echo "Fashion-MNIST is not in $(FMNIST): it will be downloaded by torchvision on first use (needs network)"

train: $(STAMP) data ## train an experiment (EXP=fmnist_1w2u, a packaged name or a .yaml path); overrides in ARGS="key=value ..."
	$(BIN)/qsnn train $(EXP) $(ARGS)

experiments: $(STAMP) ## list the packaged experiments
	$(BIN)/qsnn experiments

evaluate: $(STAMP) ## test a checkpoint on its experiment's test split: make evaluate CKPT=runs/.../best.ckpt
	$(BIN)/qsnn test $(CKPT) $(ARGS)

export: $(STAMP) ## export a checkpoint to the C runtime: make export CKPT=runs/.../best.ckpt [OUT=export] [TARGET=host|cortex-m4|rv32]
	$(BIN)/qsnn export $(CKPT) --out $(OUT) --target $(TARGET) $(ARGS)

sweep: $(STAMP) data ## run a packaged sweep (SWEEP=lambda_k) or a sweep file with W&B; LOCAL=1 runs the grid here offline (resumable)
	$(BIN)/qsnn sweep $(SWEEP) $(if $(filter 1,$(LOCAL)),--local) $(ARGS)

test: $(STAMP) data ## the fast tier (about a minute): unit tests, one in-process train/test/export path; lists the slowest
	$(BIN)/pytest -q --durations=15

# The full tier in JOBS pytest processes (pytest-xdist), a test file each at a time (module fixtures built once), each
# on one thread. Fresh clone, 2 cores: serial 46 min of tests; two processes of two threads 44 min (64 min of CPU,
# the threads spinning against each other); two of one thread 23 min (39 min of CPU)
test-full: $(STAMP) data ## every test: also training runs, the wheel, the notebook, sanitizers, QEMU, DDP, benchmarks
	OMP_NUM_THREADS=1 $(BIN)/pytest -q -m '' -n $(JOBS) --dist loadfile --durations=30

lint: $(STAMP) ## ruff (configured in pyproject.toml) over the package, tests and benchmarks
	$(BIN)/ruff check .

footprint: $(STAMP) ## print the paper's Table 2 (memory footprint of ResNet19, VGG16, VGGSNN on CIFAR-10) and a training step's memory beside it
	$(BIN)/qsnn footprint --arch resnet19,vgg16,vggsnn --dataset cifar10 --bits 32w32u,1w8u,1w4u,1w2u --batch 1,64,256
	$(BIN)/qsnn footprint --training --timesteps 2 --arch resnet19,vgg16,vggsnn --dataset cifar10 --bits 32w32u,1w8u,1w4u,1w2u --batch 1,64,256

bench: $(STAMP) ## training throughput and peak memory beside SpikingJelly and snnTorch (installs .[bench]); options in BENCH_ARGS="--quick --device cuda --json FILE"
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/train_throughput.py $(BENCH_ARGS)

neurobench: $(STAMP) ## NeuroBench's metrics of a checkpoint on its test split: make neurobench CKPT=runs/.../best.ckpt [ARGS="--samples 1000"]
	$(BIN)/qsnn bench $(CKPT) $(ARGS)

clean: ## remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache src/*.egg-info
