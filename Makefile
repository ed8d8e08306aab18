# The two commands (both complete on a fresh Debian/Ubuntu machine as root):
#   make lab    container lab up -> deploy -> verify (labs/local.yaml)
#   make test   unit tests + live tests (they bring up and tear down their own labs)
VENV ?= .venv
SPEC ?= labs/local.yaml
PYTHON ?= python3

.PHONY: lab test unit live lint down status bench setup host browser

lab: setup host
	$(VENV)/bin/swarmlab up --spec $(SPEC)

test: setup host browser
	$(VENV)/bin/ruff check swarmlab deploys inventories tests bench
	$(VENV)/bin/pytest tests -q -rs --durations=15

unit: setup
	$(VENV)/bin/pytest tests/unit -q -rs

live: setup host browser
	$(VENV)/bin/pytest tests/live -q -rs

lint: setup
	$(VENV)/bin/ruff check swarmlab deploys inventories tests bench

down: setup
	$(VENV)/bin/swarmlab down --spec $(SPEC)

status: setup
	$(VENV)/bin/swarmlab status --spec $(SPEC)

bench: setup host
	$(VENV)/bin/python -m bench

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

host:
	bash scripts/host-setup.sh

# headless Chromium for the report page's browser test (tests/live/report_page.py), not for make lab
browser:
	SWARMLAB_WITH_BROWSER=1 bash scripts/host-setup.sh
