"""Shared fixtures: tiny deterministic datasets (in memory and as a zarr store) and the optional real-data folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from libs_pipeline.testing import toy_campaign
from libs_pipeline.testing.stores import write_zarr

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
OREAS_DIR = SHARED_DATA / "oreas_na"


@pytest.fixture(scope="session")
def toy_ds():
    """6 samples x 10 shots x 512 channels, label Cu in wt%."""
    return toy_campaign()


@pytest.fixture(scope="session")
def toy_zarr(tmp_path_factory, toy_ds) -> str:
    """``toy_ds`` as a zarr 3 store chunked by 16 spectra (path; read-only for tests)."""
    return write_zarr(toy_ds, tmp_path_factory.mktemp("toy") / "toy.zarr", chunk_spectra=16)


def pytest_collection_modifyitems(config, items):
    """Every test that reads the real data (the ``oreas_dir`` fixture, directly or through another fixture) is
    marked ``realdata``, so ``-m "not realdata"`` leaves them all out."""
    for item in items:
        if "oreas_dir" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.realdata)


@pytest.fixture
def oreas_dir() -> Path:
    """../shared/data/oreas_na, or skip when the real data is absent (tests using it are marked ``realdata``)."""
    if not (OREAS_DIR / "Na_ppm_from_tutorial.csv").is_file():
        pytest.skip(f"real OREAS data not found at {OREAS_DIR}")
    return OREAS_DIR


@pytest.fixture(scope="session")
def s3():
    """A real S3-compatible server (moto, server mode) in its own process on loopback, for the whole session.

    Its endpoint and dummy credentials are in ``os.environ`` while it runs, so s3fs here and every child process
    (Dask workers, CLI subprocesses) find it the usual way (AWS_ENDPOINT_URL_S3, AWS_ACCESS_KEY_ID, ...)."""
    from libs_pipeline.testing.services import s3_server

    with s3_server() as server:
        yield server


@pytest.fixture
def s3_root(s3, request) -> str:
    """A fresh bucket on the test S3 server; returns the store root URL ``s3://<bucket>/store``."""
    import re
    import uuid

    name = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-")
    bucket = f"{name}-{uuid.uuid4().hex[:8]}".strip("-")
    s3.make_bucket(bucket)
    return f"s3://{bucket}/store"


@pytest.fixture(params=["local", "s3"])
def store_root(request, tmp_path) -> str:
    """The same store test against a local root and an S3 root (the S3 server starts once per session)."""
    if request.param == "local":
        return str(tmp_path / "store")
    return request.getfixturevalue("s3_root")
