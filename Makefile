# Handoff: two commands do everything on a fresh machine.
#   make run   - the function app on loopback against the local Call Automation emulator,
#                replaying the bundled transferred calls (ARGS=--once exits after the replay)
#   make test  - installs what it needs, then lint, type checks, offline infra checks and tests
# and make package builds dist/function-app.zip, the package azd deploys (docs/deploy.md).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck pytest infra-check bench package clean

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@echo "Installing Handoff's dependencies into $(VENV) (about a minute on the first run)..."
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m local.run $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy shared functions function_app.py local bench

pytest: $(STAMP)
	$(VENV)/bin/pytest

# Offline Bicep checks. checkov pins many packages of its own, so it lives in its own venv,
# at a pinned version; it runs with --skip-download and no Bridgecrew/Prisma API key, so it
# needs no network beyond the package registry that installs it.
CHECKOV_VERSION := 3.3.30
CHECKOV_VENV    := .venv-checkov
CHECKOV_STAMP   := $(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION)

$(CHECKOV_STAMP):
	rm -rf $(CHECKOV_VENV)
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check checkov==$(CHECKOV_VERSION)
	touch $(CHECKOV_STAMP)

infra-check: $(CHECKOV_STAMP)
	$(CHECKOV_VENV)/bin/python infra/check_checkov.py --checkov $(CHECKOV_VENV)/bin/checkov

test: lint typecheck infra-check pytest

bench: $(STAMP)
	$(PY) -m bench.run $(ARGS)

# The deployment package: .funcignore's files, requirements.txt as Linux x86-64 wheels, and
# unchecked-hash bytecode for all of it (local/package.py says why). azd deploys this zip.
package: $(STAMP)
	$(PY) -m local.package

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) dist .pytest_cache .mypy_cache .ruff_cache .hypothesis
