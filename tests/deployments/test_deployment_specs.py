"""The Dask cluster specs in deployments/dask parse and keep the settings the generator relies on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

DASK = Path(__file__).resolve().parents[2] / "deployments" / "dask"


def test_slurm_jobqueue_spec_runs_single_threaded_workers():
    spec = yaml.safe_load((DASK / "slurm" / "jobqueue.yaml").read_text())["jobqueue"]["slurm"]
    assert spec["cores"] == spec["processes"]  # one thread per worker process
    assert any(".venv/bin/activate" in line for line in spec["job-script-prologue"])
    launcher = subprocess.run([sys.executable, str(DASK / "slurm" / "start_cluster.py"), "--help"],
                              capture_output=True, text=True, timeout=60)
    assert launcher.returncode == 0 and "--address-file" in launcher.stdout


def test_kubernetes_spec_mounts_the_same_volume_for_workers_and_the_flow():
    docs = {d["kind"]: d for d in yaml.safe_load_all((DASK / "kubernetes" / "dask-cluster.yaml").read_text())}
    assert set(docs) == {"PersistentVolumeClaim", "DaskCluster", "Job"}
    cluster = docs["DaskCluster"]
    assert cluster["apiVersion"] == "kubernetes.dask.org/v1"
    worker = cluster["spec"]["worker"]["spec"]["containers"][0]
    args = worker["args"]
    assert args[:2] == ["dask", "worker"] and args[args.index("--nthreads") + 1] == "1"
    assert docs["PersistentVolumeClaim"]["spec"]["accessModes"] == ["ReadWriteMany"]
    job = docs["Job"]["spec"]["template"]["spec"]["containers"][0]
    assert worker["volumeMounts"] == job["volumeMounts"] == [{"name": "data", "mountPath": "/data"}]
    address = job["args"][job["args"].index("--dask-address") + 1]
    assert address == f"tcp://{cluster['metadata']['name']}-scheduler:8786"
    assert worker["image"] == job["image"] == cluster["spec"]["scheduler"]["spec"]["containers"][0]["image"]
