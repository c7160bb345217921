# The two commands of the README: `make demo` and `make test`. Both create .venv on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export AXOLOTL_DO_NOT_TRACK := 1

.PHONY: install demo lint test test-fast train-quick train train-custom clean

# torch first, pinned: a CPU build from local disk here; letting Axolotl pull torch
# would fetch a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/mathpal demo

# Style first: ruff's config is in pyproject.toml (`ruff format .` fixes what --check reports).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -v -rA --durations=15

test-fast: lint
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -m "not slow"

# GPU training (recipes name the hub model; data from `mathpal prepare-data`).
train-quick: $(STAMP)
	$(BIN)/mathpal train recipes/quick_test.yml

train: $(STAMP)
	$(BIN)/mathpal train recipes/production.yml

train-custom: $(STAMP)
	@test -n "$(CONFIG)" || { echo "error: pass CONFIG=recipes/your.yml"; exit 2; }
	$(BIN)/mathpal train $(CONFIG)

clean:
	rm -rf .mathpal data outputs reports
