# One entry point for setting up, testing and trying callmeter.
#   make install     the real peers (apt, when missing) and callmeter with its test extras
#   make test        install, then lint, format check, type check and every test (interop too)
#   make quickstart  install, then the quickstart test: built-in registrar, local Ray, results in DuckDB

PYTHON ?= python3

.PHONY: install test quickstart

install:
	PYTHON=$(PYTHON) scripts/install.sh

test: install
	ruff check .
	ruff format --check .
	mypy
	$(PYTHON) -m pytest -q

quickstart: install
	callmeter run examples/quickstart.yaml
