# Transformer Playground — developer entry points.
#
#   make test    build .venv with dev deps (+ Debian chromium if missing), run ruff and pytest
#   make run     build .venv with runtime deps, serve the app on http://127.0.0.1:7860
#   make bench   measure: the engine (python -m core bench), the engine beside nanoGPT and minGPT
#                (bench/peers.py), the page vs the bare loop, 1 vs 2 torchrun processes
#                (bench/scaling.py), then memory per visitor, 30 visitors at once, and a class of
#                30 pressing Train together (bench/; gradio_client needs the dev venv).
#                make bench PEERS=/path/holding/nanoGPT-and-minGPT compares with the peers;
#                without PEERS only our side of bench/peers.py runs. OUT=folder writes peers.json
#                and classroom.json there; PREVIOUS=folder (an earlier OUT) puts each figure
#                beside that run's
#   make space-report  what a Hugging Face Space would install from requirements.txt, with sizes
#   make clean   remove the venv and caches
#
# Works on a fresh Debian machine that has python3 and apt. Never runs
# `playwright install`: the browser is Debian's chromium.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
CHROMIUM_PATH ?= /usr/bin/chromium
PYTEST_ARGS ?=

export GRADIO_ANALYTICS_ENABLED := False
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export CHROMIUM_PATH

# Use sudo for apt only when not root and sudo exists.
SUDO := $(shell if [ "$$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then echo sudo; fi)
IS_ROOT := $(shell [ "$$(id -u)" -eq 0 ] && echo yes)

.PHONY: help venv venv-dev install install-dev browser test run bench space-report clean

help:
	@echo "targets: venv install install-dev browser test run bench clean"

# --- virtual environment -----------------------------------------------------

# Debian ships `venv` separately (python3-venv); install it if venv creation fails.
$(VPY):
	@if ! $(PYTHON) -m venv $(VENV) 2>/dev/null; then \
	  rm -rf $(VENV); \
	  echo ">> '$(PYTHON) -m venv' failed; installing python3-venv with apt"; \
	  if [ -z "$(IS_ROOT)" ] && [ -z "$(SUDO)" ]; then \
	    echo "!! not root and no sudo: install python3-venv yourself, then re-run make" >&2; \
	    exit 1; \
	  fi; \
	  $(SUDO) apt-get update && $(SUDO) apt-get install -y python3-venv; \
	  $(PYTHON) -m venv $(VENV); \
	fi

# PyTorch's CPU wheel index, named once, in requirements.txt (a Space installs from it). pip asks
# it only when it answers within seconds: offline, pip would retry it for minutes per package.
TORCH_INDEX := $(shell sed -n 's/^--extra-index-url //p' requirements.txt)
PINS := $(VENV)/requirements.txt

$(PINS): requirements.txt | $(VPY)
	@if $(VPY) -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=5)" \
	    "$(TORCH_INDEX)/torch/" >/dev/null 2>&1; then \
	  cp requirements.txt $@; \
	else \
	  echo ">> $(TORCH_INDEX) is not reachable: torch comes from pip's own indexes"; \
	  grep -v '^--extra-index-url' requirements.txt > $@; \
	fi

# Stamp files: pip runs again only when a requirements file changes.
$(VENV)/.installed: $(PINS)
	$(VPY) -m pip install -r $(PINS)
	touch $@

$(VENV)/.installed-dev: $(PINS) requirements-dev.txt
	$(VPY) -m pip install -r $(PINS) -r requirements-dev.txt
	touch $(VENV)/.installed $@

venv install: $(VENV)/.installed
venv-dev install-dev: $(VENV)/.installed-dev

# --- browser for Playwright tests --------------------------------------------

browser:
	@if [ -x "$(CHROMIUM_PATH)" ]; then \
	  echo ">> chromium found at $(CHROMIUM_PATH)"; \
	elif [ "$(CHROMIUM_PATH)" != "/usr/bin/chromium" ]; then \
	  echo "!! CHROMIUM_PATH=$(CHROMIUM_PATH) is not an executable" >&2; exit 1; \
	elif ! command -v apt-get >/dev/null 2>&1; then \
	  echo "!! $(CHROMIUM_PATH) missing and apt-get not available: install chromium yourself" >&2; exit 1; \
	elif [ -z "$(IS_ROOT)" ] && [ -z "$(SUDO)" ]; then \
	  echo "!! $(CHROMIUM_PATH) missing; not root and no sudo." >&2; \
	  echo "!! run as root: apt-get update && apt-get install -y chromium" >&2; exit 1; \
	else \
	  echo ">> installing Debian chromium with apt"; \
	  $(SUDO) apt-get update && $(SUDO) apt-get install -y chromium; \
	fi

# --- main targets -------------------------------------------------------------

# ruff first (seconds), then pytest; propagates pytest's exit code (5 = no tests collected).
test: $(VENV)/.installed-dev browser
	$(VPY) -m ruff check .
	$(VPY) -m pytest $(PYTEST_ARGS)

run: $(VENV)/.installed
	$(VPY) app.py

BENCH_LOAD_SECONDS ?= 180
PEERS ?=
OUT ?=
PREVIOUS ?=

bench: $(VENV)/.installed-dev
	$(VPY) -m core bench
	$(if $(OUT),mkdir -p $(OUT))
	$(VPY) -m bench.peers $(if $(PEERS),--peers $(PEERS)) $(if $(OUT),--json $(OUT)/peers.json) \
		$(if $(PREVIOUS),--compare $(PREVIOUS)/peers.json)
	$(VPY) -m bench.page
	$(VPY) -m bench.scaling
	$(VPY) -m bench.load $(BENCH_LOAD_SECONDS)
	$(VPY) -m bench.classroom --concurrency 2 $(if $(OUT),--json $(OUT)/classroom.json) \
		$(if $(PREVIOUS),--compare $(PREVIOUS)/classroom.json)

# what a Space would install from requirements.txt, with sizes (needs the internet)
space-report: $(VENV)/.installed
	$(VPY) -m bench.space_install

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis test-results playwright-report
	find . -name __pycache__ -type d -prune -not -path './.git/*' -exec rm -rf {} +
