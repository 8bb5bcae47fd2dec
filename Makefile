# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PIP := $(PY) -m pip install --disable-pip-version-check -q -c constraints.txt

.PHONY: install chromium demo demo-full test test-slow test-all bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) torch==2.13.0
	$(PIP) -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/sonoshift demo

# The demo with 3 translator training seeds (same data and frozen judges) and the whole DiFUSAL protocol (10% and
# 25% labels, every arm) once per loop seed: runs/demo-full/seeds.md, mean +- spread.
demo-full: $(STAMP)
	$(VENV)/bin/sonoshift demo --seeds 0,1,2 -o runs/demo-full difusal.config=configs/cpu/difusal.yaml

test: $(STAMP)
	$(PY) -m pytest -n 2 -q

# Headless Chromium for the report's browser test (Debian package `chromium`), installed when missing.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
chromium:
	@test -x /usr/bin/chromium || $(SUDO) apt-get install -y -q chromium \
		|| ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium)

test-slow: $(STAMP) chromium
	SONOSHIFT_REQUIRE_CHROMIUM=1 $(PY) -m pytest -q --runslow -m slow

test-all: $(STAMP)
	$(PY) -m pytest -n 2 -q --runslow

clean:
	rm -rf $(VENV) runs .pytest_cache
