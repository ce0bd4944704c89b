# Handoff: two commands do everything on a fresh machine.
#   make run   - the function app on loopback against the local Call Automation emulator,
#                replaying the bundled transferred calls (ARGS=--once exits after the replay)
#   make test  - installs what it needs, then lint, type checks, offline infra checks and tests
# and make package builds dist/function-app.zip, the package azd deploys (docs/deploy.md).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# The ARM models the Bicep is checked against (see arm-check below); defined here because the
# pytest rule needs them and make expands a rule's prerequisites where it reads the rule.
ARM_VENV   := .venv-arm
ARM_STAMP  := $(ARM_VENV)/.installed
ARM_MODELS := $(ARM_VENV)/arm-models.json

# Azurite (the Azure Storage emulator) for the call records, from package.json / package-lock.json.
NODE_STAMP := node_modules/.installed

.PHONY: run test lint typecheck pytest infra-check arm-models arm-check sipp bench package numbers local-settings clean

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@echo "Installing Handoff's dependencies into $(VENV) (about a minute on the first run)..." >&2
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

$(NODE_STAMP): package.json package-lock.json
	@echo "Installing Azurite into node_modules (npm ci, about 15 s on the first run)..." >&2
	npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

run: $(STAMP) $(NODE_STAMP)
	$(PY) -m local.run $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy shared functions function_app.py local bench

pytest: $(STAMP) $(NODE_STAMP) $(ARM_MODELS) sipp
	$(VENV)/bin/pytest

# SIPp, the SIP traffic generator (Debian package sip-tester): the real SIP peer that
# tests/cli/test_listen.py points at `handoff listen`. Installed once, as root or through sudo;
# the package lists are refreshed only when the install cannot find the package without it.
# apt's output is kept in a log and shown only when the install fails.
sipp:
	@command -v sipp >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then as_root=""; \
	  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then as_root="sudo -n"; \
	  else echo "make sipp: SIPp is not installed; install the package sip-tester as root (apt-get install sip-tester)" >&2; exit 1; fi; \
	  command -v apt-get >/dev/null 2>&1 || { echo "make sipp: no apt-get here; install SIPp (package sip-tester) so that 'sipp' is on PATH" >&2; exit 1; }; \
	  echo "make sipp: installing sip-tester"; \
	  log=$$(mktemp); install="$$as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends sip-tester"; \
	  $$install >"$$log" 2>&1 || { $$as_root apt-get update -qq >>"$$log" 2>&1 && $$install >>"$$log" 2>&1; } \
	    || { cat "$$log" >&2; rm -f "$$log"; echo "make sipp: could not install sip-tester" >&2; exit 1; }; \
	  rm -f "$$log"; \
	  command -v sipp >/dev/null 2>&1 || { echo "make sipp: sip-tester is installed but sipp is not on PATH" >&2; exit 1; }; \
	}

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

# Every resource body in infra/bicep against the ARM model of its exact type@apiVersion. The Azure
# management SDKs that carry those models are pinned in infra/arm-models.txt and live in their own
# venv (about 150 MB); infra/arm_models.py dumps the models the templates use to one JSON file, and
# tests/infra/arm_check.py (main venv: the Bicep parser) checks the templates against it, here and
# in the mutation tests of tests/infra/test_arm_models.py.
$(ARM_STAMP): infra/arm-models.txt
	rm -rf $(ARM_VENV)
	$(PYTHON) -m venv $(ARM_VENV)
	$(ARM_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -r infra/arm-models.txt
	$(ARM_VENV)/bin/python -m pip check --disable-pip-version-check
	touch $(ARM_STAMP)

$(ARM_MODELS): $(ARM_STAMP) infra/arm_models.py
	$(ARM_VENV)/bin/python infra/arm_models.py --out $(ARM_MODELS)

arm-models: $(ARM_MODELS)

arm-check: $(STAMP) $(ARM_MODELS)
	$(PY) -m tests.infra.arm_check

test: lint typecheck infra-check arm-check pytest

# The phone numbers routing.yaml's workstreams own: the deploy's Event Grid filter is derived from
# them (infra/hooks/preprovision.*), so the numbers live in routing.yaml only.
numbers: $(STAMP)
	@$(PY) -m shared.cli numbers --config routing.yaml

# handler and scale start Azurite: the same npm install as make run and make test.
bench: $(STAMP) $(NODE_STAMP)
	$(PY) -m bench.run $(ARGS)

# The deployment package: .funcignore's files, requirements.txt as Linux x86-64 wheels, and
# unchecked-hash bytecode for all of it (local/package.py says why). azd deploys this zip.
package: $(STAMP)
	$(PY) -m local.package

# local.settings.example.json from the settings list (shared/adapters/settings.py); commit the result.
local-settings: $(STAMP)
	$(PY) -m local.settings_example

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) $(ARM_VENV) node_modules dist .pytest_cache .mypy_cache .ruff_cache .hypothesis
