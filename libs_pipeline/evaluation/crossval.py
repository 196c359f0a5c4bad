"""Leave-one-sample-out predictions: each sample predicted by a model fitted without any of its spectra."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

FitPredict = Callable[[np.ndarray, np.ndarray], np.ndarray]


def leave_one_group_out(fit_predict: FitPredict, groups: Sequence[object]) -> np.ndarray:
    """Out-of-group predictions (float64, one per row).

    ``fit_predict(train_idx, test_idx)`` fits on the rows ``train_idx`` and returns predictions for ``test_idx``.
    """
    groups = np.asarray(groups)
    unique = list(dict.fromkeys(groups.tolist()))
    if len(unique) < 2:
        raise ValueError(f"leave-one-group-out needs at least 2 groups, got {len(unique)}")
    out = np.full(groups.shape[0], np.nan)
    for g in unique:
        test = np.flatnonzero(groups == g)
        train = np.flatnonzero(groups != g)
        pred = np.asarray(fit_predict(train, test), dtype=np.float64).ravel()
        if pred.shape[0] != test.size:
            raise ValueError(f"group {g!r}: fit_predict returned {pred.shape[0]} predictions for {test.size} rows")
        out[test] = pred
    return out
