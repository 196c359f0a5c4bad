"""Interpolated virtual samples between concentration neighbours (an option, off by default)."""

from __future__ import annotations

import numpy as np
import pytest

from libs_pipeline.synth.interpolation import interpolate_samples
from libs_pipeline.synth.noise_model import fit_noise_model, sample_spectra


def test_interpolation_adds_samples_between_neighbours(toy_ds):
    model = fit_noise_model(toy_ds)
    assert interpolate_samples(model, 0) is model
    dense = interpolate_samples(model, 2)
    assert dense.sample_ids[:6] == model.sample_ids
    virtual = dense.sample_ids[6:]
    assert len(virtual) == 5 * 2
    v = dense.sample(virtual[0])
    a, b = model.sample("S00"), model.sample("S01")
    assert v.parents == ("S00", "S01") and v.weight == pytest.approx(1 / 3)
    np.testing.assert_allclose(v.mean, (2 * a.mean + b.mean) / 3)
    assert v.labels["Cu"] == pytest.approx((2 * a.labels["Cu"] + b.labels["Cu"]) / 3)
    assert v.gain == pytest.approx((2 * a.gain + b.gain) / 3)
    cu = [dense.sample(s).labels["Cu"] for s in virtual]
    assert all(x < y for x, y in zip(cu, cu[1:]))  # a denser, still ordered concentration axis
    draws = sample_spectra(dense, virtual[-1], 3, np.random.default_rng(0))
    assert draws.shape == (3, 512)


def test_interpolation_errors(toy_ds):
    model = fit_noise_model(toy_ds)
    with pytest.raises(ValueError, match="n_between must be >= 0"):
        interpolate_samples(model, -1)
    with pytest.raises(ValueError, match="analyte 'Zn' is not a label"):
        interpolate_samples(model, 1, "Zn")
    one = fit_noise_model(toy_ds.isel(spectrum=slice(0, 10)))
    with pytest.raises(ValueError, match="at least 2 samples with a known label, got 1"):
        interpolate_samples(one, 1)
