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


@pytest.fixture
def recorded_events(monkeypatch):
    """Events emitted by the code under test, recorded by Prefect's asserting events client (not sent).
    Call the yielded function to drain the worker and get the events so far."""
    from prefect.events.clients import AssertingEventsClient
    from prefect.events.worker import EventsWorker

    AssertingEventsClient.reset()
    original = EventsWorker.instance  # bound classmethod: a new worker when the last one was stopped (drained)

    def live_worker() -> EventsWorker:
        return original(AssertingEventsClient)

    monkeypatch.setattr(EventsWorker, "instance", lambda *_: live_worker())

    def events():
        live_worker().drain()  # the clients it used keep their events in AssertingEventsClient.all
        return [e for client in AssertingEventsClient.all for e in client.events]

    try:
        yield events
    finally:
        live_worker().drain()
