"""Held-out comparison of a larger campaign: the challenger, the champion and the baselines (fitted on the
training split) predict the same held-out samples; one metrics row per method, trust flag rate per model.

Scoring, prediction table and figures are the evaluator's (``libs_pipeline.evaluation.run``); what is particular
here is that models come from directories with their trust calibration, may be resampled to their grid, and a
model that cannot be applied is reported rather than raised.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from libs_pipeline.candidates import PLSCandidate, UnivariateCandidate, load_servable, save_servable
from libs_pipeline.evaluation.metrics import evaluate_methods
from libs_pipeline.evaluation.run import fit_baselines, predictions_frame, write_figures
from libs_pipeline.recalibration.heldout_split import TrainingSplit
from libs_pipeline.spectra.atomic import atomic_write_text
from libs_pipeline.spectra.dataset import spectrum_sample_ids
from libs_pipeline.spectra.grid import intensity_on_grid, same_grid
from libs_pipeline.trust.calibration import TRUST_FILE, load_trust
from libs_pipeline.trust.error_metrics import error_auroc, error_tolerance, flagged_vs_kept
from libs_pipeline.trust.figures import plot_trust_vs_error
from libs_pipeline.trust.prediction import predict_with_trust


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


def grid_problem(model_wavelength: np.ndarray, wavelength: np.ndarray) -> str | None:
    """Why spectra on ``wavelength`` cannot be fed to a model trained on ``model_wavelength`` (None = they can,
    resampled if the grids differ)."""
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
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    test = split.open_heldout().load()
    analyte = split.analyte
    y_true = np.asarray(test[analyte].values, dtype=np.float64)
    sids = spectrum_sample_ids(test)
    wavelength = np.asarray(test["wavelength"].values, dtype=np.float64)
    preds: dict[str, np.ndarray] = {}
    flag_rates: dict[str, float] = {}
    # label -> (trust scores, error scores, flags, threshold)
    trusted: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, float]] = {}
    notes: list[str] = []
    for label, model_dir in models.items():
        model = load_servable(model_dir)
        problem = grid_problem(np.asarray(model.wavelength, dtype=np.float64), wavelength)
        if problem:
            notes.append(f"{label} ({model_dir}) cannot be applied to the held-out spectra: {problem}")
            continue
        if not (Path(model_dir) / TRUST_FILE).is_file():
            notes.append(f"{label} ({model_dir}) has no {TRUST_FILE}: no flag rate")
            x = intensity_on_grid(test, model.wavelength, resample=True)
            preds[label] = np.asarray(model.predict(x)[model.analyte], dtype=np.float64).ravel()
            continue
        calibration = load_trust(model_dir)
        tables = predict_with_trust(model, calibration, test, mc_samples=0, resample=True)
        preds[label] = tables.spectra["concentration"].to_numpy(dtype=np.float64)
        flags = tables.spectra["flag"].to_numpy(dtype=bool)
        flag_rates[label] = float(np.mean(flags))
        trusted[label] = (tables.spectra["trust_score"].to_numpy(dtype=np.float64),
                          tables.spectra["error_score"].to_numpy(dtype=np.float64), flags, float(calibration.threshold))
    baseline_dirs: dict[str, str] = {}
    if baselines:
        candidates = {c.name: c for c in (UnivariateCandidate(lines=lines), PLSCandidate(lines=lines))}
        for name, fitted in fit_baselines(split.open_train().load(), analyte, candidates).items():
            preds[name] = fitted.predict_dataset(test)
            baseline_dirs[name] = str(save_servable(fitted.model, out / "baselines" / name, overwrite=True))
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
    for label, (_, ranking, flags, _) in trusted.items():
        metrics[label].update(_trust_on_heldout(ranking, flags, preds[label] - y_true))
    figures: dict[str, str] = {}
    if preds:
        title = f"{analyte} on held-out samples {', '.join(split.heldout)}"
        figures = {k: str(v) for k, v in write_figures(preds, y_true, sids, out, split.units, title, title).items()}
    for label, (scores, ranking, _, threshold) in trusted.items():
        path = out / f"trust_{label}.png"
        figures[f"trust_{label}"] = str(plot_trust_vs_error(
            scores, preds[label] - y_true, threshold, path, split.units,
            f"{label}: trust score against error on the held-out samples", ranking=ranking))
    atomic_write_text(out / "predictions.csv", predictions_frame(test, y_true, preds).to_csv(index=False))
    atomic_write_text(out / "metrics.csv", table.to_csv())
    return Comparison(
        table=table, metrics=metrics, figures=figures, notes=notes,
        metrics_path=str(out / "metrics.csv"), predictions_path=str(out / "predictions.csv"),
        baseline_dirs=baseline_dirs,
    )


def _trust_on_heldout(ranking: np.ndarray, flags: np.ndarray, errors: np.ndarray) -> dict:
    """Does the model's trust flag its wrong held-out predictions? RMSEP flagged vs kept, and the error-AUROC of
    the error score ``ranking`` (wrong = |error| > 2 x the model's own held-out RMSEP; None when nothing or
    everything is wrong)."""
    rmsep = flagged_vs_kept(errors, flags)["rmsep_all"]
    tolerance = error_tolerance(rmsep) if rmsep else None
    split = flagged_vs_kept(errors, flags, tolerance)
    auroc = error_auroc(ranking, errors, tolerance) if rmsep else None
    return {"rmsep_flagged": split["rmsep_flagged"], "rmsep_kept": split["rmsep_kept"], "error_auroc": auroc,
            "wrong_flagged_fraction": split.get("wrong_flagged_fraction")}


__all__ = ["Comparison", "compare_on_heldout", "grid_problem"]
