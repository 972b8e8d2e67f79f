# ATD-DL developer targets. `make demo` and `make test` work on a fresh machine:
# they create .venv, install the package (regular PyPI torch/torchvision) and the
# Debian packages the project uses (source-extractor) when they are missing.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# Some machines' pip config points at a local CPU-only torch wheel (+cpu), with which
# PyPI torchvision cannot import; ignore such local config so the regular PyPI torch
# build is installed (it runs on CPU and GPU).
PIP := env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null $(PY) -m pip
SUDO := $(shell [ "$$(id -u)" = "0" ] || echo sudo)
# Science modules type-checked with mypy (Lightning/Hydra wrappers excluded).
MYPY_PATHS := atd_dl/errors.py atd_dl/io atd_dl/prep atd_dl/labels atd_dl/sim atd_dl/data atd_dl/detect atd_dl/evaluate atd_dl/baselines atd_dl/models atd_dl/losses.py
DEMO_DIR ?= demo_output

.PHONY: install system-deps demo test test-slow test-all test-gpu lint typecheck pytest wheel-check bench clean

system-deps:
	@command -v source-extractor >/dev/null 2>&1 || command -v sex >/dev/null 2>&1 || \
	  { echo "installing Debian package source-extractor"; \
	    $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq source-extractor; }

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[all,dev]'
	touch $(STAMP)

install: system-deps $(STAMP)

demo: install
	$(VENV)/bin/atd-dl demo --out $(DEMO_DIR)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install
	$(VENV)/bin/mypy $(MYPY_PATHS)

# Test tiers (README "Testing"): `make test` = lint + types + the fast tier (tests not
# marked slow, under 5 min on 2 CPU cores); `make test-slow` = the slow tier (training
# runs, notebooks, long simulations); `make test-all` = everything plus the wheel check.
# Tests marked gpu skip without CUDA; `make test-gpu` runs them with the GPUs visible.
pytest: install
	$(PY) -m pytest -q -m "not slow"

test: lint typecheck pytest

test-slow: install
	$(PY) -m pytest -q -m "slow"

test-gpu: install
	$(PY) -m pytest -q -m "gpu"

test-all: lint typecheck install
	$(PY) -m pytest -q
	$(MAKE) wheel-check

# build the wheel, install it into a fresh environment and run detect + train from a
# folder outside the checkout (scripts/check_wheel.sh, ~1 min)
wheel-check: install
	PYTHON=$(PY) scripts/check_wheel.sh

bench: install
	for f in benchmarks/bench_*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache .ruff_cache .mypy_cache
