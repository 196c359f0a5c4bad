"""The steps of one re-calibration, as plain functions on paths and ids: split, configure and trust-calibrate a
challenger, compare on held-out samples, describe the data version. The recalibrate flow wires them; they work
without Prefect.

Torch is reached only through ``libs_pipeline.models`` / ``libs_pipeline.trust.prediction``, imported inside the
functions that need it (``import libs_pipeline.registry`` stays torch-free).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from libs_pipeline.config import RecalibrationConfig, TrainingConfig, TrustConfig
from libs_pipeline.registry.recalibration import heldout_samples
from libs_pipeline.spectra.atomic import atomic_write_json, atomic_write_text
from libs_pipeline.spectra.dataset import resolve_analyte, sample_ids, select_samples
from libs_pipeline.spectra.store import SpectraStore

#: The training part of a spectra version is stored as its own dataset, ``<dataset><TRAIN_SUFFIX>``.
TRAIN_SUFFIX = ".train"
CHALLENGER = "challenger"
CHAMPION = "champion"
#: Columns of the comparison table (from ``evaluation.metrics.evaluate_methods``) plus the trust flag rate.
METRIC_COLUMNS = (
    "spectrum_rmsep", "spectrum_mae", "spectrum_bias", "spectrum_r2", "sample_rmsep", "flag_rate", "n_spectra",
    "n_samples",
)


@dataclass(frozen=True)
class TrainingSplit:
    """A spectra version split by sample: the stored training part and the held-out sample ids."""

    root: str
    spectra: dict
    train: dict
    analyte: str
    units: str
    heldout: list[str]
    train_samples: list[str]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainingSplit:
        return cls(**data)


@dataclass
class Comparison:
    """Held-out metrics of every method (challenger, champion, baselines) and the files written."""

    table: pd.DataFrame
    metrics: dict[str, dict] = field(default_factory=dict)
    figures: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    metrics_path: str | None = None
    predictions_path: str | None = None
    baseline_dirs: dict[str, str] = field(default_factory=dict)  # baseline name -> its fitted model directory


def labelled_samples(ds: xr.Dataset, analyte: str) -> list[str]:
    """Samples whose spectra carry a finite label for ``analyte``."""
    known = np.isfinite(np.asarray(ds[analyte].values, dtype=np.float64))
    keep = set(np.asarray(ds["sample_id"].values).astype(str)[known])
    return [s for s in sample_ids(ds) if s in keep]


def write_training_split(
    root: str | Path, dataset: str, version: str, fraction: float, seed: int, analyte: str | None = None
) -> TrainingSplit:
    """Hold out samples of ``dataset@version`` (stable per-sample rule) and store the rest as
    ``<dataset>.train`` (content-addressed: the same split writes nothing new)."""
    store = SpectraStore(root)
    ds = store.open(dataset, version)
    where = f"spectra {dataset}@{version}"
    analyte, units = resolve_analyte(ds, analyte, where)
    samples = labelled_samples(ds, analyte)
    held = heldout_samples(samples, fraction, seed)
    train_ids = [s for s in samples if s not in set(held)]
    train = select_samples(ds, train_ids)
    train_name = f"{dataset}{TRAIN_SUFFIX}"
    source = {
        "derived_from": store.ref(dataset, version),
        "rule": "recalibration training split",
        "heldout_samples": held,
        "heldout_fraction": fraction,
        "split_seed": seed,
        "analyte": analyte,
    }
    train_version = store.write_version(train_name, train, sources=[source], reader="dataset")
    return TrainingSplit(
        root=str(root),
        spectra={"name": dataset, "version": version, "uri": store.uri(dataset, version)},
        train={"name": train_name, "version": train_version, "uri": store.uri(train_name, train_version)},
        analyte=analyte,
        units=units,
        heldout=held,
        train_samples=train_ids,
    )


def training_config(config: RecalibrationConfig, split: TrainingSplit, synthetic_uri: str | None) -> TrainingConfig:
    """The TrainingConfig of the challenger: ``config.training`` overrides plus data, analyte and seed."""
    overrides = dict(config.training)
    augmentation = bool(overrides.pop("augmentation", synthetic_uri is not None))
    if augmentation and synthetic_uri is None:
        raise ValueError("recalibration config: training.augmentation is true but synthesis produced no store")
    return TrainingConfig(
        **{"progress_bar": False, **overrides},
        analyte=split.analyte,
        measured_uris=[split.train["uri"]],
        synthetic_uris=[synthetic_uri] if (synthetic_uri and augmentation) else [],
        augmentation=augmentation,
        seed=config.seed,
    )


def calibrate_trust(split: TrainingSplit, model_dir: str | Path, trust: TrustConfig | None = None) -> dict:
    """Fit the trust calibration of a trained model directory and save it there as ``trust.json``.

    Line calibrations come from the measured training samples the network fitted, scales and threshold from its
    validation samples (in ``metrics.json``; never trained on). Returns ``{"trust_threshold", "training_metrics"}``.
    """
    from libs_pipeline.models import load_model
    from libs_pipeline.trust.calibration import save_trust
    from libs_pipeline.trust.prediction import calibrate_model_trust

    model = load_model(model_dir)
    val_samples = list(model.metrics.get("val_samples") or [])
    if not val_samples:
        raise ValueError(
            f"{model_dir}: trust calibration needs validation samples the network did not train on; set "
            f"training.val_fraction > 0 (the training split has {len(split.train_samples)} samples)"
        )
    measured = SpectraStore(split.root).open(split.train["name"], split.train["version"])
    fit_ids = [s for s in split.train_samples if s not in set(val_samples)]
    calibration = calibrate_model_trust(
        model, select_samples(measured, fit_ids).load(), select_samples(measured, val_samples).load(), trust
    )
    save_trust(calibration, model_dir)
    keep = ("steps", "epochs", "best_step", "train_samples", "val_samples", "n_train_spectra", "n_train_synthetic",
            "n_val_spectra", "seconds")
    summary = {k: model.metrics[k] for k in keep if k in model.metrics}
    return {"trust_threshold": float(calibration.threshold), "training_metrics": summary}


def _grid_problem(model_wavelength: np.ndarray, wavelength: np.ndarray) -> str | None:
    """Why spectra on ``wavelength`` cannot be fed to a model trained on ``model_wavelength`` (None = they can)."""
    from libs_pipeline.spectra.grid import same_grid

    if same_grid(model_wavelength, wavelength):
        return None
    if wavelength[0] > model_wavelength[0] or wavelength[-1] < model_wavelength[-1]:
        return (
            f"trained on {model_wavelength[0]:.3f}-{model_wavelength[-1]:.3f} nm, the held-out spectra cover only "
            f"{wavelength[0]:.3f}-{wavelength[-1]:.3f} nm"
        )
    return None


def compare_on_heldout(
    split: TrainingSplit,
    models: dict[str, str],
    out_dir: str | Path,
    baselines: bool = True,
    lines: list[dict] | None = None,
) -> Comparison:
    """Predict the held-out samples with every model (dir with trust.json) and the baselines (fit on the training
    split); one metrics row per method, trust flag rate per model, parity/residual figures in ``out_dir``.

    A model whose wavelength range the held-out spectra do not cover gets NaN metrics and a note (it cannot be
    applied to the new data), never an exception.
    """
    from libs_pipeline.evaluation.metrics import evaluate_methods
    from libs_pipeline.evaluation.plots import parity_plot, residual_plot
    from libs_pipeline.candidates import load_servable
    from libs_pipeline.spectra.grid import intensity_on_grid
    from libs_pipeline.trust.calibration import TRUST_FILE, load_trust
    from libs_pipeline.trust.prediction import predict_with_trust

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    full = SpectraStore(split.root).open(split.spectra["name"], split.spectra["version"])
    test = select_samples(full, split.heldout).load()
    analyte = split.analyte
    y_true = np.asarray(test[analyte].values, dtype=np.float64)
    sids = np.asarray(test["sample_id"].values).astype(str)
    wavelength = np.asarray(test["wavelength"].values, dtype=np.float64)
    preds: dict[str, np.ndarray] = {}
    flag_rates: dict[str, float] = {}
    notes: list[str] = []
    for label, model_dir in models.items():
        model = load_servable(model_dir)
        problem = _grid_problem(np.asarray(model.wavelength, dtype=np.float64), wavelength)
        if problem:
            notes.append(f"{label} ({model_dir}) cannot be applied to the held-out spectra: {problem}")
            continue
        if not (Path(model_dir) / TRUST_FILE).is_file():
            notes.append(f"{label} ({model_dir}) has no {TRUST_FILE}: no flag rate")
            x = intensity_on_grid(test, model.wavelength, resample=True)
            preds[label] = np.asarray(model.predict(x)[model.analyte], dtype=np.float64).ravel()
            continue
        tables = predict_with_trust(model, load_trust(model_dir), test, mc_samples=0, resample=True)
        preds[label] = tables.spectra["concentration"].to_numpy(dtype=np.float64)
        flag_rates[label] = float(np.mean(tables.spectra["flag"].to_numpy(dtype=bool)))
    baseline_dirs: dict[str, str] = {}
    if baselines:
        from libs_pipeline.candidates import PLSCandidate, UnivariateCandidate, save_servable

        train = SpectraStore(split.root).open(split.train["name"], split.train["version"]).load()
        for candidate in (UnivariateCandidate(lines=lines), PLSCandidate(lines=lines)):
            fitted = candidate.fit(train, analyte)
            preds[candidate.name] = fitted.predict_dataset(test)
            baseline_dirs[candidate.name] = str(save_servable(fitted.model, out / "baselines" / candidate.name,
                                                              overwrite=True))
    table = evaluate_methods(preds, y_true, sids) if preds else pd.DataFrame(index=pd.Index([], name="method"))
    table["flag_rate"] = [flag_rates.get(m, math.nan) for m in table.index]
    for label in models:
        if label not in table.index:
            table.loc[label] = math.nan
    metrics = {
        m: {
            "rmsep": float(table.loc[m, "spectrum_rmsep"]),
            "mae": float(table.loc[m, "spectrum_mae"]),
            "bias": float(table.loc[m, "spectrum_bias"]),
            "r2": float(table.loc[m, "spectrum_r2"]),
            "sample_rmsep": float(table.loc[m, "sample_rmsep"]),
            "flag_rate": float(table.loc[m, "flag_rate"]),
            "n_spectra": int(y_true.size),
            "heldout_samples": list(split.heldout),
        }
        for m in table.index
    }
    figures: dict[str, str] = {}
    if preds:
        title = f"{analyte} on held-out samples {', '.join(split.heldout)}"
        figures["parity"] = str(parity_plot(preds, y_true, sids, out / "parity.png", split.units, title))
        figures["residuals"] = str(residual_plot(preds, y_true, sids, out / "residuals.png", split.units, title))
    frame = pd.DataFrame({"spectrum": np.asarray(test["spectrum"].values), "sample_id": sids, "y_true": y_true})
    for method, p in preds.items():
        frame[method] = p
    atomic_write_text(out / "predictions.csv", frame.to_csv(index=False))
    atomic_write_text(out / "metrics.csv", table.to_csv())
    return Comparison(
        table=table, metrics=metrics, figures=figures, notes=notes,
        metrics_path=str(out / "metrics.csv"), predictions_path=str(out / "predictions.csv"),
        baseline_dirs=baseline_dirs,
    )


def data_validation_report(root: str | Path, dataset: str, version: str) -> str:
    """Markdown validation report of one spectra version: counts, grid, per-sample table, ingest warnings,
    and a fresh schema validation of the stored data."""
    from libs_pipeline.spectra.schemas import validate_spectra

    store = SpectraStore(root)
    manifest = store.manifest(dataset, version)
    ds = store.open(dataset, version)
    failures = validate_spectra(ds, dark_tolerance=float("inf"))
    counts = manifest.get("counts", {})
    wl = manifest.get("wavelength_nm", {})
    lines = [
        f"# Data version `{dataset}@{version}`",
        "",
        f"- created: {manifest.get('created')}, parent: `{manifest.get('parent')}`, reader: {manifest.get('reader')}",
        f"- {counts.get('n_spectra')} spectra of {counts.get('n_samples')} samples, "
        f"{counts.get('n_channels')} channels "
        f"({wl.get('min')}-{wl.get('max')} nm), {counts.get('n_sources')} source file(s)",
        f"- schema validation of the stored data: "
        + ("passed" if not failures else f"{len(failures)} failure(s)"),
    ]
    for f in failures[:20]:
        lines.append(f"  - {f.reason}")
    warnings = manifest.get("warnings") or []
    lines += ["", f"## Ingest warnings ({len(warnings)})", ""]
    lines += [f"- {w.get('file', '')}: {w.get('rule', '')}: {w.get('reason', '')}" for w in warnings[:50]] or ["none"]
    samples = manifest.get("samples") or []
    if samples:
        frame = pd.DataFrame.from_records(samples)
        cols = [c for c in frame.columns if c not in ("file",)]
        lines += ["", "## Samples", "", "| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
        lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in frame[cols].to_dict("records")]
    return "\n".join(lines) + "\n"


def write_json(path: str | Path, obj: object) -> str:
    """Atomic JSON write; returns the path as a string (what flow tasks pass on)."""
    atomic_write_json(path, json.loads(json.dumps(obj, default=str)))
    return str(path)


__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "Comparison",
    "TrainingSplit",
    "compare_on_heldout",
    "data_validation_report",
    "labelled_samples",
    "calibrate_trust",
    "training_config",
    "write_training_split",
]
