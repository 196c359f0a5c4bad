"""A real `prefect server start` + `deployments/serve.py` (recalibrate and ingest deployments), shared by the tests
of this module, which run in order:

1. trigger the recalibrate deployment through the API twice: the first run promotes a champion, the second skips;
2. the ingest deployment lands a new spectra version: its event triggers a recalibrate run, which completes;
3. the alert automations (deployments/alerts.py) deliver a failed run's notification to a loopback HTTP receiver;
4. tests/integration/test_prefect_ui.py opens the summary artifact in a real browser.

Runs by default (marked integration and slow); skipped only when the prefect executable is absent. The server
and the serve process are started in their own process groups and killed at teardown, also on failure.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import yaml

from libs_pipeline.registry import ModelRegistry
from libs_pipeline.spectra.ingest import ingest_campaign
from libs_pipeline.spectra.store import SpectraStore
from libs_pipeline.testing.campaign_files import write_campaign

REPO = Path(__file__).resolve().parents[2]
PREFECT_EXE = shutil.which("prefect", path=str(Path(sys.executable).parent)) or shutil.which("prefect")
DEPLOYMENT = "recalibrate/nightly"
INGEST_DEPLOYMENT = "ingest/manual"
#: Small and fast: what the served deployment runs by default (the event-triggered run uses it).
TINY_CONFIG = {
    "synthesis": {"per_sample": 16, "chunk_size": 64, "n_workers": 1},
    "training": {"max_steps": 10, "eval_every": 5, "batch_size": 16, "val_fraction": 0.34,
                 "stem_channels": 2, "block_channels": [2], "dense_units": 8, "head_units": 4},
    "promotion": {"max_flag_rate": 1.0},
}
STARTUP_TIMEOUT_S = 180
RUN_TIMEOUT_S = 600

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.timeout(900),
    pytest.mark.skipif(PREFECT_EXE is None, reason="the prefect executable is not installed"),
]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path: Path, n: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def stop_group(proc: subprocess.Popen, grace_s: float = 20.0) -> None:
    """SIGTERM the process group, then SIGKILL whatever is left after ``grace_s``."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    except ProcessLookupError:
        pass


def wait_for(predicate, timeout_s: float, what: str, proc: subprocess.Popen, log: Path, every_s: float = 0.5):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{what}: process exited with {proc.returncode}\n{tail(log)}")
        try:
            value = predicate()
            if value:
                return value
        except Exception:  # not up yet
            pass
        time.sleep(every_s)
    pytest.fail(f"{what}: not ready after {timeout_s} s\n{tail(log)}")


