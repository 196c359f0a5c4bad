"""Prediction tables on disk: the per-spectrum table at ``out`` and the per-sample table beside it, as CSV or
Parquet (chosen by the suffix), written atomically."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from libs_pipeline.spectra.atomic import atomic_write_bytes
from libs_pipeline.trust.prediction import PredictionTables

TABLE_SUFFIXES = (".csv", ".parquet")


def check_table_suffix(path: str | Path) -> None:
    """ValueError unless ``path`` ends in one of ``TABLE_SUFFIXES``."""
    suffix = Path(path).suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise ValueError(f"{path}: table suffix must be one of {TABLE_SUFFIXES}, got {Path(path).suffix or '(none)'!r}")


def sample_table_path(out: str | Path) -> Path:
    """Where the per-sample table goes beside the per-spectrum one: ``x.csv`` -> ``x.samples.csv``."""
    out = Path(out)
    return out.with_name(f"{out.stem}.samples{out.suffix}")


def write_table(frame: pd.DataFrame, path: str | Path) -> Path:
    """Atomically write a table as CSV or Parquet, chosen by the file suffix."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        data = frame.to_csv(index=False).encode("utf-8")
    elif suffix == ".parquet":
        data = frame.to_parquet(index=False)
    else:
        raise ValueError(f"{path}: table suffix must be one of {TABLE_SUFFIXES}, got {suffix or '(none)'!r}")
    atomic_write_bytes(path, data)
    return path


def write_prediction_tables(tables: PredictionTables, out: str | Path) -> tuple[Path, Path]:
    """Per-spectrum table at ``out``, per-sample table beside it (``<stem>.samples<suffix>``)."""
    check_table_suffix(out)
    return write_table(tables.spectra, out), write_table(tables.samples, sample_table_path(out))


__all__ = ["TABLE_SUFFIXES", "check_table_suffix", "sample_table_path", "write_prediction_tables", "write_table"]
