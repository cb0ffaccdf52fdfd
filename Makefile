# The few verbs people need. Each installs what it needs into .venv first.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
# The stamp names the pyproject and the pins it was installed from: either changing reinstalls.
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | sha1sum | cut -c1-12)

.PHONY: install lock up test lint typecheck unit bench schemas clean services browser

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

# Re-pin: install the newest releases pyproject allows (ignoring the old pins), then write them down.
lock:
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --upgrade -e '.[dev]'
	( echo "# Every release CI tested, written by 'make lock' (pip freeze of .venv); used by 'make install'."; \
	  $(PY) -m pip freeze --exclude-editable ) > constraints.txt
	rm -f $(VENV)/.installed-*
	touch $(VENV)/.installed-$$(cat pyproject.toml constraints.txt | sha1sum | cut -c1-12)

up: install
	$(VENV)/bin/cpcs up

services:
	@bash deploy/local/ensure-services.sh

# Headless Chromium and its driver for the web page tests (Debian packages; root or sudo).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		( $$(command -v sudo) apt-get update && $$(command -v sudo) apt-get install -y chromium chromium-driver )

lint: install
	$(VENV)/bin/ruff check .

typecheck: install
	$(VENV)/bin/mypy shared services bench

unit: install
	$(PY) -m pytest

test: install services browser lint typecheck unit

bench: install services
	$(PY) -m bench.run
	$(PY) -m bench.images
	$(PY) -m bench.realdata

schemas: install
	$(PY) -m tests.contracts.snapshot

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
