"""Test helpers for stores: write a dataset as a zarr store, snapshot the bytes under a store root (any URL)."""

from __future__ import annotations

import warnings
from pathlib import Path

import xarray as xr

from libs_pipeline.spectra.location import Location, open_location


def write_zarr(ds: xr.Dataset, path: Path, chunk_spectra: int | None = None) -> str:
    """Write ``ds`` as an unconsolidated zarr 3 store (chunked by ``chunk_spectra`` spectra if given); the path."""
    if chunk_spectra is not None:
        ds = ds.chunk({"spectrum": chunk_spectra})
    with warnings.catch_warnings():  # zarr v3: fixed-length string dtype notice
        warnings.simplefilter("ignore")
        ds.to_zarr(path, zarr_format=3, consolidated=False)
    return str(path)


def tree_bytes(root: str | Path | Location) -> dict[str, bytes]:
    """Every file (object) under ``root`` (relative path -> bytes): what 'same bytes' means for a store.

    ``root`` is a local folder or any store URL (``s3://...``), so a local and an S3 store compare directly."""
    location = open_location(root)
    if location.is_local:
        base = Path(location.path)
        return {p.relative_to(base).as_posix(): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()}
    location.fs.invalidate_cache(location.path)
    prefix = location.path.rstrip("/") + "/"
    return {str(key)[len(prefix):]: location.fs.cat_file(key) for key in sorted(location.fs.find(location.path))}


__all__ = ["tree_bytes", "write_zarr"]
