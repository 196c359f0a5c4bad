"""The intensity part on few calibration samples: held-out residual scale and the prediction interval of a
spectrum whose outputs lie outside the calibration samples' range."""

from __future__ import annotations

import numpy as np
import pytest

from libs_pipeline.config import TrustConfig
from libs_pipeline.trust.fitting import _intensity_part
from libs_pipeline.trust.scales import IntensityModel, sample_precision

N_SAMPLES, N_SHOTS = 10, 20


def _campaign(seed: int = 0):
    """log(level) = 1 + 0.3 * c + sample effect (sd 0.1) + shot noise (sd 0.02), c in [0, 1] per sample."""
    rng = np.random.default_rng(seed)
    c_samples = np.linspace(0.0, 1.0, N_SAMPLES)
    effect = rng.normal(0.0, 0.1, N_SAMPLES)
    groups = np.repeat([f"S{i}" for i in range(N_SAMPLES)], N_SHOTS)
    c = np.repeat(c_samples, N_SHOTS) + rng.normal(0.0, 0.01, groups.size)
    level = np.exp(1.0 + 0.3 * c + np.repeat(effect, N_SHOTS) + rng.normal(0.0, 0.02, groups.size))
    return {"Cu": c}, level, groups


def test_inflation_is_the_sample_level_prediction_interval():
    features, level, groups = _campaign()
    model, why = _intensity_part(features, level, groups, TrustConfig())
    assert why is None and model.sample_precision is not None
    design = model.design(features)
    names, first = np.unique(groups, return_index=True)
    means = np.stack([design[groups == n].mean(axis=0) for n in names])
    hat = means @ np.linalg.inv(means.T @ means) @ means.T  # the hat matrix of the 10 sample means
    at_means = model.inflation({"Cu": np.array([features["Cu"][groups == n].mean() for n in names])})
    np.testing.assert_allclose(at_means, np.sqrt(1.0 + np.diag(hat)), rtol=1e-9)
    # far outside the calibration range the interval widens about linearly with the distance
    far = model.inflation({"Cu": np.array([10.0, 20.0])})
    assert far[0] > 4.0 and far[1] / far[0] == pytest.approx(2.0, rel=0.1)


def test_a_spectrum_outside_the_range_is_judged_with_the_wider_interval():
    features, level, groups = _campaign()
    model, _ = _intensity_part(features, level, groups, TrustConfig())
    values = {"Cu": np.array([0.5, 8.0])}
    resid = np.array([0.3, 0.3])  # the same residual log level, inside and far outside the range
    z = model.standardise(values, resid)
    raw = model.scale.standardise(resid)
    np.testing.assert_allclose(z, raw / model.inflation(values))
    assert abs(z[1]) < abs(z[0]) / 3


def test_held_out_residuals_give_a_wider_scale_than_in_sample_ones():
    features, level, groups = _campaign(seed=3)
    held_out, _ = _intensity_part(features, level, groups, TrustConfig())
    in_sample, _ = _intensity_part(features, level, None, TrustConfig())  # no groups: in-sample residuals
    assert in_sample.sample_precision is None
    assert held_out.scale.spread > in_sample.scale.spread
    # the in-sample residuals keep only about sqrt((n - k) / n) of a new sample's effect: 2 coefficients, 10 samples
    assert held_out.scale.spread / in_sample.scale.spread > 1.05


def test_sample_precision_round_trips_and_old_files_load_without_it():
    features, level, groups = _campaign()
    model, _ = _intensity_part(features, level, groups, TrustConfig())
    loaded = IntensityModel.from_dict(model.to_dict(), "trust.json")
    np.testing.assert_allclose(loaded.sample_precision, model.sample_precision)
    old = model.to_dict()
    del old["sample_precision"]
    legacy = IntensityModel.from_dict(old, "trust.json")
    assert legacy.sample_precision is None
    np.testing.assert_array_equal(legacy.inflation({"Cu": np.array([0.2, 50.0])}), [1.0, 1.0])


def test_a_bad_sample_precision_is_named():
    features, level, groups = _campaign()
    bad = _intensity_part(features, level, groups, TrustConfig())[0].to_dict()
    bad["sample_precision"] = [[1.0, 0.0, 0.0]]
    with pytest.raises(ValueError, match=r"trust.json: field 'intensity.sample_precision' must be a finite 2 x 2"):
        IntensityModel.from_dict(bad, "trust.json")
    bad["sample_precision"] = [[1.0, float("nan")], [0.0, 1.0]]
    with pytest.raises(ValueError, match="sample_precision"):
        IntensityModel.from_dict(bad, "trust.json")


def test_sample_precision_of_one_row_per_sample_is_the_ordinary_inverse():
    design = np.column_stack([np.ones(4), [0.0, 1.0, 2.0, 3.0]])
    np.testing.assert_allclose(sample_precision(design, np.array(["a", "b", "c", "d"])),
                               np.linalg.inv(design.T @ design))
