"""Whole-spectrum baseline removal: recovers a known continuum under lines and noise, vectorised, keeps line areas."""

from __future__ import annotations

import numpy as np
import pytest

from libs_pipeline.features.baseline import estimate_baseline, remove_baseline
from libs_pipeline.features.line_features import auxiliary_targets
from libs_pipeline.features.lines import default_lines
from libs_pipeline.testing.synthetic_lines import gaussian_line, grid

LINES = [(324.754, 3000.0), (327.396, 1800.0), (394.40, 9000.0), (396.15, 14000.0), (700.0, 5000.0), (701.0, 4000.0)]


def _continuum(wl):
    return 300.0 + 0.4 * (wl - wl[0]) + 250.0 * np.exp(-(((wl - 500.0) / 80.0) ** 2))


def _spectra(n=40, seed=3):
    wl = grid()
    mean = _continuum(wl) + sum(gaussian_line(wl, c, a) for c, a in LINES)
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    return wl, rng.poisson(np.tile(mean, (n, 1))).astype(np.float32)


def _line_free(wl):
    mask = np.ones(wl.size, bool)
    for c, _ in LINES:
        mask &= np.abs(wl - c) > 3.0
    return mask & (wl > 255.0) & (wl < 845.0)


def test_recovers_continuum_under_noise():
    wl, x = _spectra()
    b = estimate_baseline(x, wl)
    assert b.shape == x.shape and b.dtype == np.float32
    err = (b - _continuum(wl))[:, _line_free(wl)]
    sigma = np.sqrt(_continuum(wl).mean())  # Poisson noise per channel, ~20 counts
    assert abs(err.mean()) < 0.1 * sigma  # unbiased after refinement
    assert np.sqrt(np.mean(err**2)) < 0.5 * sigma


def test_plain_opening_is_biased_low_refinement_fixes_it():
    wl, x = _spectra(n=10)
    mask = _line_free(wl)
    sigma = np.sqrt(_continuum(wl).mean())
    raw_bias = (estimate_baseline(x, wl, refine_iterations=0) - _continuum(wl))[:, mask].mean()
    refined_bias = (estimate_baseline(x, wl) - _continuum(wl))[:, mask].mean()
    assert raw_bias < -0.5 * sigma
    assert abs(refined_bias) < 0.1 * sigma


def test_vectorised_matches_row_by_row():
    wl, x = _spectra(n=4)
    stacked = np.vstack([estimate_baseline(row, wl) for row in x])
    np.testing.assert_array_equal(estimate_baseline(x, wl), stacked)


def test_line_areas_preserved_after_removal():
    wl, x = _spectra(n=40)
    corrected = remove_baseline(x, wl)
    assert corrected.dtype == np.float32
    # On the corrected spectra the local background is ~0, and the areas stay those of the lines.
    areas = auxiliary_targets(corrected, wl, default_lines("Cu")).mean(axis=0)
    np.testing.assert_allclose(areas, [3000.0, 1800.0], rtol=0.02)
    # Direct sum over the line window (no local background) is also close: the continuum is gone.
    win = (wl >= 324.35) & (wl <= 325.25)
    direct = (corrected[:, win] * np.diff(wl).mean()).sum(axis=1).mean()
    assert direct == pytest.approx(3000.0, rel=0.03)


def test_noise_free_flat_spectrum_is_its_own_baseline():
    wl = grid(300.0, 400.0, 600)
    flat = np.full(wl.size, 123.0)
    np.testing.assert_allclose(estimate_baseline(flat, wl), flat, rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"window_nm": 0.0}, "window_nm must be a positive"),
        ({"noise_smooth_nm": -1.0}, "noise_smooth_nm must be a positive"),
        ({"refine_iterations": -1}, "refine_iterations must be >= 0"),
        ({"clip_sigma": 0.0}, "clip_sigma must be > 0"),
    ],
)
def test_bad_parameters(kwargs, message):
    wl = grid(300.0, 400.0, 100)
    with pytest.raises(ValueError, match=message):
        estimate_baseline(np.ones(wl.size), wl, **kwargs)


def test_shape_mismatch():
    wl = grid(300.0, 400.0, 100)
    with pytest.raises(ValueError, match="does not match the wavelength grid of 100 channels"):
        estimate_baseline(np.ones((3, 99)), wl)
