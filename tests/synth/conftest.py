"""Fixtures of the synth tests: the toy campaign as a zarr store, and byte snapshots of store folders."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from libs_pipeline.testing import toy_campaign


def write_zarr(ds, path: Path) -> str:
    with warnings.catch_warnings():  # zarr v3: fixed-length string dtype notice
        warnings.simplefilter("ignore")
        ds.to_zarr(path, zarr_format=3, consolidated=False)
    return str(path)


def tree_bytes(root: str | Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative path -> bytes): what 'same bytes' means for a store."""
    root = Path(root)
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session")
def toy_zarr(tmp_path_factory) -> str:
    """The default toy campaign (6 samples x 10 shots x 512 channels) as a zarr 3 store."""
    return write_zarr(toy_campaign(), tmp_path_factory.mktemp("synth-data") / "toy.zarr")
