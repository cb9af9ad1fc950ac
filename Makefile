# swarmrl: every target installs what it needs first (idempotent), then runs.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml Makefile | sha1sum | cut -c1-12)
HAS_CUDA := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo 1)
ARGS ?=

.PHONY: install run test test-fast lint fmt proto bench bench-deps bench-trainer bench-gossip bench-sapo bench-rewards clean sysdeps testdeps

$(BIN)/python:
	@command -v $(PY) >/dev/null 2>&1 || PY=python3; $${PY:-$(PY)} -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

APT := $(shell [ "$$(id -u)" = 0 ] && echo apt-get || echo sudo apt-get)

sysdeps:
	@# libp2p pins fastecdsa (an sdist that compiles against GMP): it needs gcc and libgmp-dev.
	@if ! { [ -f /usr/include/gmp.h ] || ls /usr/include/*/gmp.h >/dev/null 2>&1; } || ! command -v gcc >/dev/null; then \
	  echo "installing build-essential and libgmp-dev (needed by libp2p's fastecdsa)"; \
	  $(APT) update -qq && $(APT) install -y -qq build-essential libgmp-dev; \
	fi

testdeps:
	@# The tests run a real Prometheus server and promtool (Debian package 'prometheus').
	@if ! command -v promtool >/dev/null 2>&1 || ! [ -x /usr/bin/prometheus ]; then \
	  echo "installing prometheus (real server and promtool for the tests)"; \
	  $(APT) update -qq && DEBIAN_FRONTEND=noninteractive $(APT) install -y -qq --no-install-recommends prometheus; \
	fi
	@# The netns tests (emulated WAN links, NAT) need iproute2, tc and iptables, and root.
	@if [ "$$(id -u)" = 0 ] && { ! command -v iptables >/dev/null 2>&1 || ! command -v tc >/dev/null 2>&1; }; then \
	  echo "installing iproute2 and iptables (netns tests)"; \
	  $(APT) update -qq && DEBIAN_FRONTEND=noninteractive $(APT) install -y -qq --no-install-recommends iproute2 iptables; \
	fi

$(STAMP): pyproject.toml Makefile | $(BIN)/python
	@$(MAKE) --no-print-directory sysdeps
	@# Take the CPU build of torch first where no CUDA is present (pyproject's range accepts it).
	@if [ -z "$(HAS_CUDA)" ]; then $(BIN)/pip install -q "torch==2.13.0" || $(BIN)/pip install -q "torch>=2.4,<2.15" --index-url https://download.pytorch.org/whl/cpu; fi
	$(BIN)/pip install -q -e ".[dev]"
	@rm -f $(VENV)/.installed-*; touch $@

install: $(STAMP)

run: install
	$(BIN)/swarm-node run $(ARGS)

test: install testdeps
	$(BIN)/python -m pytest -q tests $(ARGS)

test-fast: install testdeps
	$(BIN)/python -m pytest -q -m "not slow" tests $(ARGS)

lint: install
	$(BIN)/ruff check swarmrl tests benchmarks
	$(BIN)/ruff format --check swarmrl tests benchmarks
	$(BIN)/mypy

fmt: install
	$(BIN)/ruff check --fix swarmrl tests benchmarks
	$(BIN)/ruff format swarmrl tests benchmarks

proto: install
	$(BIN)/python -m swarmrl.protocol.codegen

bench-deps: install
	$(BIN)/pip install -q -e ".[dev,bench]"

bench: bench-trainer bench-gossip

bench-trainer: bench-deps
	$(BIN)/python benchmarks/trainer.py --out out/trainer-bench.json

bench-gossip: bench-deps
	$(BIN)/python benchmarks/gossip.py --out out/gossip-bench.json

bench-sapo: install
	$(BIN)/python benchmarks/sapo.py --out out/sapo

bench-rewards: install
	$(BIN)/python benchmarks/rewards_runs.py --rounds 100

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
