# The two commands of the README: `make demo` (the platform's main job) and `make test` (the suite).
# Both install what they need: the virtualenv, the Kafka jars (Maven), PostgreSQL (apt) when missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv up down status test demo lint generate services

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

up:
	$(PYTHON) -m deploy.local.stack up

down:
	-$(PY) -m deploy.local.services down 2>/dev/null
	$(PYTHON) -m deploy.local.stack down

status:
	$(PYTHON) -m deploy.local.stack status

test: venv up lint
	$(PY) -m pytest -q

demo: venv up
	$(PY) -m deploy.local.demo

lint: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy contracts runtime services deploy tests bench conftest.py

generate: venv
	$(PY) -m contracts.generate
	$(PY) -m services.openapi
