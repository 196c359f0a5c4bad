"""Metrics on hand-computed cases: RMSEP, MAE, bias, R^2, relative RMSE, Breusch-Pagan, tertile spread, per sample."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from libs_pipeline.evaluation.metrics import (
    breusch_pagan_p,
    evaluate_methods,
    per_sample_predictions,
    regression_metrics,
    residual_spread_by_tertile,
)


def test_regression_metrics_by_hand():
    m = regression_metrics([1.0, 2.0, 3.0, 4.0], [1.5, 1.5, 3.5, 4.5])
    # errors +0.5, -0.5, +0.5, +0.5; SS_res = 1, SS_tot = 5, mean(y) = 2.5
    assert m == pytest.approx({"rmsep": 0.5, "mae": 0.5, "bias": 0.25, "r2": 0.8, "rel_rmse": 0.2, "n": 4})


def test_perfect_and_constant_truth():
    m = regression_metrics([1.0, 2.0], [1.0, 2.0])
    assert m["rmsep"] == 0.0 and m["r2"] == 1.0
    assert math.isnan(regression_metrics([2.0, 2.0], [1.0, 3.0])["r2"])


def test_breusch_pagan_by_hand():
    y = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    e = np.array([0.1, -0.2, 0.3, -0.4, 0.5])
    # e^2 = .01 .04 .09 .16 .25; Sxy = 0.60, Sxx = 10, Syy = 0.0374 -> R^2 = 0.36 / 0.374
    r2 = 0.6**2 / (10.0 * 0.0374)
    lm = 5 * r2
    expected = math.erfc(math.sqrt(lm / 2.0))  # chi2(1) survival function, independent of scipy
    assert breusch_pagan_p(y, e) == pytest.approx(expected, rel=1e-9)
    assert expected == pytest.approx(0.0282, abs=5e-4)


def test_breusch_pagan_detects_heteroscedasticity():
    rng = np.random.default_rng(np.random.SeedSequence(2))
    y = np.repeat(np.linspace(1.0, 10.0, 10), 30)
    assert breusch_pagan_p(y, rng.normal(0.0, 1.0, y.size)) > 0.05  # constant spread
    assert breusch_pagan_p(y, rng.normal(0.0, 1.0, y.size) * y) < 1e-3  # spread grows with concentration


def test_breusch_pagan_degenerate_cases():
    assert math.isnan(breusch_pagan_p([1.0, 2.0], [0.1, 0.2]))  # too few points
    assert math.isnan(breusch_pagan_p([3.0, 3.0, 3.0], [0.1, 0.2, 0.3]))  # constant concentration
    assert breusch_pagan_p([1.0, 2.0, 3.0], [1.0, -1.0, 1.0]) == 1.0  # constant squared residuals


def test_residual_spread_by_tertile_by_hand():
    out = residual_spread_by_tertile([1, 2, 3, 4, 5, 6], [1.0, -1.0, 2.0, -2.0, 3.0, -3.0])
    assert out["low"] == pytest.approx(math.sqrt(2.0))
    assert out["mid"] == pytest.approx(math.sqrt(8.0))
    assert out["high"] == pytest.approx(math.sqrt(18.0))
    assert out["ratio"] == pytest.approx(3.0)
    sparse = residual_spread_by_tertile([1.0, 5.0], [0.5, 0.7])  # one point per tertile: undefined spread
    assert all(math.isnan(sparse[k]) for k in ("low", "mid", "high", "ratio"))


def test_per_sample_predictions():
    table = per_sample_predictions(["b", "a", "b", "a", "b"], [2.0, 1.0, 2.0, 1.0, 2.0], [2.1, 0.8, 1.9, 1.0, 2.3])
    assert list(table["sample_id"]) == ["b", "a"]  # first appearance
    assert table["y_pred"].to_list() == pytest.approx([2.1, 0.9])
    assert table["y_pred_std"].to_list() == pytest.approx([np.std([2.1, 1.9, 2.3], ddof=1), np.std([0.8, 1.0], ddof=1)])
    assert table["n_spectra"].to_list() == [3, 2]
    with pytest.raises(ValueError, match="sample 'a': y_true differs between its spectra"):
        per_sample_predictions(["a", "a"], [1.0, 2.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="sample_ids has 1 values but y_true has 2"):
        per_sample_predictions(["a"], [1.0, 2.0], [1.0, 2.0])


def test_evaluate_methods_rows_and_levels():
    sids = np.repeat(["s1", "s2", "s3", "s4"], 3)
    y = np.repeat([1.0, 2.0, 3.0, 4.0], 3)
    good = y + np.tile([-0.1, 0.0, 0.1], 4)  # sample means exact
    biased = y + 0.5
    table = evaluate_methods({"good": good, "biased": biased}, y, sids)
    assert list(table.index) == ["good", "biased"] and table.index.name == "method"
    assert table.loc["good", "sample_rmsep"] == pytest.approx(0.0, abs=1e-12)
    assert table.loc["good", "spectrum_rmsep"] == pytest.approx(math.sqrt(0.02 / 3.0))
    assert table.loc["biased", "sample_bias"] == pytest.approx(0.5)
    assert table.loc["biased", "n_spectra"] == 12 and table.loc["biased", "n_samples"] == 4
    for col in ("spectrum_bp_p", "sample_r2", "spectrum_spread_low", "sample_rel_rmse"):
        assert col in table.columns
    sample_means = pd.Series(good).groupby(sids).mean().to_numpy()
    assert table.loc["good", "sample_mae"] == pytest.approx(np.mean(np.abs(sample_means - [1, 2, 3, 4])), abs=1e-12)


def test_input_errors_name_the_method_and_index():
    y = np.array([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"method 'pls': y_pred: 1 non-finite value\(s\), first at index 1"):
        evaluate_methods({"pls": np.array([1.0, np.nan, 3.0])}, y, ["a", "b", "c"])
    with pytest.raises(ValueError, match="y_true has 3 values but y_pred has 2"):
        regression_metrics(y, [1.0, 2.0])
    with pytest.raises(ValueError, match="empty"):
        regression_metrics([], [])
    with pytest.raises(ValueError, match="at least one method"):
        evaluate_methods({}, y, ["a", "b", "c"])
