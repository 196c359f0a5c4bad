"""Real services on loopback for tests and benchmarks: an S3 server (moto, server mode) and a Dask cluster of
separate ``dask scheduler`` / ``dask worker`` processes. Each is started as its own process and stopped on exit.

    with s3_server() as s3:          # s3.endpoint, s3.env (dummy credentials + endpoint), s3.make_bucket(name)
        ...
    with dask_processes(2, base_dir) as cluster:   # cluster.address, cluster.workers, cluster.kill_worker(0)
        ...
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

DUMMY_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, proc: subprocess.Popen, what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} before listening on port {port}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"{what} did not listen on 127.0.0.1:{port} within {timeout_s:.0f} s")


def _stop(proc: subprocess.Popen, timeout_s: float = 10.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class S3Server:
    endpoint: str
    env: dict[str, str]
    pid: int  # the server process (benchmarks measure its CPU)

    def make_bucket(self, name: str) -> str:
        """Create ``name`` on the server; returns ``s3://name``."""
        import boto3

        client = boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                              aws_access_key_id="testing", aws_secret_access_key="testing")
        client.create_bucket(Bucket=name)
        return f"s3://{name}"


@contextmanager
def s3_server(set_environ: bool = True, timeout_s: float = 30.0) -> Iterator[S3Server]:
    """moto's S3 server as a separate process on a free loopback port, with dummy credentials.

    ``set_environ``: put the endpoint and credentials in ``os.environ`` for the block (restored after), so
    fsspec/s3fs here and every child process (Dask workers started inside) reach it the usual way.
    """
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    env = {**DUMMY_CREDENTIALS, "AWS_ENDPOINT_URL_S3": endpoint, "AWS_ENDPOINT_URL": endpoint}
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **env},
    )
    saved = {k: os.environ.get(k) for k in env}
    try:
        _wait_for_port(port, proc, "moto S3 server", timeout_s)
        if set_environ:
            os.environ.update(env)
        yield S3Server(endpoint, env, proc.pid)
    finally:
        if set_environ:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        _stop(proc)


@dataclass
class DaskProcesses:
    address: str
    scheduler: subprocess.Popen
    workers: list[subprocess.Popen] = field(default_factory=list)
    worker_dirs: list[Path] = field(default_factory=list)

    def kill_worker(self, index: int) -> None:
        """SIGKILL a worker process (and its nanny's child) as a crash would."""
        proc = self.workers[index]
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()

    def wait_for_workers(self, n: int, timeout_s: float = 60.0) -> None:
        from distributed import Client

        with Client(self.address, timeout=timeout_s, set_as_default=False) as client:
            client.wait_for_workers(n, timeout=timeout_s)


@contextmanager
def dask_processes(
    n_workers: int,
    base_dir: str | Path,
    env: Mapping[str, str] | None = None,
    threads: int = 1,
    timeout_s: float = 60.0,
) -> Iterator[DaskProcesses]:
    """``dask scheduler`` and ``n_workers`` ``dask worker`` processes on loopback, each started from its own
    working directory under ``base_dir`` (no shared temporary folder: each worker's TMPDIR is its own)."""
    base_dir = Path(base_dir)
    dask = str(Path(sys.executable).with_name("dask"))
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
    sched_dir = base_dir / "scheduler"
    sched_dir.mkdir(parents=True, exist_ok=True)
    scheduler = subprocess.Popen(
        [dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
        cwd=sched_dir, env=env, stdout=open(sched_dir / "log.txt", "wb"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    cluster = DaskProcesses(address, scheduler)
    try:
        _wait_for_port(port, scheduler, "dask scheduler", timeout_s)
        for i in range(n_workers):
            wdir = base_dir / f"worker-{i}"
            (wdir / "tmp").mkdir(parents=True, exist_ok=True)
            proc = subprocess.Popen(
                [dask, "worker", address, "--nthreads", str(threads), "--nworkers", "1", "--no-dashboard",
                 "--memory-limit", "0", "--local-directory", str(wdir / "dask"), "--name", f"worker-{i}"],
                cwd=wdir, env={**env, "TMPDIR": str(wdir / "tmp")}, stdout=open(wdir / "log.txt", "wb"),
                stderr=subprocess.STDOUT, start_new_session=True,
            )
            cluster.workers.append(proc)
            cluster.worker_dirs.append(wdir)
        cluster.wait_for_workers(n_workers, timeout_s)
        yield cluster
    finally:
        for proc in [*cluster.workers, scheduler]:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for proc in [*cluster.workers, scheduler]:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def start_worker(cluster: DaskProcesses, base_dir: str | Path, name: str, env: Mapping[str, str] | None = None,
                 threads: int = 1) -> subprocess.Popen:
    """Start one more ``dask worker`` process (e.g. a replacement after ``kill_worker``) in its own folder."""
    dask = str(Path(sys.executable).with_name("dask"))
    wdir = Path(base_dir) / name
    shutil.rmtree(wdir, ignore_errors=True)
    (wdir / "tmp").mkdir(parents=True)
    proc = subprocess.Popen(
        [dask, "worker", cluster.address, "--nthreads", str(threads), "--nworkers", "1", "--no-dashboard",
         "--memory-limit", "0", "--local-directory", str(wdir / "dask"), "--name", name],
        cwd=wdir, env={**os.environ, **(env or {}), "TMPDIR": str(wdir / "tmp")},
        stdout=open(wdir / "log.txt", "wb"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    cluster.workers.append(proc)
    cluster.worker_dirs.append(wdir)
    return proc
