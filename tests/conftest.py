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
