# One command to run the server, one to run the tests; both set everything up first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install run test test-slow lint bench bench-quick web clean

$(BIN)/.installed: setup.cfg setup.py pyproject.toml store/_md5lanes.c store/_textscan.c
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/.installed

run: install
	$(BIN)/tus-staging serve

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Three test processes on two cores: most tests wait on sockets and subprocesses.
test: lint
	$(BIN)/pytest -n 3

test-slow: install
	$(BIN)/pytest -m slow -s

bench: install
	$(BIN)/python bench/bench_suite.py

bench-quick: install
	$(BIN)/python bench/bench_suite.py --quick

# Rebuild the web page's bundle into tus_staging/web/ (committed: install and run need no Node).
web:
	cd web && npm ci --no-audit --no-fund && node build.mjs

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis *.egg-info
