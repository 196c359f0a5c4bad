"""Held-out recalibration (larger campaigns) when a baseline beats the multitask challenger on the held-out
samples: the baseline, fitted on the training split, is served instead, with a trust calibration of its own.

Its trust scales come from leave-one-sample-out predictions over the training samples (cheap for a baseline);
its flag rate is measured on the held-out samples, like the network's.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from libs_pipeline.candidates import default_candidates, load_servable
from libs_pipeline.config import TrustConfig
from libs_pipeline.evaluation.nested import jsonable, loso_predictions
from libs_pipeline.recalibration.heldout_split import TrainingSplit
from libs_pipeline.recalibration.outcome import CHALLENGER
from libs_pipeline.trust.calibration import save_trust
from libs_pipeline.trust.prediction import calibrate_trust_from_oof, predict_with_trust

#: Families whose held-out fit the comparison saves, so that one of them can be served.
SERVABLE_BASELINES = ("univariate", "pls")


def best_on_heldout(metrics: dict[str, dict], challenger: str, baselines: tuple[str, ...] = SERVABLE_BASELINES) -> str:
    """The method to serve: the challenger unless a baseline has a strictly lower held-out RMSEP."""
    best, best_rmsep = challenger, float(metrics.get(challenger, {}).get("rmsep", math.nan))
    for name in baselines:
        value = float(metrics.get(name, {}).get("rmsep", math.nan))
        if math.isfinite(value) and (not math.isfinite(best_rmsep) or value < best_rmsep):
            best, best_rmsep = name, value
    return best


def baseline_to_serve(metrics: dict[str, dict], baseline_dirs: dict[str, str], allowed: list[str]) -> str | None:
    """The baseline to serve instead of the multitask challenger: one with a lower held-out RMSEP that was fitted
    (``baseline_dirs``) and is among the configured candidates (``allowed``); None to serve the challenger."""
    served = best_on_heldout(metrics, CHALLENGER)
    if served != CHALLENGER and served in baseline_dirs and served in allowed:
        return served
    return None


def served_baseline_record(metrics: dict[str, dict], name: str, baseline: dict[str, Any]) -> tuple[dict, dict, str]:
    """What the served baseline ``name`` (``serve_heldout_baseline``'s result) becomes: the challenger's metrics,
    its training record (``model_dir``, ``trust_threshold``, ``training_metrics``) and the note explaining it."""
    challenger = {**metrics[name], "flag_rate": baseline["flag_rate"], "candidate": name}
    trained = {"model_dir": baseline["model_dir"], "trust_threshold": baseline["trust_threshold"],
               "training_metrics": baseline["training_metrics"]}
    note = (f"{name} had a lower held-out RMSEP than the multitask network: the challenger is the {name} "
            "calibration fitted on the training samples")
    return challenger, trained, note


def serve_heldout_baseline(
    split: TrainingSplit, name: str, fitted_dir: str | Path, staging_dir: str | Path, trust: TrustConfig | None = None
) -> dict[str, Any]:
    """Stage the baseline ``name`` fitted on the training split (``fitted_dir``) with its trust calibration;
    returns its trust threshold, held-out flag rate and the staged directory."""
    train = split.open_train().load()
    labelled = train.isel(spectrum=np.flatnonzero(np.isfinite(np.asarray(train[split.analyte].values, float))))
    candidate = default_candidates([name])[name]
    oof = loso_predictions(labelled, split.analyte, candidate)
    staging = Path(staging_dir)
    if staging.exists():
        shutil.rmtree(staging)
    shutil.copytree(fitted_dir, staging)
    model = load_servable(staging)
    calibration = calibrate_trust_from_oof(model, labelled, {split.analyte: oof.predictions}, trust)
    save_trust(calibration, staging)
    test = split.open_heldout().load()
    tables = predict_with_trust(model, calibration, test, mc_samples=0, resample=True)
    flag_rate = float(np.mean(tables.spectra["flag"].to_numpy(dtype=bool)))
    return jsonable({
        "model_dir": str(staging),
        "trust_threshold": float(calibration.threshold),
        "flag_rate": flag_rate,
        "disabled_parts": dict(calibration.disabled_parts),
        "training_metrics": {"candidate": name, "train_samples": list(split.train_samples),
                             "loso_rmsep_on_training": oof.metrics()["rmsep_sample"]},
    })


__all__ = [
    "SERVABLE_BASELINES", "baseline_to_serve", "best_on_heldout", "serve_heldout_baseline", "served_baseline_record",
]
