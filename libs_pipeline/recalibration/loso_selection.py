"""Recalibration of a small campaign: every candidate family by leave-one-sample-out on all labelled samples,
the best one refitted on everything and served, trust calibrated from its out-of-fold predictions.

Why: with 5-11 reference samples a held-out split leaves 1-3 samples to judge by and takes them away from
training (``evaluation.protocol.use_nested_protocol``). Here every sample is predicted once by a model that
never saw it; the same out-of-fold predictions choose the family and calibrate the trust scales (documented
cross-fitting: scales come from models that did not see the scored sample, the served model is the refit).
The winner's LOSO figure is selection-biased (it is the minimum over the families); the honest figure of the
whole procedure is the nested LOSO of ``benchmarks/accuracy.py`` ("served").
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from libs_pipeline.candidates import save_servable
from libs_pipeline.config import TrustConfig
from libs_pipeline.evaluation.nested import LosoResult, choose_family, jsonable, loso_predictions
from libs_pipeline.evaluation.small_campaign import paired_rmsep_difference
from libs_pipeline.spectra.dataset import sample_ids, spectrum_sample_ids
from libs_pipeline.trust.calibration import save_trust
from libs_pipeline.trust.prediction import calibrate_trust_from_oof

BASELINE_FAMILIES = ("univariate", "pls")
Progress = Callable[[str], None]


@dataclass
class CandidateComparison:
    """Every candidate's out-of-fold result on the same samples; failures recorded, not raised."""

    analyte: str
    units: str
    samples: list[str]
    results: dict[str, LosoResult]
    errors: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def metrics(self) -> dict[str, dict]:
        return {name: r.metrics() for name, r in self.results.items()}

    def table(self) -> pd.DataFrame:
        """One row per candidate (failed ones with their error): per-sample and per-spectrum RMSEP, R², bias, and
        (when the univariate ran) its RMSEP minus the univariate's on the same samples, with a paired bootstrap
        interval: whether a candidate is really better or worse than the line-area calibration."""
        rows = []
        metrics = self.metrics()
        reference = metrics.get("univariate", {}).get("errors")
        for name in [*self.results, *self.errors]:
            m = metrics.get(name, {})
            paired = (paired_rmsep_difference(m["errors"], reference) if reference is not None and m
                      else {"difference": math.nan, "ci95": [math.nan, math.nan]})
            rows.append({
                "candidate": name,
                "sample_rmsep": m.get("rmsep_sample", math.nan),
                "sample_rmsep_ci_low": (m.get("rmsep_sample_ci95") or [math.nan, math.nan])[0],
                "sample_rmsep_ci_high": (m.get("rmsep_sample_ci95") or [math.nan, math.nan])[1],
                "spectrum_rmsep": m.get("rmsep_spectrum", math.nan),
                "relative_rmsep": m.get("rel_rmsep", math.nan),
                "r2": m.get("r2_sample", math.nan),
                "bias": m.get("bias", math.nan),
                "minus_univariate": paired["difference"],
                "minus_univariate_ci_low": paired["ci95"][0],
                "minus_univariate_ci_high": paired["ci95"][1],
                "seconds": self.seconds.get(name, math.nan),
                "error": self.errors.get(name, ""),
            })
        return pd.DataFrame(rows).set_index("candidate")


@dataclass(frozen=True)
class Selection:
    """Which candidate is served and why (numbers included)."""

    winner: str
    reason: str
    rmsep: float
    best_baseline: str | None
    best_baseline_rmsep: float


def compare_by_loso(
    ds: xr.Dataset, analyte: str, candidates: Mapping[str, Any], progress: Progress | None = None
) -> CandidateComparison:
    """LOSO of every candidate over the labelled samples of ``ds``; a candidate that fails is recorded."""
    results: dict[str, LosoResult] = {}
    errors: dict[str, str] = {}
    seconds: dict[str, float] = {}
    for name, candidate in candidates.items():
        start = time.perf_counter()
        if progress:
            progress(f"leave-one-sample-out: {name}")
        try:
            results[name] = loso_predictions(ds, analyte, candidate)
        except Exception as exc:  # one family failing must not stop the others from being compared
            errors[name] = f"{type(exc).__name__}: {exc}"
        seconds[name] = time.perf_counter() - start
    labelled = np.isfinite(np.asarray(ds[analyte].values, dtype=np.float64))
    samples = [s for s in sample_ids(ds) if labelled[spectrum_sample_ids(ds) == s].any()]
    units = str(ds[analyte].attrs.get("units", ""))
    return CandidateComparison(analyte, units, samples, results, errors, seconds)


