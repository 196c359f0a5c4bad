"""Error-based evaluation of a trust score: does it put the *wrong* predictions first?

A user asks "is this number wrong?", not "is this spectrum different from the calibration set?".
Shift detection (scenario spectra against nominal ones) counts a shift that leaves the prediction
right as a hit; here the positives are predictions whose absolute error exceeds a tolerance --
``k`` times the in-distribution RMSEP by default, or an absolute tolerance in the analyte's units.

- ``error_auroc``: probability that a wrong prediction scores above a right one.
- ``risk_coverage``: RMSEP of the predictions kept when the most suspect fraction is rejected, at
  chosen coverages, and the area under the whole curve (AURC, lower is better), with the oracle
  (reject by true error) and random (constant risk) references.
- ``flag_rate``: in-distribution flag rate per spectrum and per sample with Clopper-Pearson intervals.
  Shots of one sample are not exchangeable, so the per-spectrum interval uses Kish's effective sample
  size (design effect from the between-sample spread of the flag rate); with 4-10 samples the
  per-sample interval is wide, and that is the honest answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import beta

from libs_pipeline.trust.ood_evaluation import auroc, flag_metrics

DEFAULT_K = 2.0
COVERAGES = (1.0, 0.9, 0.8)


def error_tolerance(in_distribution_rmsep: float, k: float = DEFAULT_K, absolute: float | None = None) -> float:
    """The |error| above which a prediction counts as wrong: ``absolute`` if given, else ``k`` x RMSEP."""
    if absolute is not None:
        if not absolute > 0:
            raise ValueError(f"absolute tolerance must be > 0, got {absolute}")
        return float(absolute)
    if not (np.isfinite(in_distribution_rmsep) and in_distribution_rmsep > 0):
        raise ValueError(f"in-distribution RMSEP must be a positive number, got {in_distribution_rmsep}")
    if not k > 0:
        raise ValueError(f"k must be > 0, got {k}")
    return float(k * in_distribution_rmsep)


def _paired(scores: np.ndarray, errors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).ravel()
    e = np.abs(np.asarray(errors, dtype=np.float64).ravel())
    if s.shape != e.shape:
        raise ValueError(f"{s.size} scores but {e.size} errors")
    if not np.isfinite(e).all():
        raise ValueError("errors must be finite (a prediction without a reference value cannot be scored)")
    s = np.where(np.isnan(s), np.inf, s)  # an unscorable spectrum is the most suspect, never the least
    return s, e


def error_auroc(scores: np.ndarray, errors: np.ndarray, tolerance: float) -> float | None:
    """AUROC of ``scores`` for the positives |error| > ``tolerance``; None when one class is empty."""
    s, e = _paired(scores, errors)
    wrong = e > tolerance
    if wrong.all() or not wrong.any():
        return None
    return auroc(s[~wrong], s[wrong])


@dataclass(frozen=True)
class RiskCoverage:
    """Risk (RMSEP of the kept predictions) against coverage (fraction kept, most trusted first)."""

    coverage: np.ndarray
    rmsep: np.ndarray
    rmsep_oracle: np.ndarray
    aurc: float
    aurc_oracle: float
    aurc_random: float

    def at(self, coverage: float, oracle: bool = False) -> float:
        """RMSEP of the ceil(coverage x n) most trusted predictions (``oracle``: of the smallest errors)."""
        if not 0 < coverage <= 1:
            raise ValueError(f"coverage must be in (0, 1], got {coverage}")
        n = self.coverage.size
        k = max(int(np.ceil(round(coverage * n, 9))), 1)
        return float((self.rmsep_oracle if oracle else self.rmsep)[k - 1])

    def summary(self, coverages: Sequence[float] = COVERAGES) -> dict:
        return {
            "rmsep_at_coverage": {str(c): self.at(c) for c in coverages},
            "oracle_rmsep_at_coverage": {str(c): self.at(c, oracle=True) for c in coverages},
            "aurc": self.aurc,
            "aurc_oracle": self.aurc_oracle,
            "aurc_random": self.aurc_random,
        }


def _curve(order: np.ndarray, e: np.ndarray) -> np.ndarray:
    kept_sq = np.cumsum(e[order] ** 2)
    return np.sqrt(kept_sq / np.arange(1, e.size + 1))


def risk_coverage(scores: np.ndarray, errors: np.ndarray) -> RiskCoverage:
    """The risk-coverage curve of rejecting the highest scores first (ties broken by position, stable)."""
    s, e = _paired(scores, errors)
    if s.size == 0:
        raise ValueError("risk-coverage needs at least one prediction")
    n = s.size
    rmsep = _curve(np.argsort(s, kind="stable"), e)
    oracle = _curve(np.argsort(e, kind="stable"), e)
    return RiskCoverage(
        coverage=np.arange(1, n + 1) / n,
        rmsep=rmsep,
        rmsep_oracle=oracle,
        aurc=float(rmsep.mean()),
        aurc_oracle=float(oracle.mean()),
        aurc_random=float(np.sqrt(np.mean(e**2))),
    )


def clopper_pearson(k: float, n: float, level: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval of a binomial proportion; ``k``, ``n`` may be effective (non-integer)."""
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n > 0, got k={k}, n={n}")
    a = (1 - level) / 2
    low = 0.0 if k == 0 else float(beta.ppf(a, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1 - a, k + 1, n - k))
    return low, high


