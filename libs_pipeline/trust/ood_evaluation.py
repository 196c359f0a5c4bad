"""How well a score separates shifted spectra from in-distribution ones, and whether flags catch the bad predictions."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def _clean(scores: np.ndarray, name: str) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if s.size == 0:
        raise ValueError(f"{name}: no scores")
    if np.isnan(s).any():
        raise ValueError(f"{name}: {int(np.isnan(s).sum())} scores are NaN")
    return s


def auroc(in_distribution: np.ndarray, shifted: np.ndarray) -> float:
    """P(score of a shifted spectrum > score of an in-distribution one), ties counting 1/2 (Mann-Whitney U)."""
    neg = _clean(in_distribution, "auroc in_distribution")
    pos = _clean(shifted, "auroc shifted")
    finite_max = np.max(np.abs(np.concatenate([neg, pos])[np.isfinite(np.concatenate([neg, pos]))]), initial=1.0)
    both = np.nan_to_num(np.concatenate([neg, pos]), posinf=2 * finite_max + 1, neginf=-2 * finite_max - 1)
    ranks = rankdata(both)
    u = ranks[neg.size :].sum() - pos.size * (pos.size + 1) / 2.0
    return float(u / (neg.size * pos.size))


def roc_curve(in_distribution: np.ndarray, shifted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false-positive rate, true-positive rate) over all thresholds, from (0, 0) to (1, 1)."""
    neg = _clean(in_distribution, "roc in_distribution")
    pos = _clean(shifted, "roc shifted")
    thresholds = np.unique(np.concatenate([neg, pos]))[::-1]
    fpr = np.concatenate([[0.0], [(neg >= t).mean() for t in thresholds]])
    tpr = np.concatenate([[0.0], [(pos >= t).mean() for t in thresholds]])
    return fpr, tpr


def rmsep(y_true: np.ndarray, y_pred: np.ndarray) -> float | None:
    """Root-mean-square prediction error; None for an empty set (reported as null, not as a number)."""
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    if t.size == 0:
        return None
    return float(np.sqrt(np.mean((p - t) ** 2)))


def flag_metrics(y_true: np.ndarray, y_pred: np.ndarray, flag: np.ndarray) -> dict:
    """flag_rate, and RMSEP of the flagged / unflagged predictions (the flagged ones should be the bad ones)."""
    t = np.asarray(y_true, dtype=np.float64).reshape(-1)
    p = np.asarray(y_pred, dtype=np.float64).reshape(-1)
    f = np.asarray(flag, dtype=bool).reshape(-1)
    if not (t.shape == p.shape == f.shape):
        raise ValueError(f"flag_metrics: shapes differ: y_true {t.shape}, y_pred {p.shape}, flag {f.shape}")
    return {
        "n": int(f.size),
        "flag_rate": float(f.mean()) if f.size else None,
        "n_flagged": int(f.sum()),
        "rmsep_all": rmsep(t, p),
        "rmsep_flagged": rmsep(t[f], p[f]),
        "rmsep_unflagged": rmsep(t[~f], p[~f]),
    }
