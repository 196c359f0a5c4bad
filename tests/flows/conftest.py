"""Prefect test harness for flow tests: a temporary PREFECT_HOME and a throw-away local API server."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory):
    """Run flows against a temporary SQLite-backed Prefect server for the whole session (opt-in)."""
    home = tmp_path_factory.mktemp("prefect-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PREFECT_HOME", str(home))
        from prefect.settings import PREFECT_HOME, temporary_settings
        from prefect.testing.utilities import prefect_test_harness

        with temporary_settings(updates={PREFECT_HOME: str(home)}):
            with prefect_test_harness(server_startup_timeout=120):
                yield
