# TenderPool — `make run` starts the service with demo data, `make test` runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# auto: run the PostgreSQL pass when a server answers (starting the local cluster if needed);
# required: a missing server fails the run (CI); skip: SQLite only.
TENDERPOOL_TEST_POSTGRES ?= auto
export TENDERPOOL_TEST_POSTGRES

.PHONY: install run test system-deps test-sqlite test-postgres lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 $(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# axe-core for the accessibility checks of the browser journeys (tests/browser), from the npm
# registry at install time, never at test time; Chromium itself comes from Debian (system-deps).
AXE := tests/browser/node_modules/axe-core/axe.min.js

$(AXE): tests/browser/package.json tests/browser/package-lock.json
	@command -v npm >/dev/null || { echo "npm is missing (Debian package nodejs): needed for tests/browser" >&2; exit 1; }
	PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --prefix tests/browser --no-audit --no-fund
	touch $(AXE)

install: $(STAMP) $(AXE)

run: $(STAMP)
	$(VENV)/bin/tenderpool run

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check tenderpool scrapers
	$(VENV)/bin/mypy
	$(VENV)/bin/bandit -q -r tenderpool scrapers -ll

test-sqlite: $(STAMP) $(AXE)
	TENDERPOOL_TEST_DB=sqlite $(PY) -m pytest -q

test-postgres: $(STAMP) $(AXE)
	@if .ci/postgres.sh; then \
		TENDERPOOL_TEST_DB=postgres $(PY) -m pytest -q; \
	elif [ "$(TENDERPOOL_TEST_POSTGRES)" = "required" ]; then \
		echo "PostgreSQL is required (TENDERPOOL_TEST_POSTGRES=required) but 127.0.0.1:5432 does not answer" >&2; exit 1; \
	elif [ "$(TENDERPOOL_TEST_POSTGRES)" = "skip" ]; then \
		echo "PostgreSQL pass skipped (TENDERPOOL_TEST_POSTGRES=skip)"; \
	else \
		echo "WARNING: no PostgreSQL on 127.0.0.1:5432: the PostgreSQL pass did NOT run" >&2; \
	fi

# Debian packages the suite needs (fonts, poppler-utils, chromium): installed when missing.
system-deps:
	.ci/system-packages.sh

# The two passes are independent (each its own databases, temporary files and free ports), so
# they run side by side: on two cores the suite takes about as long as its slower pass.
# --output-sync keeps each pass's report in one piece.
test: system-deps lint
	$(MAKE) --no-print-directory -j2 --output-sync=target test-sqlite test-postgres

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache tests/browser/node_modules
