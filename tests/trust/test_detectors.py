"""Comparison detectors: PLS Hotelling T² / Q residuals and the predictive-std score."""

from __future__ import annotations

import numpy as np
import pytest

from libs_pipeline.baselines.pls import PLSCalibration
from libs_pipeline.testing import toy_campaign
from libs_pipeline.trust.detectors import (
    PLSDistanceDetector,
    combined_t2_q,
    normalise_total,
    predictive_std_score,
    raw_counts,
)
from libs_pipeline.trust.ood_evaluation import auroc


@pytest.fixture(scope="module")
def fitted(toy_ds):
    det = PLSDistanceDetector(n_components=3).fit(toy_ds["intensity"].values, toy_ds["Cu"].values)
    return det, toy_ds


def test_t2_on_training_data_averages_the_number_of_components(fitted):
    det, ds = fitted
    t2 = det.t2(ds["intensity"].values)
    assert t2.shape == (ds.sizes["spectrum"],)
    assert t2.mean() == pytest.approx(3 * (t2.size - 1) / t2.size, rel=1e-6)


def test_foreign_peak_raises_q_and_gain_does_not(fitted):
    det, ds = fitted
    fresh = toy_campaign(seed=5)
    x = fresh["intensity"].values
    wl = fresh["wavelength"].values
    q0 = det.q(x)
    foreign = x + 5000.0 * np.exp(-0.5 * ((wl - 350.0) / 0.1) ** 2)
    assert auroc(q0, det.q(foreign)) > 0.99
    np.testing.assert_allclose(det.q(x * 1.7), q0, rtol=1e-6)  # total normalisation: blind to a gain change
    combined = combined_t2_q(det.t2(foreign), det.q(foreign), det.t2(x), q0)
    assert np.mean(combined > 1) > 0.99


def test_detector_components_chosen_by_the_pls_baseline_on_the_detector_input(toy_ds):
    x, y, g = toy_ds["intensity"].values, toy_ds["Cu"].values, toy_ds["sample_id"].values
    raw = PLSCalibration(max_components=4, transform=raw_counts).fit(x, y, g)
    total = PLSCalibration(max_components=4).fit(x, y, g)
    assert 1 <= raw.n_components_ <= 4 and 1 <= total.n_components_ <= 4
    at_zero = raw.predict(np.zeros_like(x))  # raw counts: affine in the gain, unlike total-normalised input
    np.testing.assert_allclose(raw.predict(x * 2.0) - at_zero, 2.0 * (raw.predict(x) - at_zero), rtol=1e-5)
    np.testing.assert_allclose(total.predict(x * 2.0), total.predict(x), rtol=1e-6)
    with pytest.raises(RuntimeError, match="not fitted"):
        PLSDistanceDetector().q(toy_ds["intensity"].values)
    with pytest.raises(ValueError, match="n_components must be >= 1"):
        PLSDistanceDetector(0)
    with pytest.raises(ValueError, match=r"expected \(n_spectra, n_channels\), got shape \(5,\)"):
        normalise_total(np.ones(5))


def test_predictive_std_score():
    np.testing.assert_array_equal(predictive_std_score({"Cu": np.array([0.1, 0.2])}, "Cu"), [0.1, 0.2])
    with pytest.raises(ValueError, match="analyte 'Na' not in std keys"):
        predictive_std_score({"Cu": np.array([0.1])}, "Na")
    with pytest.raises(ValueError, match="negative"):
        predictive_std_score(np.array([-0.1]))


def test_pls_detector_on_raw_counts_sees_a_gain_change_that_total_normalisation_hides(toy_ds):

    x, y = toy_ds["intensity"].values, toy_ds["Cu"].values
    total = PLSDistanceDetector(n_components=3).fit(x, y)
    raw = PLSDistanceDetector(n_components=3, transform=raw_counts).fit(x, y)
    half = x * 0.5
    np.testing.assert_allclose(total.q(half), total.q(x), rtol=1e-6)  # blind by construction
    ref = combined_t2_q(raw.t2(x), raw.q(x), raw.t2(x), raw.q(x))
    shifted = combined_t2_q(raw.t2(half), raw.q(half), raw.t2(x), raw.q(x))
    assert auroc(ref, shifted) > 0.9


def test_normalised_conformal_widths_follow_difficulty_and_cover():
    from libs_pipeline.trust.detectors import NormalisedConformal

    rng = np.random.default_rng(0)
    f = rng.normal(size=(400, 3))
    noise = 0.1 + 2.0 * (f[:, 0] > 0)  # residuals 20x larger where feature 0 is positive
    r = rng.normal(size=400) * noise
    conf = NormalisedConformal(alpha=0.1, k=15, n_components=3).fit(f[:200], r[:200])
    w = conf.width(f[200:])
    hard = f[200:, 0] > 0
    assert np.median(w[hard]) > 5 * np.median(w[~hard])
    coverage = conf.covers(f[200:], r[200:]).mean()
    assert 0.8 <= coverage <= 0.97
    with pytest.raises(ValueError, match="alpha"):
        NormalisedConformal(alpha=1.5)
