"""Prediction tables: the per-spectrum table at ``out`` and the per-sample table beside it, as CSV or Parquet
(chosen by the suffix), each written whole. ``out`` is a local path or a store URL (``s3://.../x.csv``): the
bytes go through ``Location``, so nothing lands in a local folder named like the URL."""

from __future__ import annotations

import io
import posixpath
from pathlib import Path

import pandas as pd

from libs_pipeline.spectra.location import Location, open_location
from libs_pipeline.trust.prediction import PredictionTables

TABLE_SUFFIXES = (".csv", ".parquet")


def _suffix(path: str | Path) -> str:
    return posixpath.splitext(posixpath.basename(str(path)))[1]


def check_table_suffix(path: str | Path) -> None:
    """ValueError unless ``path`` ends in one of ``TABLE_SUFFIXES``."""
    suffix = _suffix(path)
    if suffix.lower() not in TABLE_SUFFIXES:
        raise ValueError(f"{path}: table suffix must be one of {TABLE_SUFFIXES}, got {suffix or '(none)'!r}")


def _shown(where: Location) -> Path | str:
    """A local ``Path`` for local files, the (credential-free) URL otherwise."""
    return where.local_path if where.is_local else where.url


def sample_table_path(out: str | Path) -> Path | str:
    """Where the per-sample table goes beside the per-spectrum one: ``x.csv`` -> ``x.samples.csv``."""
    where = open_location(out, check=False)
    stem, suffix = posixpath.splitext(where.name)
    return _shown(where.parent / f"{stem}.samples{suffix}")


def write_table(frame: pd.DataFrame, path: str | Path) -> Path | str:
    """Write a table whole as CSV or Parquet, chosen by the file suffix; returns where it went."""
    suffix = _suffix(path).lower()
    if suffix == ".csv":
        data = frame.to_csv(index=False).encode("utf-8")
    elif suffix == ".parquet":
        data = frame.to_parquet(index=False)
    else:
        raise ValueError(f"{path}: table suffix must be one of {TABLE_SUFFIXES}, got {suffix or '(none)'!r}")
    where = open_location(path)
    where.write_bytes(data)
    return _shown(where)


def read_table(path: str | Path) -> pd.DataFrame:
    """A table written by ``write_table`` (local path or store URL), read through ``Location``."""
    where = open_location(path)
    data = io.BytesIO(where.read_bytes())
    return pd.read_csv(data) if _suffix(path).lower() == ".csv" else pd.read_parquet(data)


def write_prediction_tables(tables: PredictionTables, out: str | Path) -> tuple[Path | str, Path | str]:
    """Per-spectrum table at ``out``, per-sample table beside it (``<stem>.samples<suffix>``)."""
    check_table_suffix(out)
    return write_table(tables.spectra, out), write_table(tables.samples, sample_table_path(out))


__all__ = [
    "TABLE_SUFFIXES", "check_table_suffix", "read_table", "sample_table_path", "write_prediction_tables", "write_table",
]
