"""One small-campaign recalibration step as plain Python: compare every candidate family by leave-one-sample-out
on a spectra version, serve the best refitted on everything, write the candidate table and figures.

The recalibrate flow calls ``run_loso_recalibration`` as one task and passes on only paths and small dicts.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from libs_pipeline.candidates import default_candidates
from libs_pipeline.config import RecalibrationConfig
from libs_pipeline.evaluation.nested import jsonable
from libs_pipeline.evaluation.plots import parity_plot, residual_plot
from libs_pipeline.recalibration.loso_selection import choose_served, compare_by_loso, fit_served
from libs_pipeline.recalibration.realism_gate import augmented_families, realism_exclusions
from libs_pipeline.spectra.atomic import atomic_write_json, atomic_write_text
from libs_pipeline.spectra.dataset import resolve_analyte, spectrum_sample_ids
from libs_pipeline.spectra.store import SpectraStore


class NoLabelsError(ValueError):
    """The spectra version has no certified value for the analyte: nothing to calibrate on."""


def labelled_spectra(ds, analyte: str, where: str):
    """Spectra with a finite ``analyte`` label; NoLabelsError (plain words) when there are none."""
    labels = np.asarray(ds[analyte].values, dtype=np.float64)
    keep = np.isfinite(labels)
    if not keep.any():
        raise NoLabelsError(
            f"{where}: no spectrum has a certified {analyte!r} value (all samples are unknowns); recalibration "
            "needs reference samples with known concentrations"
        )
    return ds.isel(spectrum=np.flatnonzero(keep))


def run_loso_recalibration(
    config: RecalibrationConfig, version: str, staging_dir: str | Path, report_dir: str | Path, log=None
) -> dict[str, Any]:
    """Compare ``config.candidates`` by LOSO on ``config.dataset@version``, refit and save the winner with its
    trust calibration in ``staging_dir``; write ``candidates.csv``, ``loso_predictions.csv``, figures and
    ``candidates.json`` to ``report_dir``. Returns the challenger's metrics, the table rows and the paths."""
    store = SpectraStore(config.root)
    where = f"spectra {config.dataset}@{version}"
    ds = store.open(config.dataset, version).load()
    analyte, units = resolve_analyte(ds, config.analyte, where)
    ds = labelled_spectra(ds, analyte, where)
    per_sample = config.synthesis.per_sample
    training = {k: v for k, v in config.section_overrides("training").items() if k != "augmentation"}
    candidates = default_candidates(config.candidates, training=training, per_sample=per_sample, seed=config.seed)
    comparison = compare_by_loso(ds, analyte, candidates, progress=log)
    out = Path(report_dir)
    out.mkdir(parents=True, exist_ok=True)
    realism, excluded = realism_exclusions(candidates, ds, analyte, config.seed, out)  # reported in any case
    if not config.promotion.require_realistic_synthetic:
        excluded = {}
    selection = choose_served(comparison, excluded=excluded)
    if log:
        log(f"served: {selection.reason}")
    served = fit_served(ds, analyte, selection.winner, candidates[selection.winner],
                        comparison.results[selection.winner], staging_dir, config.trust)
    table = comparison.table()
    atomic_write_text(out / "candidates.csv", table.to_csv())
    y_true = np.asarray(ds[analyte].values, dtype=np.float64)
    sids = spectrum_sample_ids(ds)
    preds = {n: r.predictions for n, r in comparison.results.items()}
    frame = {"sample_id": sids, "y_true": y_true, **preds}
    atomic_write_text(out / "loso_predictions.csv", pd.DataFrame(frame).to_csv(index=False))
    title = f"{analyte}: leave-one-sample-out over {len(comparison.samples)} samples"
    figures = {
        "parity": str(parity_plot(preds, y_true, sids, out / "parity.png", units, title)),
        "residuals": str(residual_plot(preds, y_true, sids, out / "residuals.png", units, title)),
    }
    metrics = comparison.metrics()
    winner = metrics[selection.winner]
    challenger = {
        "protocol": "loso",
        "candidate": selection.winner,
        "rmsep": float(winner["rmsep_sample"]),
        "sample_rmsep": float(winner["rmsep_sample"]),
        "spectrum_rmsep": float(winner.get("rmsep_spectrum", math.nan)),
        "r2": float(winner.get("r2_sample", math.nan)),
        "bias": float(winner.get("bias", math.nan)),
        "flag_rate": float(served.trust.get("out_of_sample_flag_rate") or 0.0),
        "n_spectra": int(ds.sizes["spectrum"]),
        "n_samples": len(comparison.samples),
        "heldout_samples": [],
        "synthetic_realism_passed": (realism or {}).get("passed")
        if selection.winner in augmented_families(candidates) else None,
    }
    per_candidate = {
        name: {
            "rmsep": float(m["rmsep_sample"]), "sample_rmsep": float(m["rmsep_sample"]),
            "spectrum_rmsep": float(m.get("rmsep_spectrum", math.nan)), "r2": float(m.get("r2_sample", math.nan)),
            "bias": float(m.get("bias", math.nan)), "n_spectra": int(ds.sizes["spectrum"]),
            "minus_univariate": float(table.loc[name, "minus_univariate"]),
            "minus_univariate_ci95": [float(table.loc[name, f"minus_univariate_ci_{end}"]) for end in ("low", "high")],
        }
        for name, m in metrics.items()
    }
    result = {
        "protocol": "loso",
        "analyte": analyte,
        "units": units,
        "samples": comparison.samples,
        "selection": {"winner": selection.winner, "reason": selection.reason,
                      "best_baseline": selection.best_baseline, "best_baseline_rmsep": selection.best_baseline_rmsep},
        "challenger_metrics": challenger,
        "candidate_metrics": per_candidate,
        "candidate_errors": dict(comparison.errors),
        "candidate_table": jsonable(table.reset_index().to_dict("records")),
        "trust": served.trust,
        "synthetic_realism": realism,
        "served_details": served.details,
        "model_dir": str(served.model_dir),
        "figures": figures,
        "files": {"candidates": str(out / "candidates.csv"), "predictions": str(out / "loso_predictions.csv")},
    }
    atomic_write_json(out / "candidates.json", jsonable(result))
    return jsonable(result)


__all__ = ["NoLabelsError", "labelled_spectra", "run_loso_recalibration"]
