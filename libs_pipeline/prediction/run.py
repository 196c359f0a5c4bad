"""One prediction run: resolve the model (a directory or a registered version), load it with its trust
calibration, predict spectra with trust, write the tables. The predict flows and ``libs-pipeline predict`` call
``run_prediction``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xarray as xr

from libs_pipeline.candidates import load_servable
from libs_pipeline.prediction.tables import check_table_suffix, write_prediction_tables
from libs_pipeline.registry import ModelRegistry
from libs_pipeline.spectra.store import open_spectra
from libs_pipeline.trust.calibration import TrustCalibration, load_trust
from libs_pipeline.trust.prediction import PredictionTables, predict_with_trust


def resolve_model_dir(model: str | Path, registry_root: str | Path | None = None, name: str | None = None) -> Path:
    """A model directory: ``model`` itself when it is one, else version/alias ``model`` of ``name`` in the registry
    at ``registry_root`` (whose files are verified against the manifest; on an object-store root, the verified
    copy in the local model cache)."""
    path = Path(model)
    if path.is_dir():
        return path
    if registry_root is None or name is None:
        raise FileNotFoundError(
            f"model {str(model)!r} is not a directory; to use a registered version give the store root and "
            "model name (--root ROOT --name NAME)"
        )
    return ModelRegistry(registry_root).path(name, str(model))


def load_model_with_trust(model_dir: str | Path) -> tuple[Any, TrustCalibration]:
    """The served model (network or baseline calibration) and its ``trust.json`` from one model directory."""
    return load_servable(model_dir), load_trust(model_dir)


@dataclass
class PredictionRun:
    """What ``run_prediction`` produced: the tables, where they were written, and which model made them."""

    tables: PredictionTables
    model_dir: Path
    spectra_path: Path | str | None  # a local Path, or the URL the table was written to
    samples_path: Path | str | None


def run_prediction(
    model: str | Path,
    spectra: str | Path | xr.Dataset,
    out: str | Path | None = None,
    registry_root: str | Path | None = None,
    name: str | None = None,
    mc_samples: int = 20,
    seed: int = 0,
    resample: bool = False,
) -> PredictionRun:
    """Resolve the model (directory or registered version), load it with its trust.json, predict ``spectra``
    with trust, and write the tables when ``out`` is given (``out`` and ``<stem>.samples<suffix>``; a local path
    or a store URL such as ``s3://bucket/store/predictions/<run>/predictions.csv``)."""
    if out is not None:
        check_table_suffix(out)
    model_dir = resolve_model_dir(model, registry_root, name)
    trained, calibration = load_model_with_trust(model_dir)
    ds = spectra if isinstance(spectra, xr.Dataset) else open_spectra(str(spectra))
    tables = predict_with_trust(trained, calibration, ds, mc_samples=mc_samples, seed=seed, resample=resample)
    paths = write_prediction_tables(tables, out) if out is not None else (None, None)
    return PredictionRun(tables=tables, model_dir=model_dir, spectra_path=paths[0], samples_path=paths[1])


__all__ = ["PredictionRun", "load_model_with_trust", "resolve_model_dir", "run_prediction"]
