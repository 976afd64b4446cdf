# Two commands on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
EXTRAS ?= test,dev,slurm,aws,gke,gcs,tui
STAMP := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))
comma := ,
# Every install takes its versions from this lock (pip constraints): what passed in CI is
# what a newcomer gets. pyproject.toml keeps ranges for library users. `make lock` renews it.
LOCK := requirements.lock

.PHONY: venv demo test unit lint types docs bench clean lock versions ci-transcript

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -c $(LOCK) --upgrade pip

# Strict editable mode so mypy can follow the package-dir mapping; a new module needs
# the install re-run, so the stamp depends on every package folder's listing.
$(STAMP): pyproject.toml $(LOCK) $(BIN)/python $(wildcard scalable_cli/ scalable_cli/*/ providers/ providers/*/ state/)
	$(BIN)/pip install -q -c $(LOCK) -e ".[$(EXTRAS)]" --config-settings editable_mode=strict
	touch $(STAMP)

venv: $(STAMP)

demo: venv
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/demo.sh

test: venv
	$(BIN)/python -m pytest -q --durations=25

unit: venv
	$(BIN)/python -m pytest -q tests/unit

# `ruff format` is applied to new modules; the older ones keep their compact layout, so
# the formatter is not a gate (ruff's lint rules and the import contract are).
lint: venv
	$(BIN)/ruff check .
	$(BIN)/lint-imports

types: venv
	$(BIN)/mypy

docs: venv
	$(BIN)/sphinx-build -W -q -b html docs docs/_build/html

bench: venv
	$(BIN)/python benchmarks/run_all.py

# The CI example's steps run end to end (local target, state in S3 on a moto server).
ci-transcript: venv
	$(BIN)/python -m tests.integration.ci_pipeline docs/examples/ci/TRANSCRIPT.md

# Resolve the newest versions pyproject.toml allows in a throwaway venv and pin them all.
lock:
	rm -rf .lock-venv && $(PY) -m venv .lock-venv
	.lock-venv/bin/pip install -q --upgrade pip
	.lock-venv/bin/pip install -q -e ".[$(EXTRAS)]"
	.lock-venv/bin/pip freeze --all --exclude-editable | grep -vE '^(scalable|setuptools)==' > $(LOCK)
	rm -rf .lock-venv

# What this venv runs (CI prints it).
versions: venv
	$(BIN)/pip freeze --all --exclude-editable

clean:
	rm -rf $(VENV) docs/_build .pytest_cache .mypy_cache .ruff_cache
