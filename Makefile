# The two README commands. Both create or reuse .venv and are safe to run twice.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.libs-pipeline-installed
DEMO_DIR ?= demo-output
# no usage telemetry from the local Prefect server (there is no internet here anyway)
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false

CHROMIUM ?= /usr/bin/chromium

.PHONY: demo test install browser clean-demo

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/libs-pipeline demo --out $(DEMO_DIR)

test: $(STAMP) browser
	$(PY) -m pytest $(PYTEST_ARGS)

# Debian's chromium for the Prefect UI browser test (tests/integration/test_recalibration_server.py, driven by
# playwright from the test extra, which never downloads a browser). Skipped when it is installed; needs root.
browser:
	@if [ -x $(CHROMIUM) ]; then echo "chromium: $(CHROMIUM)"; \
	elif [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	else echo "chromium is not installed and this is not root: run 'sudo make browser' (the browser test skips)"; fi

clean-demo:
	rm -rf $(DEMO_DIR)
