# The two commands: `make demo` and `make test`. Everything runs in .venv, created on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
README_DIR ?= .

.PHONY: venv browser postgres wrk test demo lab bench readme _readme sync clean

# torch first, pinned: the CPU wheel lies on local disk here, while an unpinned torch would pull a multi-GB CUDA
# build. The package itself asks only for torch>=2.2, so a GPU user's own build is kept.
$(STAMP): settings.ini setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --progress-bar off -q torch==2.13.0
	$(PY) -m pip install --progress-bar off -q -e ".[dev]"
	touch $@

venv: $(STAMP)

# The browser tests drive Debian's Chromium: Playwright cannot download its own browsers here. Installed once where
# missing (sudo only when not root); without apt-get, one line says what to install. `.ci/run` uses this same target.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if ! command -v apt-get >/dev/null 2>&1; then \
	    echo "make test: the browser tests need Chromium; install it with your system's packages, then run make test again"; \
	    exit 1; \
	  fi; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  echo "make test: installing Debian's chromium for the browser tests (once; about a minute)"; \
	  log=$$(mktemp); \
	  if ! { $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium; } >$$log 2>&1; then \
	    tail -20 $$log; echo "make test: installing chromium failed (above); install it by hand, then run make test again"; \
	    exit 1; \
	  fi; \
	  rm -f $$log; \
	}

# The store's tests run on SQLite and on a real PostgreSQL server: the tests start their own (initdb in a temporary
# folder, as the postgres user where they run as root) from the machine's packages, installed here where missing.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || { \
	  if ! command -v apt-get >/dev/null 2>&1; then \
	    echo "make test: the store's tests need a PostgreSQL server; install it with your system's packages, then run make test again"; \
	    exit 1; \
	  fi; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  echo "make test: installing Debian's postgresql for the store's tests (once)"; \
	  log=$$(mktemp); \
	  if ! { $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q postgresql; } >$$log 2>&1; then \
	    tail -20 $$log; echo "make test: installing postgresql failed (above); install it by hand, then run make test again"; \
	    exit 1; \
	  fi; \
	  rm -f $$log; \
	}

test: $(STAMP) browser postgres
	$(PY) -m pytest

demo: $(STAMP)
	$(VENV)/bin/workbench run nbs/pipelines/demo.yaml --workers 2

lab: $(STAMP)
	$(VENV)/bin/jupyter lab --notebook-dir=nbs

# bench/serve.py loads servers with wrk (Debian's package): Python load clients saturate before the server does.
wrk:
	@command -v wrk >/dev/null 2>&1 || { \
	  command -v apt-get >/dev/null 2>&1 || { echo "make bench: bench/serve.py needs wrk; install it with your system's packages"; exit 1; }; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  echo "make bench: installing Debian's wrk (once)"; \
	  $$SUDO apt-get install -y -q wrk >/dev/null 2>&1 || { $$SUDO apt-get update -q >/dev/null && $$SUDO apt-get install -y -q wrk >/dev/null; } || \
	    { echo "make bench: installing wrk failed; install it by hand"; exit 1; }; \
	}

bench: $(STAMP) wrk
	for script in bench/*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

# README.md is nbs/index.ipynb rendered to markdown (nbdev_readme needs quarto, which cannot be installed here);
# cells starting with `#| hide` are left out. tests/test_sync.py renders it again and compares.
readme: $(STAMP) _readme
_readme:
	$(VENV)/bin/jupyter nbconvert --log-level=WARN --to markdown nbs/index.ipynb \
	  --RegexRemovePreprocessor.patterns='^\#\|\s*hide' --output README --output-dir $(README_DIR)

# Bring generated code, clean notebooks and README.md in step with the notebooks.
sync: $(STAMP)
	$(VENV)/bin/nbdev_export
	$(VENV)/bin/nbdev_clean
	$(MAKE) --no-print-directory _readme

clean:
	rm -rf $(VENV) test-results .pytest_cache