def design_effect(flags: np.ndarray, groups: np.ndarray) -> float:
    """Kish's design effect 1 + (m - 1) ICC of binary ``flags`` clustered by ``groups`` (ANOVA ICC, clipped to [0, 1])."""
    f = np.asarray(flags, dtype=np.float64)
    g = np.asarray(groups).astype(str)
    names, inverse, sizes = np.unique(g, return_inverse=True, return_counts=True)
    k, n = names.size, f.size
    if k < 2 or n <= k:
        return 1.0
    means = np.bincount(inverse, weights=f) / sizes
    grand = f.mean()
    msb = np.sum(sizes * (means - grand) ** 2) / (k - 1)
    msw = np.sum((f - means[inverse]) ** 2) / (n - k)
    m0 = (n - np.sum(sizes**2) / n) / (k - 1)
    denom = msb + (m0 - 1) * msw
    icc = 0.0 if denom <= 0 else float(np.clip((msb - msw) / denom, 0.0, 1.0))
    return 1.0 + (float(np.mean(sizes)) - 1.0) * icc


def flag_rate(flags: np.ndarray, groups: np.ndarray, sample_flags: np.ndarray | None = None, level: float = 0.95) -> dict:
    """Flag rate per spectrum (interval on Kish's effective size) and per sample (a sample is flagged when
    ``sample_flags`` says so, else when at least half its spectra are flagged)."""
    f = np.asarray(flags, dtype=bool).ravel()
    g = np.asarray(groups).astype(str).ravel()
    if f.shape != g.shape or f.size == 0:
        raise ValueError(f"need one group per flag and at least one flag, got {f.size} flags, {g.size} groups")
    names, inverse = np.unique(g, return_inverse=True)
    if sample_flags is None:
        per_sample = np.bincount(inverse, weights=f) / np.bincount(inverse) >= 0.5
    else:
        per_sample = np.asarray(sample_flags, dtype=bool).ravel()
        if per_sample.size != names.size:
            raise ValueError(f"{per_sample.size} sample flags for {names.size} samples")
    deff = design_effect(f, g)
    n_eff = f.size / deff
    rate = float(f.mean())
    return {
        "per_spectrum": {
            "rate": rate,
            "n": int(f.size),
            "effective_n": float(n_eff),
            "design_effect": float(deff),
            "ci": list(clopper_pearson(rate * n_eff, n_eff, level)),
        },
        "per_sample": {
            "rate": float(per_sample.mean()),
            "n": int(per_sample.size),
            "ci": list(clopper_pearson(float(per_sample.sum()), float(per_sample.size), level)),
        },
        "level": level,
    }


def flagged_vs_kept(errors: np.ndarray, flags: np.ndarray, tolerance: float | None = None) -> dict:
    """RMSEP of the flagged and of the kept predictions, and how many of each (None where a group is empty):
    ``ood_evaluation.flag_metrics`` on prediction errors.

    With ``tolerance`` (wrong = |error| > tolerance), also the user's count: ``n_wrong``, how many of them the
    flag caught (``n_wrong_flagged``, ``wrong_flagged_fraction``) and how many were kept silently
    (``n_wrong_kept``, and ``kept_wrong_fraction`` of the kept predictions); fractions None when undefined."""
    e = np.asarray(errors, dtype=np.float64).ravel()
    m = flag_metrics(np.zeros(e.size), e, flags)
    out = {"rmsep_flagged": m["rmsep_flagged"], "rmsep_kept": m["rmsep_unflagged"], "rmsep_all": m["rmsep_all"],
           "n_flagged": m["n_flagged"], "n_kept": m["n"] - m["n_flagged"]}
    if tolerance is not None:
        f = np.asarray(flags, dtype=bool).ravel()
        wrong = np.abs(e) > tolerance
        n_wrong, caught, silent = int(wrong.sum()), int((wrong & f).sum()), int((wrong & ~f).sum())
        out.update({
            "n_wrong": n_wrong,
            "n_wrong_flagged": caught,
            "n_wrong_kept": silent,
            "wrong_flagged_fraction": caught / n_wrong if n_wrong else None,
            "kept_wrong_fraction": silent / out["n_kept"] if out["n_kept"] else None,
        })
    return out


__all__ = [
    "COVERAGES",
    "DEFAULT_K",
    "RiskCoverage",
    "clopper_pearson",
    "design_effect",
    "error_auroc",
    "error_tolerance",
    "flag_rate",
    "flagged_vs_kept",
    "risk_coverage",
]
