"""Provenance facts recorded with every model version: code version, library versions, flow-run id, config hash."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import libs_pipeline

#: Distributions whose versions decide whether a model can be reproduced (read from metadata, never imported).
TRACKED_LIBRARIES = (
    "libs-pipeline",
    "numpy",
    "scipy",
    "pandas",
    "xarray",
    "zarr",
    "torch",
    "scikit-learn",
    "dask",
    "prefect",
    "libskit",
)

#: Set this in environments without a git checkout (e.g. a container image) to record the code's commit.
GIT_SHA_ENV = "LIBS_PIPELINE_GIT_SHA"


def code_version() -> dict:
    """Package version plus the git commit of the source tree when there is one (None otherwise)."""
    info: dict = {"package_version": libs_pipeline.__version__, "git_sha": None, "git_dirty": None}
    env_sha = os.environ.get(GIT_SHA_ENV)
    if env_sha:
        info["git_sha"] = env_sha.strip()
        return info
    source_dir = Path(libs_pipeline.__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=source_dir, capture_output=True, text=True, timeout=10
        )
        if sha.returncode != 0:
            return info
        info["git_sha"] = sha.stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=source_dir,
            capture_output=True,
            text=True,
            timeout=10,
        )
        if status.returncode == 0:
            info["git_dirty"] = bool(status.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def library_versions(names: tuple[str, ...] = TRACKED_LIBRARIES) -> dict[str, str | None]:
    """Installed version of each distribution (None when absent), plus the Python version."""
    versions: dict[str, str | None] = {"python": sys.version.split()[0]}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


#: Environment variable a Prefect worker sets in the process of a flow run it started.
FLOW_RUN_ID_ENV = "PREFECT__FLOW_RUN_ID"


def current_flow_run_id() -> str | None:
    """The flow-run id of the Prefect worker process this runs in (``PREFECT__FLOW_RUN_ID``), else None.

    The registry never imports Prefect: a flow that runs in-process passes its run id to ``ModelRegistry``."""
    return os.environ.get(FLOW_RUN_ID_ENV) or None


