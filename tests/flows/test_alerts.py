"""deployments/alerts.py and `libs-pipeline deploy-alerts` against a temporary Prefect server: the webhook block and
the two automations are created once and updated (never duplicated) on a second run."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.events import DEGRADED_CHAMPION_KEPT

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("prefect_harness")


def load_alerts():
    spec = importlib.util.spec_from_file_location("libs_pipeline_alerts", REPO / "deployments" / "alerts.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def automations_named(name: str) -> list:
    from prefect import get_client

    with get_client(sync_client=True) as client:
        return client.read_automations_by_name(name)


def test_deploy_alerts_is_idempotent():
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    alerts = load_alerts()
    assert alerts.DEGRADED_CHAMPION_KEPT == DEGRADED_CHAMPION_KEPT
    first = alerts.deploy_alerts("http://127.0.0.1:9/first")
    second = alerts.deploy_alerts("http://127.0.0.1:9/second", flow_name="recalibrate")
    assert set(first) == {alerts.BLOCK_NAME, alerts.FAILED_AUTOMATION, alerts.DEGRADED_AUTOMATION}
    assert first == second  # same block and automations, updated in place
    assert CustomWebhookNotificationBlock.load(alerts.BLOCK_NAME).url == "http://127.0.0.1:9/second"

    (failed,) = automations_named(alerts.FAILED_AUTOMATION)
    assert failed.enabled and failed.trigger.expect == {"prefect.flow-run.Failed", "prefect.flow-run.Crashed"}
    assert failed.trigger.match_related.root == {"prefect.resource.role": "flow", "prefect.resource.name": "recalibrate"}
    (action,) = failed.actions
    assert action.type == "send-notification" and str(action.block_document_id) == first[alerts.BLOCK_NAME]
    assert "{{ flow_run.state.message }}" in action.body
    (degraded,) = automations_named(alerts.DEGRADED_AUTOMATION)
    assert degraded.trigger.expect == {DEGRADED_CHAMPION_KEPT}
    assert degraded.trigger.match.root == {"prefect.resource.id": "libs-pipeline.model.*"}


def test_deploy_alerts_cli():
    from libs_pipeline.cli import app

    result = CliRunner().invoke(app, ["deploy-alerts", "--webhook", "http://127.0.0.1:9/cli"])
    assert result.exit_code == 0, result.output
    alerts = load_alerts()
    lines = dict(line.split(": ", 1) for line in result.output.strip().splitlines())
    assert set(lines) == {alerts.BLOCK_NAME, alerts.FAILED_AUTOMATION, alerts.DEGRADED_AUTOMATION}
    assert [str(a.id) for a in automations_named(alerts.FAILED_AUTOMATION)] == [lines[alerts.FAILED_AUTOMATION]]


def test_deploy_alerts_needs_a_server(tmp_path):
    """Without PREFECT_API_URL the alerts would land on a temporary server that vanishes: refused, exit 2."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["PREFECT_HOME"] = str(tmp_path)
    exe = Path(sys.executable).with_name("libs-pipeline")
    out = subprocess.run([str(exe), "deploy-alerts", "--webhook", "http://x/y"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert "error: PREFECT_API_URL is not set" in out.stderr
