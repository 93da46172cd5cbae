# vaultd: `make run` starts the local cluster, `make test` runs every test. Both set up what is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: setup test lint bench run clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "vaultd needs Python 3.11 or newer as $(PYTHON)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

test: setup lint
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check .

bench: setup
	$(PY) bench/storage_bench.py --quiet-wait 10 --out bench/results/storage.jsonl

run: setup
	-$(PY) -m vaultd server --config cluster.toml --node n1

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
