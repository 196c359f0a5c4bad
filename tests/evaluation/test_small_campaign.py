"""small_campaign_metrics on hand-computed cases; bootstrap interval, paired difference and error slope; n = 2..3 samples."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from libs_pipeline.evaluation.small_campaign import (
    bootstrap_rmsep_interval,
    error_slope,
    paired_rmsep_difference,
    small_campaign_metrics,
)

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


def test_paired_difference_of_identical_methods_is_exactly_zero():
    e = {"a": 1.0, "b": -3.0, "c": 2.0, "d": 0.5}
    out = paired_rmsep_difference(e, dict(e), n_boot=200)
    assert out["difference"] == 0.0
    assert out["ci95"] == [0.0, 0.0]
    assert out["worse_share"] == 0.0
    assert out["n_samples"] == 4


def test_paired_difference_matches_a_hand_computed_bootstrap():
    ref = {"s1": 1.0, "s2": -2.0, "s3": 3.0, "s4": -4.0, "s5": 0.5}
    other = {s: 2.0 * v for s, v in ref.items()}  # twice the error on every sample
    out = paired_rmsep_difference(other, ref, seed=3, n_boot=500)
    b = np.array([ref[s] for s in sorted(ref)])
    draws = np.random.default_rng(np.random.SeedSequence(3)).integers(0, 5, size=(500, 5))
    diff = np.sqrt(np.mean((2 * b[draws]) ** 2, axis=1)) - np.sqrt(np.mean(b[draws] ** 2, axis=1))
    assert out["difference"] == pytest.approx(np.sqrt(np.mean(b**2)))
    assert out["ci95"] == pytest.approx(list(np.percentile(diff, [2.5, 97.5])))
    assert out["ci95"][0] > 0
    assert out["worse_share"] == 1.0


def test_pairing_resolves_a_small_consistent_difference_that_separate_intervals_cannot():
    rng = np.random.default_rng(0)
    ref = {f"s{i}": float(v) for i, v in enumerate(rng.normal(0, 10, 8))}
    other = {s: 1.05 * v for s, v in ref.items()}  # 5 % worse on every sample
    out = paired_rmsep_difference(other, ref, seed=0)
    assert 0 < out["ci95"][0] < out["difference"] < out["ci95"][1]
    lo_other, _ = bootstrap_rmsep_interval(np.array(list(other.values())), seed=0)
    _, hi_ref = bootstrap_rmsep_interval(np.array(list(ref.values())), seed=0)
    assert lo_other < hi_ref  # unpaired intervals overlap: they could not tell the two apart


def test_paired_difference_refuses_different_samples_and_names_them():
    with pytest.raises(ValueError, match="same samples.*s9"):
        paired_rmsep_difference({"s1": 1.0, "s9": 2.0}, {"s1": 1.0, "s2": 2.0})


def test_paired_difference_on_three_samples_has_no_interval_and_says_why():
    out = paired_rmsep_difference({"a": 1.0, "b": 2.0, "c": 3.0}, {"a": 0.0, "b": 1.0, "c": 1.0})
    assert out["difference"] == pytest.approx(np.sqrt(14 / 3) - np.sqrt(2 / 3))
    assert np.isnan(out["ci95"]).all() and np.isnan(out["worse_share"])
    assert "3 sample(s)" in out["note"]
