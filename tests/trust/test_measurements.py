"""Measurements trust takes from every spectrum: mean intensity, wavelength offset, spectral correlation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from libs_pipeline.testing import toy_campaign
from libs_pipeline.trust.calibration import load_trust, save_trust
from libs_pipeline.trust.measurements import (
    CORRELATION,
    MEAN_INTENSITY,
    OFFSET_CHANNELS,
    SpectralReference,
    mean_intensity,
    measure_spectra,
)


@pytest.fixture(scope="module")
def reference(toy_ds):
    return SpectralReference.fit(toy_ds["intensity"].values, toy_ds["wavelength"].values)


def _shift(x: np.ndarray, wl: np.ndarray, nm: float) -> np.ndarray:
    """Features move ``nm`` to the right (interpolated, so sub-channel shifts are real)."""
    return np.stack([np.interp(wl - nm, wl, row) for row in x])


def test_offset_is_measured_to_a_fraction_of_a_channel(reference, toy_ds):
    fresh = toy_campaign(seed=3)
    wl, x = fresh["wavelength"].values, fresh["intensity"].values
    step = np.median(np.diff(wl))
    for channels in (0.0, 0.5, -1.0, 3.0):
        offset, corr = reference.measure(_shift(x, wl, channels * step))
        assert np.median(offset) == pytest.approx(channels, abs=0.12), channels
        assert np.all(corr > 0.7)  # linear interpolation of a half-channel shift broadens the lines
    assert reference.channel_nm == pytest.approx(step)


def test_correlation_drops_for_foreign_lines(reference):
    fresh = toy_campaign(seed=4)
    wl, x = fresh["wavelength"].values, fresh["intensity"].values
    _, clean = reference.measure(x)
    foreign = x + sum(20000.0 * np.exp(-0.5 * ((wl - c) / 0.1) ** 2) for c in (315.0, 345.0, 372.0))
    _, dirty = reference.measure(foreign)
    assert dirty.max() < clean.min()


def test_measure_spectra_columns(reference, toy_ds, cu_lines):
    x, wl = toy_ds["intensity"].values[:7], toy_ds["wavelength"].values
    table = measure_spectra(x, wl, cu_lines, reference)
    assert len(table) == 7
    assert {"Cu I 324.75:area", "Cu I 327.40:area", MEAN_INTENSITY, OFFSET_CHANNELS, CORRELATION} <= set(table.columns)
    np.testing.assert_allclose(table[MEAN_INTENSITY], np.clip(x, 0, None).mean(axis=1))
    assert OFFSET_CHANNELS not in measure_spectra(x[0], wl, cu_lines).columns  # 1-D input, no reference
    with pytest.raises(ValueError, match="must be 2-D"):
        mean_intensity(np.ones(3))


def test_reference_round_trip_and_errors(reference, toy_ds):
    back = SpectralReference.from_dict(json.loads(json.dumps(reference.to_dict())))
    np.testing.assert_allclose(back.reference, reference.reference, rtol=1e-5)
    x = toy_ds["intensity"].values[:5]
    np.testing.assert_allclose(back.measure(x)[0], reference.measure(x)[0], atol=1e-3)
    with pytest.raises(ValueError, match="spectra have 100 channels, the spectral reference 512"):
        reference.measure(np.ones((2, 100)))
    with pytest.raises(ValueError, match="does not match 512 wavelength channels"):
        SpectralReference.fit(np.ones((3, 100)), toy_ds["wavelength"].values)
    with pytest.raises(ValueError, match="flat after high-pass"):
        SpectralReference.fit(np.ones((3, 512)), toy_ds["wavelength"].values)
    with pytest.raises(ValueError, match="no training spectra"):
        SpectralReference.fit(iter([]), toy_ds["wavelength"].values)
    with pytest.raises(ValueError, match="invalid spectral reference"):
        SpectralReference.from_dict({"reference": [1.0]}, "x.json")
    d = reference.to_dict() | {"reference": [1.0] * 10}
    with pytest.raises(ValueError, match="spectral.reference"):
        SpectralReference.from_dict(d, "x.json")


def test_streamed_fit_equals_array_fit(reference, toy_ds):
    x = toy_ds["intensity"].values
    streamed = SpectralReference.fit((x[i : i + 7] for i in range(0, len(x), 7)), toy_ds["wavelength"].values)
    np.testing.assert_allclose(streamed.reference, reference.reference, rtol=1e-10, atol=1e-12)


def test_full_calibration_round_trips(full_trust_setup, tmp_path):
    cal = full_trust_setup[1]
    save_trust(cal, tmp_path)
    loaded = load_trust(tmp_path)
    assert loaded.part_names() == cal.part_names()
    assert loaded.spectral is not None and loaded.intensity is not None
    np.testing.assert_allclose(loaded.intensity.coef, cal.intensity.coef)
    assert json.loads((tmp_path / "trust.json").read_text())["shape_scale"]["spread"] > 0


def test_noise_per_count_measures_the_gain_not_the_brightness():
    from libs_pipeline.trust.measurements import log_noise_per_count

    rng = np.random.default_rng(0)
    wl = np.linspace(300.0, 400.0, 2000)
    signal = 200.0 + 3000.0 * np.exp(-0.5 * ((wl - 350.0) / 0.2) ** 2)  # continuum + one line
    gain1 = rng.poisson(np.tile(signal, (20, 1))).astype(float)
    brighter = rng.poisson(np.tile(3.0 * signal, (20, 1))).astype(float)
    gain2 = 2.0 * rng.poisson(np.tile(signal / 2.0, (20, 1))).astype(float)  # same level, twice the counts/electron
    base = log_noise_per_count(gain1).mean()
    assert abs(base) < 0.15  # about log(1): one count per electron (a low quantile on integer counts is coarse)
    assert log_noise_per_count(brighter).mean() == pytest.approx(base, abs=0.1)  # brightness does not move it
    assert log_noise_per_count(gain2).mean() - base == pytest.approx(np.log(2.0), abs=0.1)
    np.testing.assert_allclose(log_noise_per_count(gain1 * 0.5) - log_noise_per_count(gain1), np.log(0.5), atol=1e-9)
    # resampled from a coarser grid: linear interpolation smooths the noise
    coarse = np.linspace(300.0, 400.0, 1000)
    resampled = np.array([np.interp(wl, coarse, row) for row in rng.poisson(np.tile(np.interp(coarse, wl, signal), (5, 1)))])
    assert (log_noise_per_count(resampled) < -1.0).all()
    with pytest.raises(ValueError, match="2-D"):
        log_noise_per_count(gain1[0])
