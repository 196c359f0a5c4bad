"""Shared fixtures: tiny deterministic datasets (in memory and as a zarr store) and the optional real-data folder."""

from __future__ import annotations

import warnings
from pathlib import Path

import xarray as xr

import pytest

from libs_pipeline.testing import toy_campaign

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
OREAS_DIR = SHARED_DATA / "oreas_na"


@pytest.fixture(scope="session")
def toy_ds():
    """6 samples x 10 shots x 512 channels, label Cu in wt%."""
    return toy_campaign()


def write_zarr(ds: xr.Dataset, path: Path, chunk_spectra: int | None = None) -> str:
    """Write ``ds`` as an unconsolidated zarr 3 store (chunked by ``chunk_spectra`` spectra if given); the path."""
    if chunk_spectra is not None:
        ds = ds.chunk({"spectrum": chunk_spectra})
    with warnings.catch_warnings():  # zarr v3: fixed-length string dtype notice
        warnings.simplefilter("ignore")
        ds.to_zarr(path, zarr_format=3, consolidated=False)
    return str(path)


@pytest.fixture(scope="session")
def toy_zarr(tmp_path_factory, toy_ds) -> str:
    """``toy_ds`` as a zarr 3 store chunked by 16 spectra (path; read-only for tests)."""
    return write_zarr(toy_ds, tmp_path_factory.mktemp("toy") / "toy.zarr", chunk_spectra=16)


@pytest.fixture
def oreas_dir() -> Path:
    """../shared/data/oreas_na, or skip when the real data is absent."""
    if not (OREAS_DIR / "Na_ppm_from_tutorial.csv").is_file():
        pytest.skip(f"real OREAS data not found at {OREAS_DIR}")
    return OREAS_DIR
