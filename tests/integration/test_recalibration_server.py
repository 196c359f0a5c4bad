"""A real `prefect server start` + `deployments/serve.py`: trigger the recalibrate deployment through the API twice
and check, through the API and the registry, that the first run promotes a champion and the second skips.

Runs by default (marked integration and slow); skipped only when the prefect executable is absent. The server
and the serve process are started in their own process groups and killed at teardown, also on failure.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from libs_pipeline.registry import ModelRegistry
from libs_pipeline.spectra.store import SpectraStore
from libs_pipeline.testing import toy_campaign

REPO = Path(__file__).resolve().parents[2]
PREFECT_EXE = shutil.which("prefect", path=str(Path(sys.executable).parent)) or shutil.which("prefect")
DEPLOYMENT = "recalibrate/nightly"
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


@pytest.fixture
def prefect_stack(tmp_path):
    """A real Prefect server and the served recalibrate deployment; yields (api_url, store root, timings)."""
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_API_URL": api_url,
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_SERVER_UI_ENABLED": "false",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PYTHONUNBUFFERED": "1",
    }
    root = tmp_path / "store"
    ds = toy_campaign(n_samples=8, n_shots=16, n_channels=256)
    SpectraStore(root).write_version("toy", ds, sources=[{"test": "integration"}], reader="dataset")

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
                 "--only", "recalibrate", "--no-schedules"],
                env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        procs.append(serve)

        from prefect import get_client
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings(updates={PREFECT_API_URL: api_url}):

            def deployment():
                with get_client(sync_client=True) as client:
                    return client.read_deployment_by_name(DEPLOYMENT)

            wait_for(deployment, STARTUP_TIMEOUT_S, "served deployment", serve, serve_log)
            timings["serve_ready_s"] = time.perf_counter() - t0
            yield api_url, root, timings, serve_log
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

    api_url, root, timings, serve_log = prefect_stack
    config = {
        "root": str(root),
        "dataset": "toy",
        "synthesis": {"per_sample": 16, "chunk_size": 64, "n_workers": 1},
        "training": {"max_steps": 10, "eval_every": 5, "batch_size": 16, "val_fraction": 0.34,
                     "stem_channels": 2, "block_channels": [2], "dense_units": 8, "head_units": 4},
        "promotion": {"max_flag_rate": 1.0},
    }
    registry = ModelRegistry(root)
    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        with get_client(sync_client=True) as client:
            dep = client.read_deployment_by_name(DEPLOYMENT)
        limit = dep.global_concurrency_limit.limit if dep.global_concurrency_limit else dep.concurrency_limit
        assert limit == 1

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
