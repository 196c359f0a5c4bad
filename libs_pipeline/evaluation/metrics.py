"""Regression metrics per spectrum and per sample, and homoscedasticity checks.

RMSEP, MAE, bias (mean of prediction - truth), R^2 (1 - SS_res/SS_tot), relative RMSE (RMSEP / mean
certified concentration); Breusch-Pagan (Koenker's n R^2 form) p-value of squared residuals against
concentration, and residual spread per concentration tertile ("homoscedastic" = error constant across the range).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats


def _pair(y_true: np.ndarray, y_pred: np.ndarray, what: str = "y_pred") -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(y_pred, dtype=np.float64).ravel()
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} values but {what} has {p.size}")
    if t.size == 0:
        raise ValueError("y_true is empty: nothing to evaluate")
    for name, arr in (("y_true", t), (what, p)):
        bad = ~np.isfinite(arr)
        if np.any(bad):
            raise ValueError(f"{name}: {int(bad.sum())} non-finite value(s), first at index {int(np.flatnonzero(bad)[0])}")
    return t, p


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """rmsep, mae, bias, r2 (NaN when y_true is constant), rel_rmse, n."""
    t, p = _pair(y_true, y_pred)
    err = p - t
    ss_tot = float(np.sum((t - t.mean()) ** 2))
    mean_true = float(t.mean())
    rmsep = float(np.sqrt(np.mean(err**2)))
    return {
        "rmsep": rmsep,
        "mae": float(np.mean(np.abs(err))),
        "bias": float(np.mean(err)),
        "r2": float(1.0 - np.sum(err**2) / ss_tot) if ss_tot > 0 else float("nan"),
        "rel_rmse": rmsep / mean_true if mean_true != 0 else float("nan"),
        "n": int(t.size),
    }


def breusch_pagan_p(y_true: np.ndarray, residuals: np.ndarray) -> float:
    """P-value that residual variance does not depend on concentration (regress e^2 on [1, y]; LM = n R^2 ~ chi2(1)).

    NaN when fewer than 3 points or y_true is constant (test undefined); 1.0 when e^2 is constant.
    """
    t, e = _pair(y_true, residuals, "residuals")
    if t.size < 3 or np.ptp(t) == 0:
        return float("nan")
    e2 = e**2
    ss_tot = float(np.sum((e2 - e2.mean()) ** 2))
    if ss_tot <= 0:
        return 1.0
    design = np.column_stack([np.ones_like(t), t])
    coef, *_ = np.linalg.lstsq(design, e2, rcond=None)
    r2 = 1.0 - float(np.sum((e2 - design @ coef) ** 2)) / ss_tot
    lm = t.size * max(r2, 0.0)
    return float(stats.chi2.sf(lm, df=1))


def residual_spread_by_tertile(y_true: np.ndarray, residuals: np.ndarray) -> dict[str, float]:
    """Std (ddof=1; NaN with < 2 points) of residuals in the low/mid/high concentration tertile, and max/min ratio.

    Tertile edges are the 1/3 and 2/3 quantiles of y_true: low <= q1 < mid <= q2 < high.
    """
    t, e = _pair(y_true, residuals, "residuals")
    q1, q2 = np.quantile(t, [1.0 / 3.0, 2.0 / 3.0])
    masks = {"low": t <= q1, "mid": (t > q1) & (t <= q2), "high": t > q2}
    out = {name: float(np.std(e[m], ddof=1)) if m.sum() >= 2 else float("nan") for name, m in masks.items()}
    finite = [v for v in out.values() if np.isfinite(v)]
    out["ratio"] = float(max(finite) / min(finite)) if len(finite) >= 2 and min(finite) > 0 else float("nan")
    return out


def per_sample_predictions(sample_ids: Sequence[object], y_true: np.ndarray, y_pred: np.ndarray) -> pd.DataFrame:
    """One row per sample (order of first appearance): sample_id, y_true, y_pred (mean of shots), y_pred_std, n_spectra."""
    t, p = _pair(y_true, y_pred)
    sids = np.asarray(sample_ids).astype(str)
    if sids.shape[0] != t.size:
        raise ValueError(f"sample_ids has {sids.shape[0]} values but y_true has {t.size}")
    frame = pd.DataFrame({"sample_id": sids, "y_true": t, "y_pred": p})
    grouped = frame.groupby("sample_id", sort=False)
    spread = grouped["y_true"].agg(lambda v: float(np.ptp(v.to_numpy())))
    inconsistent = spread[spread > 1e-9 * np.maximum(1.0, np.abs(t).max())]
    if len(inconsistent):
        raise ValueError(f"sample {inconsistent.index[0]!r}: y_true differs between its spectra (one label per sample)")
    out = grouped.agg(
        y_true=("y_true", "first"),
        y_pred=("y_pred", "mean"),
        y_pred_std=("y_pred", lambda v: float(np.std(v.to_numpy(), ddof=1)) if len(v) > 1 else float("nan")),
        n_spectra=("y_pred", "size"),
    )
    return out.reset_index()


def level_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """regression_metrics + bp_p + spread_<tertile> + spread_ratio for one set of predictions."""
    t, p = _pair(y_true, y_pred)
    out = regression_metrics(t, p)
    out["bp_p"] = breusch_pagan_p(t, p - t)
    for name, value in residual_spread_by_tertile(t, p - t).items():
        out[f"spread_{name}"] = value
    return out


def evaluate_methods(
    predictions: Mapping[str, np.ndarray], y_true: np.ndarray, sample_ids: Sequence[object]
) -> pd.DataFrame:
    """One row per method (index ``method``); columns ``<level>_<metric>`` for level spectrum and sample.

    Sample level = each sample's mean prediction over its spectra against its certified value.
    """
    if not predictions:
        raise ValueError("predictions: need at least one method")
    rows = []
    for method, pred in predictions.items():
        try:
            spectrum_level = level_metrics(y_true, pred)
            per_sample = per_sample_predictions(sample_ids, y_true, pred)
        except ValueError as exc:
            raise ValueError(f"method {method!r}: {exc}") from exc
        sample_level = level_metrics(per_sample["y_true"].to_numpy(), per_sample["y_pred"].to_numpy())
        row: dict[str, object] = {"method": str(method)}
        row.update({f"spectrum_{k}": v for k, v in spectrum_level.items()})
        row.update({f"sample_{k}": v for k, v in sample_level.items()})
        rows.append(row)
    table = pd.DataFrame(rows).set_index("method")
    table = table.rename(columns={"spectrum_n": "n_spectra", "sample_n": "n_samples"})
    return table
