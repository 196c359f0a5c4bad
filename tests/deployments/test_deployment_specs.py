"""The Dask cluster specs in deployments/dask parse and keep the settings the generator relies on: single-threaded
workers, the store on object storage (an ``s3://`` root, credentials from the environment or a Secret) and no
shared volume."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

DASK = Path(__file__).resolve().parents[2] / "deployments" / "dask"
STORE_VARIABLES = ("AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "FSSPEC_S3_",
                   "LIBS_PIPELINE_ROOT", "LIBS_PIPELINE_CACHE")


def _kubernetes_docs() -> dict[str, dict]:
    return {d["kind"]: d for d in yaml.safe_load_all((DASK / "kubernetes" / "dask-cluster.yaml").read_text())}


def test_slurm_jobqueue_spec_runs_single_threaded_workers():
    spec = yaml.safe_load((DASK / "slurm" / "jobqueue.yaml").read_text())["jobqueue"]["slurm"]
    assert spec["cores"] == spec["processes"]  # one thread per worker process
    assert any(".venv/bin/activate" in line for line in spec["job-script-prologue"])
    launcher = subprocess.run([sys.executable, str(DASK / "slurm" / "start_cluster.py"), "--help"],
                              capture_output=True, text=True, timeout=60)
    assert launcher.returncode == 0 and "--address-file" in launcher.stdout


def test_slurm_jobs_source_the_store_env_file():
    spec = yaml.safe_load((DASK / "slurm" / "jobqueue.yaml").read_text())["jobqueue"]["slurm"]
    [line] = [ln for ln in spec["job-script-prologue"] if "s3.env" in ln]
    assert line.startswith("set -a; source ") and "LIBS_PIPELINE_S3_ENV" in line and line.endswith("set +a")
    assert spec["local-directory"] == "$TMPDIR"  # spill space is node-local
    settings = dict(
        ln.split("=", 1) for ln in (DASK / "slurm" / "s3.env.example").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    )
    assert settings["LIBS_PIPELINE_ROOT"].startswith("s3://")
    assert {"AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "LIBS_PIPELINE_CACHE"} <= set(settings)
    assert settings["AWS_SECRET_ACCESS_KEY"] == "replace-me"  # a template, never real credentials


def test_kubernetes_spec_uses_object_storage_and_no_shared_volume():
    docs = _kubernetes_docs()
    assert set(docs) == {"ConfigMap", "DaskCluster", "Job"}
    cluster = docs["DaskCluster"]
    assert cluster["apiVersion"] == "kubernetes.dask.org/v1"
    worker = cluster["spec"]["worker"]["spec"]["containers"][0]
    args = worker["args"]
    assert args[:2] == ["dask", "worker"] and args[args.index("--nthreads") + 1] == "1"
    job_pod = docs["Job"]["spec"]["template"]["spec"]
    job = job_pod["containers"][0]
    for pod in (cluster["spec"]["worker"]["spec"], job_pod):
        assert all("persistentVolumeClaim" not in v for v in pod["volumes"])
        assert all(set(v) == {"name", "emptyDir"} for v in pod["volumes"])  # pod-local scratch only
    store = docs["ConfigMap"]["data"]
    assert store["LIBS_PIPELINE_ROOT"].startswith("s3://") and store["LIBS_PIPELINE_CACHE"].startswith("/scratch/")
    assert not any("SECRET" in key or "ACCESS_KEY" in key for key in store)  # credentials live in the Secret
    expected_env = [{"configMapRef": {"name": "libs-store"}}, {"secretRef": {"name": "libs-s3-credentials"}}]
    assert worker["envFrom"] == job["envFrom"] == expected_env
    assert job["args"][job["args"].index("--store") + 1] == "$(LIBS_PIPELINE_ROOT)"
    address = job["args"][job["args"].index("--dask-address") + 1]
    assert address == f"tcp://{cluster['metadata']['name']}-scheduler:8786"
    assert worker["image"] == job["image"] == cluster["spec"]["scheduler"]["spec"]["containers"][0]["image"]


def test_specs_and_readme_document_the_store_variables_and_hold_no_credentials():
    readme = (DASK / "README.md").read_text()
    for name in STORE_VARIABLES:
        assert name in readme, name
    assert "No shared volume is needed" in readme and "same POSIX path" not in readme
    dockerfile = (DASK / "Dockerfile").read_text()
    assert "LIBS_PIPELINE_CACHE=" in dockerfile
    for path in [DASK / "Dockerfile", *sorted(DASK.rglob("*.yaml")), *sorted(DASK.rglob("*.example"))]:
        text = path.read_text()
        assert not re.search(r"AKIA[0-9A-Z]{16}", text), path  # no AWS access key id
