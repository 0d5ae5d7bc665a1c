# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test fuzz demo lint proto proto-check typecheck fmt clean system-deps llama-server \
	bench bench-deps bench-sim bench-control bench-shadow bench-rollback bench-router \
	bench-failover

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## run: the whole stack on the built-in simulators (set OLLAMA_BASE_URL / VLLM_BASE_URL for real engines)
run: $(STAMP)
	$(PY) -m llmtools.devstack

## demo: the migration drill on the simulators (docs/demo.md)
demo: $(STAMP)
	$(PY) -m llmtools.drill

## test: lint, type checks, stale generated code, the full test suite
test: $(STAMP) system-deps llama-server lint typecheck
	$(PY) -m pytest -q

## fuzz: the property tests over every RPC (tests/fuzz) with many more examples than make test
fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=fuzz $(PY) -m pytest -q -p no:randomly tests/fuzz

# Debian packages the tests run for real: Prometheus (observability tests scrape the services)
# and etcd-server (the etcd store and leader election run on a three-member etcd cluster).
system-deps:
	@missing=""; \
	command -v prometheus >/dev/null || missing="$$missing prometheus"; \
	command -v etcd >/dev/null || missing="$$missing etcd-server"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq --no-install-recommends $$missing; \
	  else echo "make test needs Debian's$$missing: sudo apt-get install$$missing" >&2; exit 1; fi; \
	fi

# llama.cpp's server, a real OpenAI-compatible engine for tests/llamacpp: built once from the
# llama-cpp-python sdist (about 8 minutes on 2 cores) into ~/.cache/llmgateway, then reused.
# Building needs cmake and a C++ compiler, installed like prometheus above when missing.
LLAMA_CACHE := $(or $(LLMGATEWAY_CACHE),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/llmgateway)
LLAMA_SERVER_BIN := $(LLAMA_CACHE)/llama-server-0.3.36/bin/llama-server
llama-server: $(LLAMA_SERVER_BIN)
$(LLAMA_SERVER_BIN): | $(STAMP)
	@command -v cmake >/dev/null && command -v c++ >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq --no-install-recommends cmake make g++; \
	  else echo "building llama-server needs cmake and g++: sudo apt-get install cmake g++" >&2; \
	    exit 1; fi; }
	PYTHON=$(PY) scripts/build_llama_server.sh

# Release baseline of the protos: `buf breaking` refuses any change that is not additive.
PROTO_BASELINE := protos/baseline/llmgateway-v0.1.0.binpb

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/buf lint protos
	$(VENV)/bin/buf breaking protos --against $(PROTO_BASELINE)
	$(VENV)/bin/lint-imports

typecheck: $(STAMP)
	$(VENV)/bin/mypy

## proto: regenerate the committed stubs under clients/gen from protos/
proto: $(STAMP)
	$(PY) -m llmtools.protogen

fmt: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

## bench: every benchmark (none runs in make test); figures in docs/benchmarks.md, docs/performance.md
bench: bench-sim bench-control bench-shadow bench-rollback bench-router bench-failover

bench-deps: $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,bench]'

bench-sim: $(STAMP)
	$(PY) bench/sim_throughput.py

bench-control: $(STAMP)
	$(PY) bench/control_propagation.py

bench-shadow: $(STAMP)
	$(PY) bench/shadow_overhead.py

bench-rollback: $(STAMP)
	$(PY) bench/rollback_time.py

# HA: three replicas on a three-member etcd (needs etcd-server: make system-deps).
bench-failover: $(STAMP) system-deps
	$(PY) -m bench.control_failover

bench-router: bench-deps
	$(PY) -m bench.router_overhead

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
