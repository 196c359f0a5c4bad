"""Spectra datasets with an integer sample index: ``sample_index`` per spectrum plus a lookup table over ``sample``.

A store of 10^8 spectra cannot keep one string per spectrum (sample id, source sample) nor one label value
per spectrum when they only vary by sample. Such a store holds instead:

    sample_index (spectrum,)     small integer: the row's position in the lookup table
    sample (sample,)             the sample ids (the ``sample`` dimension coordinate)
    sample__<var> (sample,)      the per-sample value of per-spectrum variable ``<var>`` (``source_sample``,
                                 ``mix_weight``, ``synthetic``, every label ...); attrs ``row_attrs`` are the
                                 attrs ``<var>`` gets per spectrum (units, role)

``expand_sample_table`` adds ``sample_id`` and every ``<var>`` per spectrum *lazily* (one dask
``map_blocks`` over the chunks of ``sample_index``), so readers that index per-spectrum variables keep
working, while readers that scale (split planning, fingerprints) use ``sample_codes`` and the table directly:
O(chunks) Python work, never a Python object per row.

Such stores are written in place (no rename on object stores) and published by a manifest written last,
``<stem>.manifest.json`` beside ``<stem>.zarr``: ``open_sample_indexed`` refuses a store without it.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import xarray as xr

from libs_pipeline.spectra.location import Location, open_location

INDEX = "sample_index"
SAMPLE_DIM = "sample"
TABLE_PREFIX = "sample__"
ROW_ATTRS = "row_attrs"


def index_dtype(n_samples: int) -> np.dtype:
    """The smallest signed integer type that indexes ``n_samples`` table rows."""
    for dtype in (np.int8, np.int16, np.int32):
        if n_samples <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.int64)


def is_sample_indexed(ds: xr.Dataset) -> bool:
    return INDEX in ds.variables and SAMPLE_DIM in ds.dims


def table_columns(ds: xr.Dataset) -> dict[str, str]:
    """{per-spectrum variable: its table variable} of a sample-indexed dataset (``sample_id`` -> ``sample``)."""
    if not is_sample_indexed(ds):
        return {}
    out = {"sample_id": SAMPLE_DIM}
    for name in ds.variables:
        name = str(name)
        if name.startswith(TABLE_PREFIX) and ds[name].dims == (SAMPLE_DIM,):
            out[name[len(TABLE_PREFIX):]] = name
    return out


def table_values(ds: xr.Dataset, var: str) -> np.ndarray | None:
    """Per-sample values of per-spectrum variable ``var`` (None when ``var`` is not in the table)."""
    column = table_columns(ds).get(var)
    if column is None:
        return None
    values = np.asarray(ds[column].values)
    return values.astype(str) if values.dtype.kind in "OUS" else values


def sample_codes(ds: xr.Dataset) -> np.ndarray:
    """``sample_index`` of every spectrum as one integer array (read chunk by chunk; no Python object per row)."""
    codes = np.asarray(ds[INDEX].values)
    n = ds.sizes[SAMPLE_DIM]
    if codes.size and (codes.min() < 0 or codes.max() >= n):
        raise ValueError(f"sample_index holds values outside 0..{n - 1} (the sample table has {n} rows)")
    return codes


def _take(codes: np.ndarray, table: np.ndarray) -> np.ndarray:
    return table[codes]


def per_spectrum(ds: xr.Dataset, table: np.ndarray, attrs: Mapping | None = None) -> xr.DataArray:
    """``table[sample_index]`` as a lazy per-spectrum DataArray (dask when ``sample_index`` is dask-backed)."""
    codes = ds[INDEX].data
    if hasattr(codes, "map_blocks"):
        data = codes.map_blocks(_take, table, dtype=table.dtype)
    else:
        data = table[np.asarray(codes)]
    return xr.DataArray(data, dims=ds[INDEX].dims, attrs=dict(attrs or {}))


def expand_sample_table(ds: xr.Dataset) -> xr.Dataset:
    """Add every table column as a lazy per-spectrum variable (``sample_id``, ``source_sample``, labels, ...)."""
    if not is_sample_indexed(ds):
        return ds
    ds = ds.copy()
    for var, column in table_columns(ds).items():
        if var in ds.variables:
            continue
        table = np.asarray(ds[column].values)
        if table.dtype.kind in "OS":
            table = table.astype(str)
        row_attrs = dict(ds[column].attrs.get(ROW_ATTRS, {})) if column != SAMPLE_DIM else {}
        ds[var] = per_spectrum(ds, table, row_attrs)
    return ds


def manifest_location(store: Location) -> Location:
    """``<stem>.manifest.json`` beside ``<stem>.zarr``: its presence publishes the store."""
    name = store.name
    return store.parent / f"{name.removesuffix('.zarr')}.manifest.json"


def has_sample_index(uri: str | Location) -> bool:
    """Whether ``uri`` is a zarr store holding a ``sample_index`` array (one metadata read)."""
    store = open_location(uri)
    return (store / INDEX / "zarr.json").is_file()


def open_sample_indexed(uri: str | Location) -> xr.Dataset:
    """Open a published sample-indexed zarr store lazily, the table expanded (``expand_sample_table``).

    Refused with a clear message: no zarr store there, no ``sample_index``, or no manifest (not complete).
    """
    store = open_location(uri)
    if not (store / "zarr.json").is_file():
        raise FileNotFoundError(f"{store.url}: not a zarr store (no zarr.json)")
    manifest = manifest_location(store)
    if not manifest.is_file():
        raise ValueError(
            f"{store.url}: incomplete store (no manifest {manifest.url}); the run that writes it has not finished "
            "— rerun it to resume"
        )
    ds = xr.open_zarr(store.zarr_store(read_only=True), consolidated=False, zarr_format=3)
    if not is_sample_indexed(ds):
        raise ValueError(f"{store.url}: no {INDEX!r} variable and {SAMPLE_DIM!r} table (not a sample-indexed store)")
    return expand_sample_table(ds)


__all__ = [
    "INDEX",
    "ROW_ATTRS",
    "SAMPLE_DIM",
    "TABLE_PREFIX",
    "expand_sample_table",
    "has_sample_index",
    "index_dtype",
    "is_sample_indexed",
    "manifest_location",
    "open_sample_indexed",
    "per_spectrum",
    "sample_codes",
    "table_columns",
    "table_values",
]
