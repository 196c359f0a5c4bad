"""The library's loggers reach the flow-run logs (what the Prefect UI shows) once the flows package is imported."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

CHECK = (
    "import logging, {first}\n"
    "from prefect.logging.handlers import APILogHandler\n"
    "logger = logging.getLogger('libs_pipeline.models.training')\n"
    "print(logger.getEffectiveLevel(), sum(isinstance(h, APILogHandler) for h in logging.getLogger('libs_pipeline').handlers))\n"
)


@pytest.mark.parametrize("first", ["flows.train", "prefect, flows.train", "libs_pipeline.cli, flows.train"])
def test_library_loggers_get_the_api_handler(first):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_LOGGING")}
    out = subprocess.run([sys.executable, "-c", CHECK.format(first=first)], env=env, capture_output=True, text=True,
                         timeout=120, check=True)
    assert out.stdout.split() == ["20", "1"], out.stderr  # INFO, one API handler whichever was imported first


def test_library_log_lands_in_the_flow_run_logs(prefect_harness):
    import logging

    from prefect import flow, get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    import flows  # noqa: F401  (configures the library loggers)

    @flow
    def uses_the_library() -> str:
        logging.getLogger("libs_pipeline.models.training").info("library message %d", 42)
        from prefect.runtime import flow_run

        return flow_run.get_id()

    run_id = uses_the_library()
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()
    with get_client(sync_client=True) as client:
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
    assert [(r.name, r.message) for r in logs if r.name.startswith("libs_pipeline")] == [
        ("libs_pipeline.models.training", "library message 42")]
