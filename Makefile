# SyntheX companion. Two commands do everything on a fresh machine:
#   make book   venv + lab data + papermill-execute every notebook at `quick` + render _build/html
#   make test   venv + smoke data + ruff + unit tests (incl. the architecture rules) + nbval at `smoke` + book check
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
JOBS ?= 2
PROFILE ?= quick
export PYTHONHASHSEED := 0
export NO_ALBUMENTATIONS_UPDATE := 1

# nbval: notebooks whose outputs are stable are compared cell by cell (sanitized); the ones that
# train networks run in lax mode with explicitly checked cells (# NBVAL_CHECK_OUTPUT).
NBVAL_STRICT := notebooks/00_virtual_lab.ipynb notebooks/01_simulation.ipynb notebooks/02_domain_randomization.ipynb
NBVAL_LAX := notebooks/03_domain_adaptation.ipynb notebooks/04_training.ipynb notebooks/05_results_hip.ipynb \
	notebooks/06_scaled_up.ipynb notebooks/07_tool_detection.ipynb notebooks/08_covid_lesions.ipynb \
	notebooks/09_image_resolution.ipynb
NBVAL_OPTS := --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider --nbval-cell-timeout=900

.PHONY: venv data book test unit nbval book-check browser nbval-refresh lint bench bench-gpu deepdrr-env lock clean help

help:
	@echo "make book | make test | make nbval-refresh | make bench | make bench-gpu | make deepdrr-env | make lint | make clean"

$(STAMP): pyproject.toml constraints.txt
	@test -n "$(PYTHON)" || { echo "python3.11 not found"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

data: venv
	$(BIN)/synthex lab generate --profile $(PROFILE) --cohort all
	$(BIN)/synthex simulate --task hip-controlled --profile $(PROFILE)
	$(BIN)/synthex simulate --task hip-scaled --profile $(PROFILE)
	$(BIN)/synthex simulate --task tool --profile $(PROFILE)
	$(BIN)/synthex simulate --task chest --profile $(PROFILE)

book: venv
	$(BIN)/synthex book --profile quick --jobs $(JOBS)

test: venv
	$(MAKE) --no-print-directory data PROFILE=smoke
	$(MAKE) --no-print-directory lint unit nbval book-check
	$(MAKE) --no-print-directory browser

unit: venv
	$(BIN)/python -m pytest tests -q -n $(JOBS) --dist loadfile

nbval: venv
	$(BIN)/python -m pytest -q --nbval $(NBVAL_OPTS) $(NBVAL_STRICT)
	$(BIN)/python -m pytest -q --nbval-lax $(NBVAL_OPTS) $(NBVAL_LAX)

book-check: venv
	$(BIN)/synthex book --check

# Headless Chromium on every page of the book that book-check built (console errors, failed or remote requests,
# missing images, broken links; the static explorer's slider). The explorer tests on generated pages and on
# `synthex explore` run with the unit tests. Without chromium this says so and skips.
BOOK_HTML := $(if $(SYNTHEX_BUILD),$(SYNTHEX_BUILD)/_build/html,_build/html)
browser: venv
	@if [ -n "$$SYNTHEX_CHROMIUM" ] || command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then \
		SYNTHEX_BOOK_HTML=$(BOOK_HTML) $(BIN)/python -m pytest -q -p no:cacheprovider tests/test_browser.py -k book; \
	else \
		echo "browser tests SKIPPED: chromium not found (apt-get install chromium, or set SYNTHEX_CHROMIUM=/path/to/chrome)"; \
	fi

# Regenerate the nbval reference outputs stored in notebooks/ (executes them in place at smoke).
nbval-refresh: venv
	$(BIN)/synthex book --refresh-references

lint: venv
	$(BIN)/ruff check synthex_lib tests

bench: venv
	$(BIN)/pip install -q -c constraints.txt -e '.[dev,bench]'
	$(BIN)/python -m synthex_lib.bench drr
	$(BIN)/python -m synthex_lib.bench dr

# On a CUDA machine: nanodrr (torch + Triton), DiffDRR, DeepDRR (if .venv-deepdrr exists) and training speed.
bench-gpu: venv
	$(BIN)/pip install -q -c constraints.txt -e '.[dev,bench]'
	$(BIN)/python -m synthex_lib.bench gpu

# DeepDRR 1.2.2 pins numpy<2 and needs cupy (CUDA): its own venv, from constraints-deepdrr.txt. The library goes
# in without its dependencies: the adapter needs only what is pinned there. `bench gpu` calls it as
# .venv-deepdrr/bin/python -m synthex_lib.bench.deepdrr_side.
DEEPDRR_VENV := .venv-deepdrr
DEEPDRR_STAMP := $(DEEPDRR_VENV)/.installed

$(DEEPDRR_STAMP): constraints-deepdrr.txt pyproject.toml
	@test -n "$(PYTHON)" || { echo "python3.11 not found"; exit 1; }
	$(PYTHON) -m venv $(DEEPDRR_VENV)
	$(DEEPDRR_VENV)/bin/pip install -q -c constraints-deepdrr.txt deepdrr==1.2.2 cupy-cuda12x cuda-python \
		killeengeo numpy torch scipy numba kornia spekpy xraydb
	$(DEEPDRR_VENV)/bin/pip install -q --no-deps -e .
	$(DEEPDRR_VENV)/bin/python -c "from synthex_lib.simulate.deepdrr_adapter import missing_requirements as m; \
		print(m() or 'deepdrr ready')"
	touch $(DEEPDRR_STAMP)

deepdrr-env: $(DEEPDRR_STAMP)

lock: venv
	{ head -2 constraints.txt; $(BIN)/pip freeze --exclude-editable | grep -iv '^synthex' | sed 's/^torch==2.13.0+cpu/torch==2.13.0/'; } > constraints.new && mv constraints.new constraints.txt

clean:
	rm -rf _build .pytest_cache
