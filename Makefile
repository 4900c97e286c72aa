# mtping developer commands. `make test` is what CI runs (.ci/run); it installs everything it
# needs from a fresh clone: the virtualenv with pinned-range Python deps, and the Go-built test
# peers (kube-apiserver, etcd, Knative's mtping and event_display) in .bin/.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install peers lint test unit integration cluster cluster-down clean run

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,fast]'
	touch $@

peers:
	hack/build-peers.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

unit: install
	$(BIN)/pytest tests/unit

integration: install peers
	$(BIN)/pytest tests/integration

test: install peers lint
	$(BIN)/pytest tests

# No cluster needed: fire config/samples and print the events (Ctrl-C to stop).
run: install
	$(BIN)/mtping local config/samples --display

cluster: install peers
	$(BIN)/python -m tests.harness up --state-dir .cluster

cluster-down:
	$(BIN)/python -m tests.harness down --state-dir .cluster

clean:
	rm -rf $(VENV) .bin .cluster .pytest_cache .mypy_cache .ruff_cache
