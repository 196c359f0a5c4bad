"""small_campaign_metrics on hand-computed cases; bootstrap interval and error slope; n = 2..3 samples."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from libs_pipeline.evaluation.small_campaign import bootstrap_rmsep_interval, error_slope, small_campaign_metrics

# Four samples, two shots each. Shot means: A 2 (y 1), B 2 (y 2), C 2 (y 3), D 5 (y 4): errors +1, 0, -1, +1.
Y = [1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0]
P = [1.5, 2.5, 2.0, 2.0, 2.0, 2.0, 5.0, 5.0]
S = ["A", "A", "B", "B", "C", "C", "D", "D"]


def test_metrics_by_hand():
    m = small_campaign_metrics(Y, P, S)
    assert m["n_samples"] == 4 and m["n_spectra"] == 8
    assert m["rmsep_sample"] == pytest.approx(math.sqrt(3 / 4))
    # spectrum errors 0.5, 1.5, 0, 0, -1, -1, 1, 1: sum of squares 6.5 over 8
    assert m["rmsep_spectrum"] == pytest.approx(math.sqrt(6.5 / 8))
    assert m["rel_rmsep"] == pytest.approx(math.sqrt(3 / 4) / 2.5)
    assert m["rms_rel_error"] == pytest.approx(math.sqrt((1 + 0 + 1 / 9 + 1 / 16) / 4))
    assert m["r2_sample"] == pytest.approx(1 - 3 / 5)  # SS_res 3, SS_tot 5
    assert m["bias"] == pytest.approx(0.25)
    assert m["errors"] == pytest.approx({"A": 1.0, "B": 0.0, "C": -1.0, "D": 1.0})
    assert m["notes"][0].startswith("No Breusch-Pagan test: on 4 per-sample errors it has almost no power")
    assert len(m["notes"]) == 1  # nothing else undefined here


def test_error_slope_by_hand():
    # |e| = 1, 0, 1, 1 on x = 1..4: Sxy 0.5, Sxx 5 -> slope 0.1, intercept 0.5; residual SS 0.7 on 2 df
    s = error_slope(np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 0.0, 1.0, 1.0]))
    assert s["slope"] == pytest.approx(0.1) and s["intercept"] == pytest.approx(0.5) and s["df"] == 2
    half = stats.t.ppf(0.975, 2) * math.sqrt(0.7 / 2 / 5)
    assert s["ci95"] == pytest.approx([0.1 - half, 0.1 + half])
    assert small_campaign_metrics(Y, P, S)["error_slope"]["slope"] == pytest.approx(0.1)


def test_bootstrap_interval_contains_estimate_and_is_seeded():
    rng = np.random.default_rng(5)
    y = np.repeat(np.linspace(100.0, 1000.0, 8), 3)
    p = y + rng.normal(0.0, 30.0, y.size)
    sids = np.repeat([f"S{i}" for i in range(8)], 3)
    a = small_campaign_metrics(y, p, sids, seed=1)
    lo, hi = a["rmsep_sample_ci95"]
    assert lo < a["rmsep_sample"] < hi
    assert small_campaign_metrics(y, p, sids, seed=1)["rmsep_sample_ci95"] == [lo, hi]
    assert small_campaign_metrics(y, p, sids, seed=2)["rmsep_sample_ci95"] != [lo, hi]


def test_bootstrap_interval_of_constant_errors_is_a_point():
    assert bootstrap_rmsep_interval(np.array([2.0, -2.0, 2.0, -2.0]), seed=0, n_boot=50) == (2.0, 2.0)
    with pytest.raises(ValueError, match="n_boot must be >= 1"):
        bootstrap_rmsep_interval(np.array([1.0]), n_boot=0)


def test_three_samples_give_nan_bootstrap_but_a_slope_interval():
    m = small_campaign_metrics([1.0, 2.0, 4.0], [2.0, 2.0, 3.0], ["a", "b", "c"])
    assert m["rmsep_sample"] == pytest.approx(math.sqrt(2 / 3))
    assert all(math.isnan(v) for v in m["rmsep_sample_ci95"])
    assert any("bootstrap over 3 sample(s)" in n for n in m["notes"])
    assert m["error_slope"]["df"] == 1 and all(math.isfinite(v) for v in m["error_slope"]["ci95"])


def test_two_samples_never_crash():
    m = small_campaign_metrics([1.0, 3.0], [2.0, 3.0], ["a", "b"])
    assert m["rmsep_sample"] == pytest.approx(math.sqrt(0.5)) and m["r2_sample"] == pytest.approx(1 - 1 / 2)
    assert m["error_slope"]["slope"] == pytest.approx(-0.5)
    assert all(math.isnan(v) for v in m["error_slope"]["ci95"])
    assert "no degree of freedom" in m["error_slope"]["note"]


def test_undefined_quantities_are_nan_with_a_note():
    m = small_campaign_metrics([0.0, 2.0], [1.0, 2.0], ["a", "b"])
    assert math.isnan(m["rms_rel_error"]) and any("certified value 0" in n for n in m["notes"])
    same = small_campaign_metrics([2.0, 2.0], [1.0, 2.5], ["a", "b"])
    assert math.isnan(same["r2_sample"]) and math.isnan(same["error_slope"]["slope"])
    assert any("same certified value" in n for n in same["notes"])


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="y_pred: 1 non-finite"):
        small_campaign_metrics([1.0, 2.0], [1.0, float("nan")], ["a", "b"])
    with pytest.raises(ValueError, match="sample 'a': y_true differs"):
        small_campaign_metrics([1.0, 2.0], [1.0, 2.0], ["a", "a"])
