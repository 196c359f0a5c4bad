"""AUROC, ROC curve and flag metrics against hand-computed and sklearn values."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from libs_pipeline.trust.ood_evaluation import auroc, flag_metrics, rmsep, roc_curve


def test_auroc_matches_sklearn_with_ties():
    rng = np.random.default_rng(0)
    neg = rng.integers(0, 10, 200).astype(float)
    pos = rng.integers(3, 13, 150).astype(float)
    expected = roc_auc_score(np.r_[np.zeros(200), np.ones(150)], np.r_[neg, pos])
    assert auroc(neg, pos) == pytest.approx(expected)


def test_auroc_extremes_and_infinities():
    assert auroc([1, 2, 3], [4, 5]) == 1.0
    assert auroc([4, 5], [1, 2, 3]) == 0.0
    assert auroc([1, 1], [1, 1, 1]) == 0.5
    assert auroc([1.0, 2.0], [np.inf, 3.0]) == 1.0
    assert auroc([np.inf, 1.0], [np.inf, 0.5]) == pytest.approx(1.5 / 4)  # inf ties inf
    with pytest.raises(ValueError, match="NaN"):
        auroc([1.0, np.nan], [2.0])
    with pytest.raises(ValueError, match="no scores"):
        auroc([], [1.0])


def test_roc_curve_runs_from_origin_to_one_and_integrates_to_auroc():
    rng = np.random.default_rng(1)
    neg, pos = rng.normal(0, 1, 300), rng.normal(1, 1, 200)
    fpr, tpr = roc_curve(neg, pos)
    assert (fpr[0], tpr[0]) == (0.0, 0.0) and (fpr[-1], tpr[-1]) == (1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert np.trapezoid(tpr, fpr) == pytest.approx(auroc(neg, pos), abs=1e-9)


def test_flag_metrics_split_errors_by_flag():
    y = np.array([1.0, 1.0, 1.0, 1.0])
    p = np.array([1.1, 0.9, 3.0, -1.0])
    f = np.array([False, False, True, True])
    m = flag_metrics(y, p, f)
    assert m["flag_rate"] == 0.5 and m["n_flagged"] == 2 and m["n"] == 4
    assert m["rmsep_unflagged"] == pytest.approx(0.1)
    assert m["rmsep_flagged"] == pytest.approx(2.0)
    assert m["rmsep_all"] == pytest.approx(np.sqrt((0.01 + 0.01 + 4 + 4) / 4))
    none = flag_metrics(y, p, np.zeros(4, bool))
    assert none["rmsep_flagged"] is None and none["flag_rate"] == 0.0
    assert rmsep([], []) is None
    with pytest.raises(ValueError, match="shapes differ"):
        flag_metrics(y, p, f[:3])