def _per_sample_errors(result: LosoResult) -> np.ndarray:
    table = result.per_sample()
    return table["y_pred"].to_numpy(dtype=np.float64) - table["y_true"].to_numpy(dtype=np.float64)


def choose_served(
    comparison: CandidateComparison,
    baselines: Sequence[str] = BASELINE_FAMILIES,
    excluded: Mapping[str, str] | None = None,
) -> Selection:
    """The family ``choose_family`` picks from the LOSO results (candidates in the order given: simplest first);
    the reason names the ranking and the best baseline. ``excluded``: families that may not be served, with the
    reason (e.g. their synthetic spectra failed the realism check)."""
    excluded = dict(excluded or {})
    metrics = comparison.metrics()
    scored = {n: float(m["rmsep_sample"]) for n, m in metrics.items()
              if math.isfinite(m.get("rmsep_sample", math.nan)) and n not in excluded}
    if not scored:
        failures = "; ".join(f"{n}: {e}" for n, e in comparison.errors.items()) or "no candidate ran"
        raise RuntimeError(f"no candidate could be evaluated by leave-one-sample-out ({failures})")
    winner = choose_family(list(scored), {n: _per_sample_errors(comparison.results[n]) for n in scored})
    base = {n: v for n, v in scored.items() if n in baselines}
    best_base = min(base, key=base.get) if base else None
    units = f" {comparison.units}" if comparison.units else ""
    ranking = ", ".join(f"{n} {v:.4g}" for n, v in sorted(scored.items(), key=lambda kv: kv[1]))
    best = min(scored, key=scored.get)
    if winner == best:
        why = f"{winner} has the lowest per-sample leave-one-sample-out RMSEP ({scored[winner]:.4g}{units})"
    else:
        why = (f"{winner} ({scored[winner]:.4g}{units}) is simpler than {best} ({scored[best]:.4g}{units}), "
               "which does not beat it by more than a paired standard error")
    reason = f"{why} over {len(comparison.samples)} samples; ranking: {ranking}"
    if best_base is not None and best_base != winner:
        reason += f"; best baseline {best_base} {base[best_base]:.4g}{units}"
    if comparison.errors:
        reason += "; failed: " + ", ".join(comparison.errors)
    if excluded:
        reason += "; not eligible: " + "; ".join(f"{n} ({why})" for n, why in excluded.items())
    return Selection(winner, reason, scored[winner], best_base, base.get(best_base, math.nan) if best_base else math.nan)


@dataclass
class ServedModel:
    """The refitted winner saved with its trust calibration."""

    model_dir: Path
    candidate: str
    trust_threshold: float
    trust: dict[str, Any]
    details: dict[str, Any]


def fit_served(
    ds: xr.Dataset,
    analyte: str,
    name: str,
    candidate: Any,
    oof: LosoResult,
    model_dir: str | Path,
    trust_config: TrustConfig | None = None,
) -> ServedModel:
    """Refit ``candidate`` on every labelled spectrum, save it, and calibrate its trust from the out-of-fold
    predictions ``oof`` (each sample scored by a model that never saw it)."""
    labelled = ds.isel(spectrum=np.flatnonzero(np.isfinite(np.asarray(ds[analyte].values, dtype=np.float64))))
    fitted = candidate.fit(labelled, analyte)
    Path(model_dir).parent.mkdir(parents=True, exist_ok=True)
    directory = save_servable(fitted.model, model_dir)
    mask = np.isfinite(oof.predictions)
    rows = np.flatnonzero(np.isfinite(np.asarray(ds[analyte].values, dtype=np.float64)))
    if not np.array_equal(np.flatnonzero(mask), rows):
        raise ValueError("out-of-fold predictions do not cover exactly the labelled spectra of the dataset")
    tasks = {k: np.asarray(v, dtype=np.float64)[mask] for k, v in (oof.task_predictions or {}).items()}
    tasks.setdefault(analyte, oof.predictions[mask])
    calibration = calibrate_trust_from_oof(fitted.model, labelled.load(), tasks, trust_config)
    save_trust(calibration, directory)
    trust = jsonable({
        "threshold": calibration.threshold,
        "method": calibration.extra.get("threshold_method"),
        "out_of_sample_flag_rate": calibration.extra.get("out_of_sample_flag_rate"),
        "disabled_parts": dict(getattr(calibration, "disabled_parts", {}) or {}),
        "parts": calibration.part_names(),
    })
    return ServedModel(Path(directory), name, float(calibration.threshold), trust, fitted.describe())


__all__ = ["CandidateComparison", "Selection", "ServedModel", "choose_served", "compare_by_loso", "fit_served"]
