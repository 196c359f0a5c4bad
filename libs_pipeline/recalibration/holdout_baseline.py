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
from libs_pipeline.spectra.dataset import select_samples
from libs_pipeline.spectra.store import SpectraStore

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


def serve_heldout_baseline(
    split: Any, name: str, fitted_dir: str | Path, staging_dir: str | Path, trust: TrustConfig | None = None
) -> dict[str, Any]:
    """Stage the baseline ``name`` fitted on the training split (``fitted_dir``) with its trust calibration;
    returns its trust threshold, held-out flag rate and the staged directory."""
    from libs_pipeline.trust.calibration import save_trust
    from libs_pipeline.trust.prediction import calibrate_trust_from_oof, predict_with_trust

    store = SpectraStore(split.root)
    train = store.open(split.train["name"], split.train["version"]).load()
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
    test = select_samples(store.open(split.spectra["name"], split.spectra["version"]), split.heldout).load()
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


__all__ = ["SERVABLE_BASELINES", "best_on_heldout", "serve_heldout_baseline"]
