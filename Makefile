# The two commands a newcomer needs: `make run` and `make test` (see README).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PG_TEST_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/test
PORT ?= 8000

.PHONY: run test test-sqlite test-postgres setup browser lint messages clean reliability bench

setup: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Debian's Chromium and CJK fonts for the browser tests (Playwright's own download
# does not work here); installed once, as root.
browser:
	@if ! command -v chromium >/dev/null || ! fc-list | grep -qi "Noto Sans CJK"; then \
	  echo "installing chromium and fonts-noto-cjk"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-cjk >/dev/null; \
	fi

run: setup
	$(BIN)/portal init
	$(BIN)/portal demo
	$(BIN)/python -m portal.devserver --port $(PORT)

lint: setup
	$(BIN)/ruff check .

test: setup browser lint test-sqlite test-postgres

test-sqlite:
	$(BIN)/python -m pytest -q

# Always in CI; locally when a PostgreSQL server answers.
test-postgres:
	@if [ "$$CI" = "true" ] || pg_isready -q -h 127.0.0.1 -p 5432; then \
	  echo "== the same suite on PostgreSQL =="; \
	  TEST_DATABASE_URL=$(PG_TEST_URL) $(BIN)/python -m pytest -q; \
	else \
	  echo "PostgreSQL is not reachable on 127.0.0.1:5432: skipped its run (CI always runs it)"; \
	fi

# The crash harness at full size (tests/reliability/): clients rate through every channel
# while the server is SIGKILLed and restarted; figures in tests/reliability/results.json.
RELIABILITY ?= --clients 16 --duration 60 --kills 10

reliability: setup
	$(BIN)/python -m tests.reliability $(RELIABILITY)
	@if [ "$$CI" = "true" ] || pg_isready -q -h 127.0.0.1 -p 5432; then \
	  $(BIN)/python -m tests.reliability $(RELIABILITY) --database-url $(PG_TEST_URL); \
	else \
	  echo "PostgreSQL is not reachable on 127.0.0.1:5432: skipped its run"; \
	fi

messages: setup
	$(BIN)/pybabel extract -F babel.cfg -o portal/i18n/messages.pot --no-location --sort-output \
	  --ignore-dirs=".* node_modules .venv var" \
	  -k N_ -k Invalid -k Conflict -k NotFound -k BadRequest -k Forbidden -k Unauthorized -k RateLimited -k PayloadTooLarge -k PortalError .
	$(BIN)/pybabel update -i portal/i18n/messages.pot -d portal/i18n -l zh_Hans --no-fuzzy-matching

# The benchmark suite (docs/performance.md): `make bench` is the full run (about 46 min
# once its 1M and 10M databases exist in bench/.work; making the 10M one takes ~52 min
# more); `make bench ARGS=--quick` is the regression guard (about 4 min, fails when a
# figure is below half its target), which .ci/run calls with `--unguarded ingest.`.
bench: setup
	@command -v wrk >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null)
	$(BIN)/python -m bench.run $(ARGS)

clean:
	rm -rf var/portal.db* var/meili
