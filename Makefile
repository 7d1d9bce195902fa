# lmloop — every target sets up what it needs the first time and skips it afterwards.
#
#   make demo                 fetch + prepare Shakespeare, train configs/default.toml once, evaluate
#   make generations N=10     the recursive loop (POLICY, TEMP, LAMBDA, SEED, CONFIG, RUN);
#                             RUN defaults to the binary's name for the settings, e.g. replace-t1.0-s1337
#   make test                 the test suite
#   make lint                 rustfmt --check and clippy with warnings as errors (CI runs both)
#   make test-cuda            the test suite with models on the GPU (LMLOOP_DEVICE=cuda)
#   make bench                throughput against PyTorch eager and transformers generate references, as ratios
#                             (CONFIG, PRECISION=fp32|bf16; on a GPU with LMLOOP_DEVICE=cuda or the config's device)
#   make reproduce PAPER=NAME one paper's recipe (recipes/NAME.toml): sweep run, then sweep report
#   make test-slurm           the SLURM executor against a real single-node cluster (needs root)
#
# libtorch comes from the PyPI wheel torch==2.13.0 (what tch 0.26.0 is built against),
# installed into .venv. To use your own libtorch instead, set LIBTORCH=/path/to/libtorch.
# `make test` and `make bench` also install transformers into .venv (pinned below): the
# interop tests load lmloop's exports with it and import the models it writes, and the
# benchmark times its `generate` as a reference.

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
TORCH_VERSION := 2.13.0
BIN := target/release/lmloop
# transformers and the libraries it reads model folders with, pinned together and
# without extras; the stamp's name changes with any pin, so a new pin installs again.
INTEROP_PINS := transformers==5.23.0 tokenizers==0.23.3 safetensors==0.8.0 huggingface-hub==2.4.0
INTEROP_STAMP := $(VENV)/.interop-$(shell echo '$(INTEROP_PINS)' | sha256sum | cut -c1-12)
# The Python the interop tests run (tests/interop.rs), whichever libtorch lmloop links.
export LMLOOP_TEST_PYTHON := $(abspath $(PY))

ifdef LIBTORCH
TORCH_STAMP :=
else
TORCH_STAMP := $(VENV)/.torch-$(TORCH_VERSION)
export LIBTORCH_USE_PYTORCH := 1
export PATH := $(abspath $(VENV))/bin:$(PATH)
endif

N ?= 10
POLICY ?= replace
TEMP ?= 1.0
LAMBDA ?=
SEED ?= 1337
CONFIG ?= configs/default.toml
CORPUS := corpora/real/shakespeare

.PHONY: setup build demo generations test lint test-cuda bench reproduce test-slurm

setup: $(TORCH_STAMP)

$(VENV)/.torch-$(TORCH_VERSION):
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet torch==$(TORCH_VERSION) numpy
	touch $@

# Needs torch in .venv even when lmloop links its own libtorch: transformers runs on it
# (the interop tests and the benchmark's `generate` reference).
$(INTEROP_STAMP): | $(VENV)/.torch-$(TORCH_VERSION)
	$(PY) -m pip install --quiet $(INTEROP_PINS)
	touch $@

build: $(BIN)

$(BIN): $(TORCH_STAMP) Cargo.toml build.rs $(shell find src -name '*.rs')
	cargo build --release
	@touch $@

$(CORPUS)/raw.txt: | $(BIN)
	$(BIN) corpus fetch shakespeare

$(CORPUS)/meta.json: $(CORPUS)/raw.txt | $(BIN)
	$(BIN) prepare --input $(CORPUS)/raw.txt --out $(CORPUS) --vocab-size 2048

checkpoints/demo/DONE: $(CORPUS)/meta.json $(CONFIG) | $(BIN)
	$(BIN) train --config $(CONFIG) --data $(CORPUS) --out checkpoints/demo --force

demo: checkpoints/demo/DONE
	$(BIN) eval --checkpoint checkpoints/demo --tokens $(CORPUS)/test.bin

generations: $(BIN) $(CORPUS)/meta.json
	$(BIN) generations --config $(CONFIG) -n $(N) --policy $(POLICY) --temperature $(TEMP) \
	  $(if $(LAMBDA),--real-fraction $(LAMBDA)) --seed $(SEED) $(if $(RUN),--run $(RUN))

test: $(TORCH_STAMP) $(INTEROP_STAMP)
	cargo test --release

lint: $(TORCH_STAMP)
	cargo fmt --check
	cargo clippy --release --all-targets -- -D warnings

# The same suite with every model test and every lmloop command on the GPU
# (LMLOOP_DEVICE=cuda; the CPU stays the default everywhere else).
test-cuda: $(TORCH_STAMP) $(INTEROP_STAMP)
	LMLOOP_DEVICE=cuda cargo test --release

bench: $(BIN) $(INTEROP_STAMP)
	$(BIN) bench --config $(CONFIG) --reference "$(PY) bench/reference.py" --hf-reference "$(PY) bench/hf_generate.py" \
	  --rounds 3 $(if $(PRECISION),--precision $(PRECISION)) --json | tee analysis/bench.json

# One recipe per paper: runs every cell at every seed (JOBS at a time), then pools them
# into analysis/sweeps/NAME/ (summary.csv, changes.csv, report.html). Rerunning resumes.
PAPER ?=
JOBS ?= 2
RECIPES := $(sort $(basename $(notdir $(wildcard recipes/*.toml))))

ifneq ($(filter reproduce,$(MAKECMDGOALS)),)
ifeq ($(PAPER),)
$(error PAPER must name a recipe in recipes/: $(RECIPES))
endif
ifeq ($(wildcard recipes/$(PAPER).toml),)
$(error there is no recipes/$(PAPER).toml; the recipes are: $(RECIPES))
endif
endif

reproduce: $(BIN) $(CORPUS)/meta.json
	$(BIN) sweep run recipes/$(PAPER).toml --jobs $(JOBS)
	$(BIN) sweep report recipes/$(PAPER).toml

# Starts slurmctld, slurmd and munged on this machine (installing slurm-wlm and munge
# when missing; needs root), submits a 2-cell × 2-seed sweep through sbatch, requeues
# one task part-way, and checks the pooled summary equals the local executor's.
# Not part of `make test` because it needs root and starts daemons.
test-slurm: $(TORCH_STAMP)
	scripts/slurm-cluster.sh cargo test --release --test sweep -- --ignored --nocapture slurm_array_gives_the_local_summary
