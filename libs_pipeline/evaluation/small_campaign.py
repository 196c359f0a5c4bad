"""Metrics for campaigns of a handful of reference samples, where the sample (not the shot) is the unit.

A campaign of 5-20 certified samples gives 5-20 independent errors however many shots each has, so
every summary here is computed on per-sample errors (mean prediction over a sample's shots minus its
certified value), with a seeded bootstrap-over-samples interval of the per-sample RMSEP. Whether the
error grows with concentration is reported as the OLS slope of |per-sample error| on the certified
value with its 95 % t-interval: a Breusch-Pagan test on so few points has almost no power, so its
"no heteroscedasticity detected" would mean nothing. Whether one method beats another on the same samples
is ``paired_rmsep_difference``: the RMSEP difference with a paired bootstrap interval (two separate intervals
overlap long before two methods are indistinguishable on the same samples).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy import stats

from libs_pipeline.evaluation.metrics import _pair, per_sample_predictions

MIN_SAMPLES_FOR_BOOTSTRAP = 4
BREUSCH_PAGAN_NOTE = (
    "No Breusch-Pagan test: on {n} per-sample errors it has almost no power, so a high p-value would not "
    "show that the error is constant; the slope of |error| against the certified concentration and its "
    "95 % interval are reported instead."
)


def _rmse(errors: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(errors))))


def _resamples(n: int, seed: int, n_boot: int) -> np.ndarray:
    """``n_boot`` seeded bootstrap resamples (rows of indices into ``n`` samples, drawn with replacement)."""
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    return rng.integers(0, n, size=(n_boot, n))


def _resampled_rmse(errors: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """The RMSE of ``errors`` on each resample (row) of ``draws``."""
    return np.sqrt(np.mean(np.square(errors[draws]), axis=1))


def bootstrap_rmsep_interval(errors: np.ndarray, seed: int = 0, n_boot: int = 2000) -> tuple[float, float]:
    """Percentile 95 % interval of the RMSE of ``errors`` (one per sample) resampled with replacement (seeded)."""
    errors = np.asarray(errors, dtype=np.float64)
    rmse = _resampled_rmse(errors, _resamples(errors.size, seed, n_boot))
    lo, hi = np.percentile(rmse, [2.5, 97.5])
    return float(lo), float(hi)


def paired_rmsep_difference(
    errors: Mapping[str, float], reference: Mapping[str, float], seed: int = 0, n_boot: int = 2000
) -> dict[str, object]:
    """RMSEP(errors) - RMSEP(reference) over the same samples, with a paired bootstrap-over-samples 95 % interval.

    Both map sample -> per-sample error and must name the same samples. Each resample draws samples with
    replacement and recomputes both RMSEPs on the same draw, so the interval reflects how the two methods differ
    on the same samples, not how each varies alone. ``worse_share`` is the share of resamples where ``errors``
    is worse. With fewer than ``MIN_SAMPLES_FOR_BOOTSTRAP`` samples the interval is NaN and a note says why."""
    if set(errors) != set(reference):
        only = sorted(set(errors) ^ set(reference))
        raise ValueError(f"paired comparison needs the same samples on both sides; differing: {', '.join(only[:5])}")
    names = sorted(reference)
    a = np.array([errors[s] for s in names], dtype=np.float64)
    b = np.array([reference[s] for s in names], dtype=np.float64)
    out: dict[str, object] = {"difference": _rmse(a) - _rmse(b), "ci95": [float("nan")] * 2,
                              "worse_share": float("nan"), "n_samples": len(names)}
    if len(names) < MIN_SAMPLES_FOR_BOOTSTRAP:
        out["note"] = (f"interval not computed: a bootstrap over {len(names)} sample(s) has too few distinct "
                       f"resamples (needs at least {MIN_SAMPLES_FOR_BOOTSTRAP} samples)")
        return out
    draws = _resamples(len(names), seed, n_boot)
    diff = _resampled_rmse(a, draws) - _resampled_rmse(b, draws)
    lo, hi = np.percentile(diff, [2.5, 97.5])
    out.update(ci95=[float(lo), float(hi)], worse_share=float(np.mean(diff > 0)))
    return out


def error_slope(y_true: np.ndarray, abs_errors: np.ndarray) -> dict[str, object]:
    """OLS slope (and intercept) of |error| on certified value, with its 95 % t-interval (NaN when undefined)."""
    x = np.asarray(y_true, dtype=np.float64)
    e = np.asarray(abs_errors, dtype=np.float64)
    n = x.size
    out: dict[str, object] = {"slope": float("nan"), "intercept": float("nan"), "ci95": [float("nan")] * 2, "df": n - 2}
    if n < 2 or np.ptp(x) == 0:
        out["note"] = "slope undefined: fewer than 2 distinct certified concentrations"
        return out
    sxx = float(np.sum((x - x.mean()) ** 2))
    slope = float(np.sum((x - x.mean()) * (e - e.mean())) / sxx)
    intercept = float(e.mean() - slope * x.mean())
    out.update(slope=slope, intercept=intercept)
    if n < 3:
        out["note"] = "slope interval undefined: 2 samples leave no degree of freedom for the residual variance"
        return out
    resid = e - (intercept + slope * x)
    se = float(np.sqrt(np.sum(resid**2) / (n - 2) / sxx))
    half = float(stats.t.ppf(0.975, n - 2)) * se
    out["ci95"] = [slope - half, slope + half]
    out["note"] = f"t-interval with {n - 2} degree(s) of freedom"
    return out


def small_campaign_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, sample_ids: Sequence[object], seed: int = 0, n_boot: int = 2000
) -> dict[str, object]:
    """Per-sample and per-spectrum RMSEP, relative errors, R2, bias, per-sample errors, bootstrap CI, error slope.

    Keys: n_samples, n_spectra, rmsep_sample, rmsep_spectrum, rel_rmsep (rmsep_sample / mean certified value),
    rms_rel_error (RMS of per-sample error / certified value), r2_sample, bias (mean per-sample error),
    errors {sample: error}, rmsep_sample_ci95 [lo, hi], error_slope {...}, notes [plain words].
    """
    t, p = _pair(y_true, y_pred)
    table = per_sample_predictions(sample_ids, t, p)
    truth = table["y_true"].to_numpy()
    err = table["y_pred"].to_numpy() - truth
    n = int(truth.size)
    notes = [BREUSCH_PAGAN_NOTE.format(n=n)]
    rmsep = _rmse(err)
    mean_true = float(truth.mean())
    ss_tot = float(np.sum((truth - mean_true) ** 2))
    if np.any(truth == 0):
        rms_rel = float("nan")
        notes.append("rms_rel_error undefined: a sample has certified value 0")
    else:
        rms_rel = _rmse(err / truth)
    if ss_tot == 0:
        notes.append("r2_sample undefined: all samples have the same certified value")
    if n >= MIN_SAMPLES_FOR_BOOTSTRAP:
        ci = list(bootstrap_rmsep_interval(err, seed=seed, n_boot=n_boot))
    else:
        ci = [float("nan"), float("nan")]
        notes.append(
            f"rmsep_sample_ci95 not computed: a bootstrap over {n} sample(s) has too few distinct resamples "
            f"(needs at least {MIN_SAMPLES_FOR_BOOTSTRAP} samples)"
        )
    return {
        "n_samples": n,
        "n_spectra": int(t.size),
        "rmsep_sample": rmsep,
        "rmsep_spectrum": _rmse(p - t),
        "rel_rmsep": rmsep / mean_true if mean_true != 0 else float("nan"),
        "rms_rel_error": rms_rel,
        "r2_sample": 1.0 - float(np.sum(err**2)) / ss_tot if ss_tot > 0 else float("nan"),
        "bias": float(err.mean()),
        "errors": {str(s): float(e) for s, e in zip(table["sample_id"], err)},
        "rmsep_sample_ci95": ci,
        "error_slope": error_slope(truth, np.abs(err)),
        "notes": notes,
    }
