"""Test helpers for stores on disk: write a dataset as a zarr store, snapshot a folder's bytes."""

from __future__ import annotations

import warnings
from pathlib import Path

import xarray as xr


def write_zarr(ds: xr.Dataset, path: Path, chunk_spectra: int | None = None) -> str:
    """Write ``ds`` as an unconsolidated zarr 3 store (chunked by ``chunk_spectra`` spectra if given); the path."""
    if chunk_spectra is not None:
        ds = ds.chunk({"spectrum": chunk_spectra})
    with warnings.catch_warnings():  # zarr v3: fixed-length string dtype notice
        warnings.simplefilter("ignore")
        ds.to_zarr(path, zarr_format=3, consolidated=False)
    return str(path)


def tree_bytes(root: str | Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative path -> bytes): what 'same bytes' means for a store."""
    root = Path(root)
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


__all__ = ["tree_bytes", "write_zarr"]
