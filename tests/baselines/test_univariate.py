"""Univariate inverse calibration: exact on noise-free data, quadratic root choice, shot averaging, errors."""

from __future__ import annotations

import numpy as np
import pytest

from libs_pipeline.baselines.univariate import UnivariateCalibration, group_means


def test_linear_exact_recovery_noise_free():
    c = np.array([0.1, 0.5, 1.0, 2.0, 4.0])
    area = 3.0 + 250.0 * c
    model = UnivariateCalibration(1).fit(area, c)
    np.testing.assert_allclose(model.coef_, [250.0, 3.0], rtol=1e-12)
    new_c = np.array([0.0, 0.3, 3.3, 6.0])  # inside and outside the range: a line extrapolates
    np.testing.assert_allclose(model.predict(3.0 + 250.0 * new_c), new_c, atol=1e-10)


def test_quadratic_inverse_picks_root_in_range():
    # area = 10 + 100 c - 4 c^2: increasing on [0, 10]; the other root of every inversion lies above 12.5.
    f = lambda c: 10.0 + 100.0 * c - 4.0 * c**2  # noqa: E731
    c = np.linspace(0.0, 10.0, 6)
    model = UnivariateCalibration(2).fit(f(c), c)
    np.testing.assert_allclose(model.coef_, [-4.0, 100.0, 10.0], rtol=1e-9, atol=1e-9)
    new_c = np.array([0.25, 3.7, 9.9, 11.0])
    np.testing.assert_allclose(model.predict(f(new_c)), new_c, rtol=1e-9)


def test_quadratic_convex_curve_and_no_real_root():
    f = lambda c: 5.0 + 20.0 * c + 3.0 * c**2  # noqa: E731  vertex at c = -10/3 (area -28.33)
    c = np.array([0.0, 1.0, 2.0, 5.0])
    model = UnivariateCalibration(2).fit(f(c), c)
    np.testing.assert_allclose(model.predict(f(np.array([0.5, 4.0]))), [0.5, 4.0], rtol=1e-9)
    # An area below the curve's minimum has no real root: the vertex (least-squares inverse) is returned.
    assert model.predict(np.array([-40.0]))[0] == pytest.approx(-10.0 / 3.0, rel=1e-9)
    assert np.isnan(model.predict(np.array([np.nan]))[0])


def test_shot_averaged_fit_equals_fit_on_sample_means():
    rng = np.random.default_rng(np.random.SeedSequence(1))
    c = np.repeat([0.5, 1.0, 2.0, 4.0], [3, 5, 4, 6])  # unequal shot counts
    groups = np.repeat(["a", "b", "c", "d"], [3, 5, 4, 6])
    area = 7.0 + 100.0 * c + rng.normal(0.0, 5.0, c.size)
    averaged = UnivariateCalibration(1).fit(area, c, groups=groups)
    _, mean_area = group_means(area, groups)
    by_hand = np.polyfit([0.5, 1.0, 2.0, 4.0], mean_area, 1)
    np.testing.assert_allclose(averaged.coef_, by_hand, rtol=1e-12)
    per_shot = UnivariateCalibration(1).fit(area, c)
    assert not np.allclose(per_shot.coef_, averaged.coef_)  # weighting by shot count differs


def test_group_means_order_and_values():
    ids, means = group_means(np.array([1.0, 2.0, 10.0, 4.0, 20.0]), ["z", "z", "a", "z", "a"])
    assert list(ids) == ["z", "a"]
    np.testing.assert_allclose(means, [7.0 / 3.0, 15.0])
    ids, means2d = group_means(np.arange(6.0).reshape(3, 2), [1, 2, 1])
    np.testing.assert_allclose(means2d, [[2.0, 3.0], [2.0, 3.0]])
    with pytest.raises(ValueError, match="groups: length 2 does not match 3 rows"):
        group_means(np.ones(3), [1, 2])


@pytest.mark.parametrize(
    "degree, area, y, message",
    [
        (1, [1.0, 2.0], [1.0, 1.0], "needs at least 2 distinct concentrations, got 1"),
        (2, [1.0, 2.0, 3.0], [1.0, 2.0, 2.0], "needs at least 3 distinct concentrations, got 2"),
        (1, [5.0, 5.0, 5.0], [1.0, 2.0, 3.0], "calibration curve is flat"),
        (1, [1.0, np.nan, 3.0], [1.0, 2.0, 3.0], "non-finite value.*row 1"),
        (1, [1.0, 2.0], [1.0, 2.0, 3.0], "area has 2 values but y has 3"),
        (1, np.ones((3, 2)), [1.0, 2.0, 3.0], r"expected a 1-D array.*\(3, 2\)"),
    ],
)
def test_fit_errors(degree, area, y, message):
    with pytest.raises(ValueError, match=message):
        UnivariateCalibration(degree).fit(np.asarray(area), np.asarray(y))


def test_constructor_and_predict_errors():
    with pytest.raises(ValueError, match="degree must be 1"):
        UnivariateCalibration(3)
    with pytest.raises(ValueError, match="range_margin"):
        UnivariateCalibration(1, range_margin=-1)
    with pytest.raises(RuntimeError, match="before fit"):
        UnivariateCalibration(1).predict(np.ones(2))


def test_column_vector_area_accepted():
    c = np.array([1.0, 2.0, 3.0])
    model = UnivariateCalibration(1).fit((2.0 * c)[:, None], c)
    np.testing.assert_allclose(model.predict(np.array([[4.0]])), [2.0])
