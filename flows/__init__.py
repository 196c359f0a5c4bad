"""Prefect flows of libs-pipeline: wiring, retries, artifacts and events (the library does the work).

Importing this package sends the library's loggers (``libs_pipeline.*``, INFO and above) to the flow-run logs
that the Prefect UI shows: ``PREFECT_LOGGING_EXTRA_LOGGERS=libs_pipeline`` when Prefect is not imported yet,
else Prefect's API log handler directly. Library messages outside a flow run stay on the console only
(``PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW=ignore`` instead of a warning per message).
"""

import logging
import os
import sys

LIBRARY_LOGGER = "libs_pipeline"

os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", LIBRARY_LOGGER)
os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
_library_logger = logging.getLogger(LIBRARY_LOGGER)
if _library_logger.level == logging.NOTSET:
    _library_logger.setLevel(logging.INFO)


def _in_a_run(record: logging.LogRecord) -> bool:
    from prefect.context import FlowRunContext, TaskRunContext

    return bool(getattr(record, "flow_run_id", None) or FlowRunContext.get() or TaskRunContext.get())


if "prefect" in sys.modules:  # Prefect was configured before this package could set the variable
    from prefect.logging.handlers import APILogHandler

    if not any(isinstance(h, APILogHandler) for h in _library_logger.handlers):
        _handler = APILogHandler()
        _handler.addFilter(_in_a_run)
        _library_logger.addHandler(_handler)
