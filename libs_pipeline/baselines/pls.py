"""PLS calibration on the total-intensity-normalised full spectrum, components chosen by grouped CV.

Each spectrum is divided by its total intensity (sum over channels), a common normalisation for
shot-to-shot energy fluctuation. The number of latent components (1..max) minimising the pooled
RMSE of a GroupKFold cross-validation (groups = sample ids, so shots of one sample never sit on both
sides) is kept, then the model is refitted on all training spectra.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from sklearn.cross_decomposition import PLSRegression
from sklearn.model_selection import GroupKFold


def normalise_total(X: np.ndarray) -> np.ndarray:
    """Each row divided by its sum (float64); a row with non-positive or non-finite total is an error."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"X: expected (n_spectra, n_channels), got shape {X.shape}")
    total = X.sum(axis=1)
    bad = ~(np.isfinite(total) & (total > 0))
    if np.any(bad):
        raise ValueError(
            f"X: total intensity of row {int(np.flatnonzero(bad)[0])} is {total[bad][0]} "
            f"({int(bad.sum())} row(s) not positive/finite); cannot normalise"
        )
    return X / total[:, None]


def pls_centring(X: np.ndarray, y: np.ndarray, scale: bool) -> tuple[np.ndarray, np.ndarray, float, float]:
    """(x_mean, x_std, y_mean, y_std) as scikit-learn's PLSRegression centres (and, with ``scale``, scales)."""
    x_mean, y_mean = X.mean(axis=0), float(np.mean(y))
    if not scale:
        return x_mean, np.ones(X.shape[1]), y_mean, 1.0
    x_std = X.std(axis=0, ddof=1)
    x_std[x_std == 0.0] = 1.0
    return x_mean, x_std, y_mean, float(np.std(y, ddof=1)) or 1.0


def truncated_predictions(
    X_train: np.ndarray, y_train: np.ndarray, X_test: np.ndarray, k_max: int, scale: bool
) -> np.ndarray:
    """Predictions (k_max, n_test) of PLS models with 1..k_max components, from ONE k_max fit.

    NIPALS extracts components one at a time, so the first k components of a k_max fit are those of
    a k fit; prediction with k components = scores on the first k rotations times their y loadings.
    """
    model = PLSRegression(n_components=k_max, scale=scale).fit(X_train, y_train)
    x_mean, x_std, y_mean, y_std = pls_centring(X_train, y_train, scale)
    scores = ((X_test - x_mean) / x_std) @ model.x_rotations_  # (n_test, k_max)
    contrib = scores * model.y_loadings_[0][None, :]  # per-component contribution (normalised y units)
    return np.cumsum(contrib, axis=1).T * y_std + y_mean


class PLSCalibration:
    """scikit-learn PLSRegression on total-normalised spectra, n_components by GroupKFold CV.

    ``transform``: what the model sees (default ``normalise_total``; the trust benchmark's PLS detectors also
    fit it on a served network's input or on raw counts).
    """

    def __init__(
        self, max_components: int = 10, n_splits: int = 5, scale: bool = False,
        transform: Callable[[np.ndarray], np.ndarray] = normalise_total,
    ) -> None:
        if max_components < 1:
            raise ValueError(f"max_components must be >= 1, got {max_components}")
        if n_splits < 2:
            raise ValueError(f"n_splits must be >= 2, got {n_splits}")
        self.max_components = max_components
        self.n_splits = n_splits
        self.scale = scale
        self.transform = transform
        self.n_components_: int | None = None
        self.cv_rmse_: np.ndarray | None = None  # index k-1 = RMSE with k components
        self.cv_folds_: list[tuple[np.ndarray, np.ndarray]] = []  # (train groups, test groups) per fold
        self.model_: PLSRegression | None = None

    def _candidates(self, n_rows_min: int, n_features: int) -> int:
        return max(1, min(self.max_components, n_rows_min - 1, n_features))

    def fit(self, X: np.ndarray, y: np.ndarray, groups: Sequence[object]) -> PLSCalibration:
        """Choose n_components by grouped CV on (X, y, groups), then refit on everything."""
        Xn = np.asarray(self.transform(X), dtype=np.float64)
        y = np.asarray(y, dtype=np.float64).ravel()
        groups = np.asarray(groups)
        if y.shape[0] != Xn.shape[0] or groups.shape[0] != Xn.shape[0]:
            raise ValueError(f"X has {Xn.shape[0]} rows, y {y.shape[0]}, groups {groups.shape[0]}: must match")
        if not np.all(np.isfinite(y)):
            raise ValueError(f"y: non-finite label at row {int(np.flatnonzero(~np.isfinite(y))[0])}")
        n_groups = np.unique(groups).size
        if n_groups < 2:
            raise ValueError(f"grouped CV needs at least 2 groups (samples), got {n_groups}")
        splitter = GroupKFold(n_splits=min(self.n_splits, n_groups))
        folds = list(splitter.split(Xn, y, groups))
        k_max = self._candidates(min(len(train) for train, _ in folds), Xn.shape[1])
        sq_err = np.zeros(k_max)
        self.cv_folds_ = []
        for train, test in folds:
            self.cv_folds_.append((np.unique(groups[train]), np.unique(groups[test])))
            preds = truncated_predictions(Xn[train], y[train], Xn[test], k_max, self.scale)
            sq_err += np.sum((preds - y[test][None, :]) ** 2, axis=1)
        self.cv_rmse_ = np.sqrt(sq_err / y.size)
        self.n_components_ = int(np.argmin(self.cv_rmse_)) + 1
        n_final = min(self.n_components_, Xn.shape[0] - 1, Xn.shape[1])
        self.model_ = PLSRegression(n_components=max(1, n_final), scale=self.scale).fit(Xn, y)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted concentration per spectrum (float64)."""
        if self.model_ is None:
            raise RuntimeError("PLSCalibration.predict called before fit")
        Xn = np.asarray(self.transform(X), dtype=np.float64)
        expected = self.model_.n_features_in_
        if Xn.shape[1] != expected:
            raise ValueError(f"X: {Xn.shape[1]} channels, but the model was fitted on {expected}")
        return self.model_.predict(Xn).ravel()
