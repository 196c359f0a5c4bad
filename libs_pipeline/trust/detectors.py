"""The detectors people use instead of our trust score, for comparison on the same sets.

- distance of a spectrum to the training set in PLS score space: Hotelling T² and Q (squared residual
  of the PLS reconstruction), on total-intensity-normalised spectra as in the PLS baseline;
- the network's per-spectrum predictive uncertainty (MC-dropout std), see ``predictive_std_score``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
from sklearn.cross_decomposition import PLSRegression

from libs_pipeline.baselines.pls import normalise_total


Transform = Callable[[np.ndarray], np.ndarray]


def raw_counts(intensity: np.ndarray) -> np.ndarray:
    """The spectra as measured (float64), for a detector that must see gain and intensity changes."""
    return np.asarray(intensity, dtype=np.float64)


class PLSDistanceDetector:
    """Hotelling T² and Q residual of spectra relative to the PLS model fitted on the training spectra.

    ``transform``: what the detector sees -- total-normalised spectra (default, blind to gain changes by
    construction), a served model's own input (``model.normaliser.transform``) or raw counts (``raw_counts``).
    """

    def __init__(self, n_components: int = 5, transform: Transform = normalise_total) -> None:
        if n_components < 1:
            raise ValueError(f"n_components must be >= 1, got {n_components}")
        self.n_components = n_components
        self.transform = transform
        self._pls: PLSRegression | None = None
        self._score_var: np.ndarray | None = None

    def fit(self, intensity: np.ndarray, y: np.ndarray) -> PLSDistanceDetector:
        x = np.asarray(self.transform(intensity), dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"intensity has {x.shape[0]} spectra but y has {y.shape[0]} values")
        k = min(self.n_components, x.shape[0] - 1, x.shape[1])
        self._pls = PLSRegression(n_components=k, scale=False).fit(x, y)
        t = self._pls.transform(x)
        self._score_var = np.maximum(np.var(t, axis=0, ddof=1), np.finfo(np.float64).tiny)
        return self

    def _check(self) -> PLSRegression:
        if self._pls is None:
            raise RuntimeError("PLSDistanceDetector is not fitted; call fit() first")
        return self._pls

    def t2(self, intensity: np.ndarray) -> np.ndarray:
        """Hotelling T²: squared Mahalanobis distance in PLS score space."""
        pls = self._check()
        t = pls.transform(np.asarray(self.transform(intensity), dtype=np.float64))
        return np.sum(t**2 / self._score_var, axis=1)

    def q(self, intensity: np.ndarray) -> np.ndarray:
        """Q (SPE): squared norm of what the PLS scores do not reconstruct."""
        pls = self._check()
        x = np.asarray(self.transform(intensity), dtype=np.float64)
        x_hat = pls.inverse_transform(pls.transform(x))
        return np.sum((x - x_hat) ** 2, axis=1)


def combined_t2_q(t2: np.ndarray, q: np.ndarray, t2_ref: np.ndarray, q_ref: np.ndarray, rate: float = 0.05) -> np.ndarray:
    """max(T²/T²_limit, Q/Q_limit), limits = (1 - rate) quantiles on in-distribution reference data."""
    t2_lim = float(np.quantile(np.asarray(t2_ref, dtype=np.float64), 1 - rate))
    q_lim = float(np.quantile(np.asarray(q_ref, dtype=np.float64), 1 - rate))
    if t2_lim <= 0 or q_lim <= 0:
        raise ValueError("combined_t2_q: reference limits must be positive")
    return np.maximum(np.asarray(t2) / t2_lim, np.asarray(q) / q_lim)


def predictive_std_score(std: Mapping[str, np.ndarray] | np.ndarray, analyte: str | None = None) -> np.ndarray:
    """The per-spectrum predictive std of the analyte (MC dropout / ensemble) used as an OOD score."""
    if isinstance(std, Mapping):
        if analyte is None or analyte not in std:
            raise ValueError(f"predictive_std_score: analyte {analyte!r} not in std keys {sorted(std)}")
        std = std[analyte]
    s = np.asarray(std, dtype=np.float64).reshape(-1)
    if (s < 0).any():
        raise ValueError("predictive_std_score: negative standard deviations")
    return s


class NormalisedConformal:
    """Split-conformal interval whose width follows a difficulty estimate (locally weighted conformal).

    Difficulty sigma(x) = mean |residual| of the ``k`` nearest calibration spectra in a PCA space of the
    features (plus a floor), fitted on calibration residuals only; the interval is prediction ± q·sigma(x)
    with q the conformal (1 - alpha) quantile of |r|/sigma on the calibration set (each calibration point's
    sigma computed without itself). The score is the width 2·q·sigma(x); a constant-width split-conformal
    interval would rank every spectrum the same (AUROC 0.5), so the normalised form is the fair comparator.
    """

    def __init__(self, alpha: float = 0.1, k: int = 10, n_components: int = 5) -> None:
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {alpha}")
        self.alpha, self.k, self.n_components = float(alpha), int(k), int(n_components)

    def _project(self, features: np.ndarray) -> np.ndarray:
        return (np.asarray(features, dtype=np.float64) - self._mean) @ self._axes.T / self._scale

    def _sigma(self, z: np.ndarray, exclude_self: bool = False) -> np.ndarray:
        d = ((z[:, None, :] - self._z[None, :, :]) ** 2).sum(axis=2)
        if exclude_self:
            np.fill_diagonal(d, np.inf)
        k = min(self.k, self._z.shape[0] - (1 if exclude_self else 0))
        nearest = np.argpartition(d, k - 1, axis=1)[:, :k]
        return self._abs[nearest].mean(axis=1) + self._floor

    def fit(self, features: np.ndarray, residuals: np.ndarray) -> NormalisedConformal:
        f = np.asarray(features, dtype=np.float64)
        r = np.abs(np.asarray(residuals, dtype=np.float64).reshape(-1))
        if f.shape[0] != r.size or r.size < 3:
            raise ValueError(f"need >= 3 calibration spectra with one residual each, got {f.shape[0]} and {r.size}")
        self._mean = f.mean(axis=0)
        _, sv, vt = np.linalg.svd(f - self._mean, full_matrices=False)
        m = max(1, min(self.n_components, vt.shape[0]))
        self._axes = vt[:m]
        self._scale = np.maximum(sv[:m] / np.sqrt(max(f.shape[0] - 1, 1)), np.finfo(np.float64).tiny)
        self._z = self._project(f)
        self._abs = r
        self._floor = max(float(np.median(r)) * 0.05, np.finfo(np.float64).tiny)
        ratio = r / self._sigma(self._z, exclude_self=True)
        level = min(1.0, np.ceil((r.size + 1) * (1 - self.alpha)) / r.size)
        self.quantile = float(np.quantile(ratio, level, method="higher"))
        return self

    def width(self, features: np.ndarray) -> np.ndarray:
        """Interval width 2·q·sigma(x) per spectrum."""
        return 2.0 * self.quantile * self._sigma(self._project(features))

    def covers(self, features: np.ndarray, residuals: np.ndarray) -> np.ndarray:
        """Whether |residual| lies inside the half-width (the coverage check)."""
        return np.abs(np.asarray(residuals, dtype=np.float64)) <= self.width(features) / 2.0
