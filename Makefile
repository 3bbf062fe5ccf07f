# Two commands do all set-up on a fresh machine:  `make demo`  and  `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-slow lint bench mutate clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[test]"
	touch $(STAMP)

demo: install
	$(BIN)/isthmus demo

test: install
	$(BIN)/python -m pytest -q

test-slow: install
	$(BIN)/python -m pytest -q -m slow

# ruff lint and format check on src, mypy on all of src/isthmus (the [tool.mypy] files in pyproject.toml)
lint: install
	$(BIN)/ruff check src
	$(BIN)/ruff format --check src
	$(BIN)/mypy

# Mutation testing of the core modules (slow: minutes per module; not part of `make test`).
# `make mutate MODULES="sparse checkpoint"` picks modules from tools/mutation.toml; BUDGET is seconds per module.
# Scores per module and the excluded (equivalent) mutants with their arguments: docs/mutation.md.
MODULES ?=
BUDGET ?= 1800
mutate: install
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[test,mutate]"
	$(BIN)/python tools/mutate.py $(MODULES) --budget $(BUDGET)

bench: install
	$(BIN)/python benchmarks/trainer_overhead.py
	$(BIN)/python benchmarks/digits_reconstruction.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info