@pytest.fixture(scope="module")
def prefect_stack(tmp_path_factory):
    """A real Prefect server (UI on) and the served recalibrate and ingest deployments; yields
    (api_url, store root, timings, serve log)."""
    tmp_path = tmp_path_factory.mktemp("prefect-stack")
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_API_URL": api_url,
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_SERVER_UI_ENABLED": "true",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PYTHONUNBUFFERED": "1",
    }
    root = tmp_path / "store"
    first_campaign = write_campaign(tmp_path / "campaign-1", n_samples=8, n_shots=16, n_channels=256)
    ingest_campaign(first_campaign, root, name="toy")  # the library: no event, nothing triggered yet
    recal_config = tmp_path / "recalibration.yaml"
    recal_config.write_text(yaml.safe_dump(TINY_CONFIG))

    procs: list[subprocess.Popen] = []
    timings: dict[str, float] = {}
    server_log, serve_log = tmp_path / "server.log", tmp_path / "serve.log"
    try:
        t0 = time.perf_counter()
        with open(server_log, "wb") as out:
            server = subprocess.Popen(
                [PREFECT_EXE, "server", "start"], env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        procs.append(server)

        def healthy() -> bool:
            with urllib.request.urlopen(f"{api_url}/health", timeout=2) as resp:
                return resp.status == 200

        wait_for(healthy, STARTUP_TIMEOUT_S, "prefect server", server, server_log)
        timings["server_start_s"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        with open(serve_log, "wb") as out:
            serve = subprocess.Popen(
                [sys.executable, str(REPO / "deployments" / "serve.py"), "--root", str(root), "--dataset", "toy",
                 "--only", "recalibrate", "ingest", "--no-schedules", "--recalibration-config", str(recal_config)],
                env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        procs.append(serve)

        from prefect import get_client
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings(updates={PREFECT_API_URL: api_url}):

            def deployment():
                with get_client(sync_client=True) as client:
                    return client.read_deployment_by_name(INGEST_DEPLOYMENT) and client.read_deployment_by_name(DEPLOYMENT)

            wait_for(deployment, STARTUP_TIMEOUT_S, "served deployment", serve, serve_log)
            timings["serve_ready_s"] = time.perf_counter() - t0
            yield api_url, root, timings, serve_log, tmp_path, serve
    finally:
        for proc in reversed(procs):
            stop_group(proc)


def artifacts_of(flow_run_id) -> dict:
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {a.key: a for a in found}


def test_recalibration_through_a_real_server(prefect_stack, capsys):
    from prefect import get_client
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    api_url, root, timings, serve_log, *_ = prefect_stack
    config = {"root": str(root), "dataset": "toy", **TINY_CONFIG}
    registry = ModelRegistry(root)
    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        with get_client(sync_client=True) as client:
            dep = client.read_deployment_by_name(DEPLOYMENT)
        limit = dep.global_concurrency_limit.limit if dep.global_concurrency_limit else dep.concurrency_limit
        assert limit == 1
        assert dep.concurrency_options.collision_strategy == "ENQUEUE"

        t0 = time.perf_counter()
        first = run_deployment(DEPLOYMENT, parameters={"config": config}, timeout=RUN_TIMEOUT_S, poll_interval=1)
        timings["first_run_s"] = time.perf_counter() - t0
        assert first.state is not None and first.state.is_completed(), f"{first.state}\n{tail(serve_log)}"
        champion = registry.resolve("toy", "champion")
        assert registry.manifest("toy", champion)["prefect_flow_run_id"] == str(first.id)
        arts = artifacts_of(first.id)
        assert {"toy-recalibration-summary", "toy-recalibration-metrics", "toy-model-version",
                "toy-data-validation", "toy-recalibration-parity-plot"} <= set(arts)
        assert "# Recalibration of `toy`: promoted" in arts["toy-recalibration-summary"].data
        assert "data:image/png;base64," in arts["toy-recalibration-summary"].data  # figures show in the UI
        assert "file://" not in arts["toy-recalibration-summary"].data
        assert champion in arts["toy-model-version"].data

        t0 = time.perf_counter()
        second = run_deployment(DEPLOYMENT, parameters={"config": config}, timeout=RUN_TIMEOUT_S, poll_interval=1)
        timings["second_run_s"] = time.perf_counter() - t0
        assert second.state is not None and second.state.is_completed(), f"{second.state}\n{tail(serve_log)}"
        assert registry.resolve("toy", "champion") == champion
        assert registry.versions("toy") == [champion]
        summary = artifacts_of(second.id)["toy-recalibration-summary"].data
        assert "# Recalibration of `toy`: skipped" in summary and "nothing changed" in summary

        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs()
        assert {r.id for r in runs} >= {first.id, second.id}
        assert all(r.state.is_completed() for r in runs if r.id in (first.id, second.id))
    with capsys.disabled():
        print("\nintegration timings (s): " + ", ".join(f"{k}={v:.1f}" for k, v in timings.items()))


def recalibrate_runs(client) -> dict:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    runs = client.read_flow_runs(deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["nightly"])))
    return {r.id: r for r in runs}


def test_a_new_spectra_version_triggers_a_recalibration(prefect_stack, capsys):
    """ingest/manual lands a new version -> event libs-pipeline.spectra.version-created -> the deployment trigger
    creates a recalibrate run -> it completes and trains on that version; the library's logs are in its logs."""
    from prefect import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    api_url, root, timings, serve_log, tmp_path, serve = prefect_stack
    manifest = write_campaign(tmp_path / "campaign-2", n_samples=2, n_shots=16, n_channels=256, seed=1, prefix="T")
    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        with get_client(sync_client=True) as client:
            before = set(recalibrate_runs(client))
        t0 = time.perf_counter()
        ingested = run_deployment(INGEST_DEPLOYMENT, parameters={"config": {"manifest": str(manifest), "root": str(root),
                                                                       "name": "toy"}},
                                  timeout=RUN_TIMEOUT_S, poll_interval=1)
        assert ingested.state.is_completed(), f"{ingested.state}\n{tail(serve_log)}"
        version = SpectraStore(root).latest("toy")

        def triggered_run():
            with get_client(sync_client=True) as client:
                new = [r for i, r in recalibrate_runs(client).items() if i not in before]
            return new[0] if len(new) == 1 and new[0].state.is_final() else None

        run = wait_for(triggered_run, RUN_TIMEOUT_S, "event-triggered recalibrate run", serve, serve_log, every_s=1)
        timings["triggered_run_s"] = time.perf_counter() - t0
        assert run.state.is_completed(), f"{run.state}\n{tail(serve_log)}"
        assert run.parameters["config"]["dataset"] == "toy"
        assert "# Recalibration of `toy`: " in artifacts_of(run.id)["toy-recalibration-summary"].data
        registry = ModelRegistry(root)
        (trained,) = [registry.manifest("toy", v) for v in registry.versions("toy")
                      if registry.manifest("toy", v)["prefect_flow_run_id"] == str(run.id)]
        assert trained["data"]["spectra"] == {"name": "toy", "version": version}  # the version the event named
        with get_client(sync_client=True) as client:
            logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])))
        library = sorted({r.name for r in logs if r.name.startswith("libs_pipeline")})
    with capsys.disabled():
        print(f"\ntriggered run {run.name}: library loggers in its logs: {library}")
    assert library, "no libs_pipeline log record reached the flow-run logs"


