# mtping developer commands. `make test` is what CI runs (.ci/run); it installs everything it
# needs from a fresh clone: the virtualenv with pinned-range Python deps, and the Go-built test
# peers (kube-apiserver, etcd, Knative's mtping and event_display) in .bin/.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install peers debs lint test unit integration cluster cluster-down clean run bench

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,fast]'
	touch $@

peers:
	hack/build-peers.sh

# Debian packages no language registry has: nginx, a sink of the delivery tests (only when missing).
debs:
	hack/install-debs.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

unit: install debs
	$(BIN)/pytest tests/unit

integration: install peers
	$(BIN)/pytest tests/integration

test: install peers debs lint
	$(BIN)/pytest tests

# No cluster needed: fire config/samples and print the events (Ctrl-C to stop).
run: install
	$(BIN)/mtping local config/samples --display

# The scale benchmark (bench/README.md): mtping vs Knative's adapter on N PingSources.
# make bench N=1000,10000 MINUTES=2
N       ?= 1000,10000
MINUTES ?= 2
bench: install peers
	hack/install-debs.sh
	$(BIN)/pip install --quiet -e '.[dev,fast,bench]'
	$(BIN)/python -m bench.scale --sources $(N) --minutes $(MINUTES)

cluster: install peers
	$(BIN)/python -m tests.harness up --state-dir .cluster

cluster-down:
	$(BIN)/python -m tests.harness down --state-dir .cluster

clean:
	rm -rf $(VENV) .bin .cluster .pytest_cache .mypy_cache .ruff_cache
