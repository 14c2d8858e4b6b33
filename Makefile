# inrlib: library, tests and the executable book.
#
#   make book      execute every chapter (quick profile) with papermill, build _build/html/
#   make test      everything: lint, unit tests, a smoke build of the book, its pages in headless chromium
#   make test-fast TESTS=tests/test_encodings.py   the inner loop: one file, no book builds, no browser
#   make lint      ruff over the repository, mypy over the core modules
#   make chapter CHAPTER=theory PARAMS="-p profile paper -p device cuda"
#                  re-execute one chapter with any parameters, rebuild the HTML with it
#   make lab       JupyterLab on 127.0.0.1 (PORT=8888): the chapters open as notebooks, live explorers
#   make check-pages   check the built _build/html in headless chromium (+ screenshots)
#   make bench     the benchmarks          make venv   the environment       make clean
#   make mutants MODULE=inrlib/ntk/spectra.py TESTS=tests/ntk/test_spectra.py   mutation testing (slow; not in CI; no MODULE: the scores)
#
# Each target sets up what it needs. Variables: PROFILE (smoke|quick|paper, default quick),
# BUILD (default _build), TOC, EXEC_FLAGS, HTML_FLAGS, PYTEST_ARGS, BENCH_ARGS, VENV.

SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV    ?= .venv
PY      := $(VENV)/bin/python
BUILD   ?= _build
PROFILE ?= quick
TOC     ?= _toc.yml
CONFIG  ?= _config.yml
VENDOR  := book/_vendor
CHAPTER ?=
PARAMS  ?=
PIPE    := scripts/bookpipe.py
# Sphinx warnings are errors; HTML_FLAGS=--allow-warnings lets a build through anyway.
HTML_FLAGS ?=
# Passed to each chapter's execution, e.g. EXEC_FLAGS="--log-output --cell-timeout 900 --heartbeat 60".
# A run prints a line per cell and the kernel's progress lines (every 30 s, with the time left);
# INRLIB_PROGRESS=0 make ... silences the latter, INRLIB_PROGRESS=log:10 makes them every 10 s.
EXEC_FLAGS ?=
STAMP   := $(VENV)/.inrlib-installed

# Library processes draw no windows; chapters still get inline figures (the pipeline gives their
# kernels matplotlib's inline backend).
export MPLBACKEND := Agg

.PHONY: help venv vendor book _book chapter lab check-pages test test-fast lint chromium bench mutants clean distclean

help:
	@sed -n '3,15p' Makefile | sed 's/^# \{0,1\}//'

# ---------------------------------------------------------------- environment
venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0 -c constraints.txt
	$(PY) -m pip install -q -e '.[book,lab,test]' -c constraints.txt
	$(PY) -m ipykernel install --sys-prefix --name inrlib --display-name "Python (inrlib)" >/dev/null
	@touch $@

# The script checks what is there and returns at once when the vendored files are complete.
vendor:
	@scripts/vendor_js.sh $(VENDOR)

# ---------------------------------------------------------------- the book
# `book` prepares the environment and the JavaScript, then a second make reads the toc (which
# needs the environment) and re-executes only the chapters whose source or library changed.
book: venv vendor
	@$(MAKE) --no-print-directory _book

ifneq ($(filter _book,$(MAKECMDGOALS)),)
CHAPTER_SRCS := $(shell $(PY) $(PIPE) chapters --toc $(TOC) || echo __TOC_ERROR__)
ifneq ($(filter __TOC_ERROR__,$(CHAPTER_SRCS)),)
$(error the table of contents $(TOC) is broken (see the message above))
endif
INRLIB_SRCS  := $(shell find inrlib -name '*.py')
EXECUTED     := $(patsubst %.py,$(BUILD)/executed/$(PROFILE)/%.ipynb,$(CHAPTER_SRCS))
# The pages that gather the other chapters' results (the front page's verdict counts, the
# reproduction table) execute after every other chapter of the toc, so they never read a results
# file older than the chapter it belongs to.
GATHER_OUT   := $(patsubst %.py,$(BUILD)/executed/$(PROFILE)/%.ipynb,$(filter book/intro.py book/reproduction.py,$(CHAPTER_SRCS)))
ifneq ($(GATHER_OUT),)
$(GATHER_OUT): $(filter-out $(GATHER_OUT),$(EXECUTED))
endif
endif

# One rule per chapter: the notebook depends on its source and on every library file. The
# profile is part of the path, so a smoke run is never taken for a quick one.
$(BUILD)/executed/$(PROFILE)/%.ipynb: %.py $(INRLIB_SRCS)
	$(PY) $(PIPE) execute $< $@ -p profile $(PROFILE) --results $(BUILD)/results --toc $(TOC) $(EXEC_FLAGS)

_book: $(EXECUTED)
	$(PY) $(PIPE) html --toc $(TOC) --config $(CONFIG) --executed $(BUILD)/executed/$(PROFILE) --build $(BUILD) $(HTML_FLAGS)

chapter: venv vendor
	@test -n "$(CHAPTER)" || { echo 'usage: make chapter CHAPTER=theory [PARAMS="-p profile paper -p device cuda"]' >&2; exit 2; }
	$(PY) $(PIPE) chapter $(CHAPTER) $(PARAMS) --toc $(TOC) --config $(CONFIG) --build $(BUILD) --results $(BUILD)/results $(EXEC_FLAGS) $(HTML_FLAGS)

# ---------------------------------------------------------------- live notebooks
PORT ?=
lab: venv
	$(PY) scripts/lab.py $(if $(PORT),--port $(PORT))

check-pages: chromium
	$(PY) scripts/check_pages.py --build $(BUILD)

# ---------------------------------------------------------------- tests and benchmarks
chromium:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		(apt-get update && apt-get install -y chromium chromium-driver)

test: venv vendor chromium lint
	$(PY) -m pytest $(PYTEST_ARGS)

# The inner loop: one file in seconds, e.g. make test-fast TESTS=tests/test_encodings.py (no book builds, no browser).
test-fast: venv
	$(PY) -m pytest -q -m "not book and not browser" $(if $(filter-out tests,$(TESTS)),$(TESTS)) $(PYTEST_ARGS)

# ruff over the repository, mypy over the core modules (both configured in pyproject.toml).
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

MODULE ?=
TESTS  ?= tests
# e.g. MUTANTS_ARGS="--work _build/mutwork/train --workers 2": a resumable run; add --rerun-survivors after new tests,
# or "--sample 100" to finish a long module on a random draw of its untested mutants (the table estimates the rest)
MUTANTS_ARGS ?=
mutants: venv
	@if [ -z "$(MODULE)" ]; then echo 'usage: make mutants MODULE=inrlib/ntk/spectra.py [TESTS="tests/ntk/test_spectra.py"]; scores so far:' >&2; \
	  $(PY) scripts/mutants.py --report; exit 0; fi
	@test -x $(VENV)/bin/mutmut || $(PY) -m pip install -q 'mutmut==3.8.1' -c constraints.txt
	$(PY) scripts/mutants.py $(MODULE) --tests $(TESTS) $(MUTANTS_ARGS)

bench: venv
	@set -e; for b in benchmarks/*_bench.py; do echo "== $$b"; $(PY) $$b $(BENCH_ARGS); done

clean:
	rm -rf $(BUILD) .pytest_cache
	find . -name __pycache__ -type d -not -path './$(VENV)/*' -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) $(VENDOR)