class Receiver(BaseHTTPRequestHandler):
    """Records the JSON body of every POST (the webhook the alert block calls)."""

    received: list = []

    def do_POST(self):  # noqa: N802 (http.server API)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).received.append({"path": self.path, "json": json.loads(body or b"null")})
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):  # quiet
        pass


@pytest.fixture
def webhook_receiver():
    Receiver.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/libs-alerts", Receiver.received
    finally:
        server.shutdown()
        server.server_close()


def test_a_failed_recalibration_notifies_the_webhook(prefect_stack, webhook_receiver):
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    api_url, root, timings, serve_log, _, serve = prefect_stack
    url, received = webhook_receiver
    spec = importlib.util.spec_from_file_location("libs_pipeline_alerts", REPO / "deployments" / "alerts.py")
    alerts = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(alerts)
    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        alerts.deploy_alerts(url)
        t0 = time.perf_counter()
        failed = run_deployment(DEPLOYMENT, parameters={"config": {"root": str(root), "dataset": "no-such-dataset"}},
                                timeout=RUN_TIMEOUT_S, poll_interval=1)
        assert failed.state.is_failed(), f"{failed.state}\n{tail(serve_log)}"
        wait_for(lambda: received, 120, "webhook notification", serve, serve_log, every_s=0.5)
        timings["alert_delivered_s"] = time.perf_counter() - t0
    (note,) = received
    assert note["path"] == "/libs-alerts" and note["json"]["source"] == "libs-pipeline"
    assert note["json"]["subject"] == f"libs-pipeline: recalibration run {failed.name} Failed"
    assert f"Flow run {failed.name} of flow recalibrate ended Failed" in note["json"]["body"]
    assert "failed at step find-latest-spectra" in note["json"]["body"]
    assert str(failed.id) in note["json"]["body"]



CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def _browser_missing() -> str | None:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is not installed (make browser installs Debian's chromium)"
    if importlib.util.find_spec("playwright") is None:
        return "playwright is not installed (pip install -e '.[test]')"
    return None


@pytest.mark.skipif(_browser_missing() is not None, reason=str(_browser_missing()))
def test_the_summary_artifact_shows_its_figures_in_the_ui(prefect_stack, capsys):
    """Chromium opens the recalibration summary artifact in the Prefect UI; every image in it has loaded."""
    from playwright.sync_api import sync_playwright
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    api_url, root, timings, serve_log, tmp_path, _ = prefect_stack

    def summaries():
        with get_client(sync_client=True) as client:
            found = client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["toy-recalibration-summary"])))
        return [a for a in found if "data:image/png;base64," in (a.data or "")]

    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        if not summaries():  # run alone: make a run that has figures
            state = run_deployment(DEPLOYMENT, parameters={"config": {"root": str(root), "dataset": "toy",
                                                                       **TINY_CONFIG}}, timeout=RUN_TIMEOUT_S).state
            assert state.is_completed(), f"{state}\n{tail(serve_log)}"
        artifact = summaries()[0]
    n_embedded = artifact.data.count("data:image/png;base64,")
    ui = api_url.removesuffix("/api")
    t0 = time.perf_counter()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{ui}/artifacts/artifact/{artifact.id}", wait_until="networkidle", timeout=120_000)
            page.wait_for_selector("img[src^='data:image/png']", state="attached", timeout=60_000)
            page.wait_for_function("Array.from(document.images).every(i => i.complete)", timeout=30_000)
            images = page.evaluate("Array.from(document.images).map(i => ({src: i.src.slice(0, 40), "
                                   "width: i.naturalWidth, shown: i.getBoundingClientRect().width}))")
            text = page.inner_text("body")
            page.locator("img[src^='data:image/png']").first.scroll_into_view_if_needed()
            page.screenshot(path=str(tmp_path / "summary-artifact.png"), full_page=True)  # kept for a failure
        finally:
            browser.close()
    timings["browser_s"] = time.perf_counter() - t0
    embedded = [i for i in images if i["src"].startswith("data:image/png")]
    assert len(embedded) == n_embedded >= 1, images
    assert all(i["width"] > 0 for i in images), images  # every image on the page loaded, none broken
    assert all(i["shown"] > 100 for i in embedded), images  # and the figures are laid out, not hidden
    assert "Recalibration of" in text
    with capsys.disabled():
        print(f"\nbrowser: {len(images)} image(s) loaded on the artifact page ({tmp_path / 'summary-artifact.png'}); "
              + ", ".join(f"{k}={v:.1f}" for k, v in timings.items()))
