# The two README commands. Both create or reuse .venv and are safe to run twice.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.libs-pipeline-installed
DEMO_DIR ?= demo-output
# no usage telemetry from the local Prefect server (there is no internet here anyway)
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false

.PHONY: demo test install clean-demo

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/libs-pipeline demo --out $(DEMO_DIR)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

clean-demo:
	rm -rf $(DEMO_DIR)
