"""Noise model: parameters recovered from the toy campaign's known detector, draws, clipping, errors."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from libs_pipeline.spectra.dataset import make_spectra_dataset
from libs_pipeline.synth.noise_model import (
    NoiseModel,
    SampleNoise,
    _factors_from_z,
    detect_saturation,
    fit_noise_model,
    sample_spectra,
    standard_normal_f32,
)
from libs_pipeline.testing import toy_campaign, toy_mean_spectrum, toy_wavelength

# Tolerances (stated): the toy campaign draws gain=2, read_noise=5, shot_sigma=0.08.
GAIN_TOL = 0.05  # relative, pooled fit on 6 samples x 50 shots x 2048 channels
READ_NOISE_TOL = 0.40  # relative: the toy baseline (>= 200 counts) leaves read noise poorly identified
SHOT_SIGMA_TOL = 0.10  # relative, mean over the 6 samples


def test_pooled_fit_recovers_known_detector_parameters():
    ds = toy_campaign(n_shots=50, n_channels=2048, seed=3)
    model = fit_noise_model(ds, detector="pooled")
    gains = {s.gain for s in model.samples.values()}
    assert len(gains) == 1  # one detector
    gain = gains.pop()
    read_noise = model.sample("S00").read_noise
    sigma = np.mean([s.shot_sigma for s in model.samples.values()])
    assert abs(gain / 2.0 - 1) < GAIN_TOL, gain
    assert abs(read_noise / 5.0 - 1) < READ_NOISE_TOL, read_noise
    assert abs(sigma / 0.08 - 1) < SHOT_SIGMA_TOL, sigma
    # the toy has no shape fluctuations: the fit finds no modes, i.e. the paper's model exactly
    assert all(s.modes.shape[0] == 0 for s in model.samples.values())


def test_per_sample_fit_on_default_toy_campaign(toy_ds):
    model = fit_noise_model(toy_ds)
    assert model.sample_ids == [f"S{i:02d}" for i in range(6)]
    for s in model.samples.values():
        assert 1.3 < s.gain < 2.7  # 10 shots x 512 channels per sample: +-35 %
        assert 0.03 < s.shot_sigma < 0.15
        np.testing.assert_allclose(s.mean, toy_ds["intensity"].values[toy_ds["sample_id"].values == s.sample_id].mean(0), rtol=1e-6)
        assert s.n_shots == 10 and s.n_fit_channels == 512
    assert model.sample("S03").labels == {"Cu": pytest.approx(toy_ds["Cu"].values[30])}
    assert model.floor == 0.0 and model.saturation is None and model.integer is False


def test_model_round_trips_through_json(toy_ds):
    model = fit_noise_model(toy_ds, shot_factor="lognormal", instrument_fwhm_nm=0.3)
    back = NoiseModel.from_dict(json.loads(json.dumps(model.to_dict())))
    assert back.to_dict() == model.to_dict()
    np.testing.assert_array_equal(back.sample("S01").mean, model.sample("S01").mean)
    with pytest.raises(ValueError, match="format"):
        NoiseModel.from_dict({**model.to_dict(), "format": "other"})


def test_draws_are_deterministic_float32_and_have_the_fitted_spread(toy_ds):
    model = fit_noise_model(toy_ds)
    a = sample_spectra(model, "S02", 4000, np.random.default_rng(7))
    b = sample_spectra(model, "S02", 4000, np.random.default_rng(7))
    assert a.dtype == np.float32 and a.shape == (4000, 512)
    assert a.tobytes() == b.tobytes()
    p = model.sample("S02")
    mean = p.mean
    np.testing.assert_allclose(np.median(a.mean(0) / mean), 1.0, atol=0.01)
    expected_var = p.gain * mean + p.read_noise**2 + p.shot_sigma**2 * mean**2
    ratio = a.var(0, ddof=1) / expected_var
    assert 0.93 < np.median(ratio) < 1.07
    total_cv = a.sum(1).std() / a.sum(1).mean()
    assert abs(total_cv / p.shot_sigma - 1) < 0.1


def test_zero_read_noise_draws_no_gaussian(toy_ds):
    """A sample whose fitted read noise is 0 gets exactly shot factor x Poisson x gain: no read-noise draws."""
    model = fit_noise_model(toy_ds)
    p = replace(model.sample("S02"), read_noise=0.0, modes=np.zeros((0, model.n_channels)))
    quiet = replace(model, samples={"S02": p})
    draws = sample_spectra(quiet, "S02", 50, np.random.default_rng(3))
    rng = np.random.default_rng(3)  # the same draw order by hand: shot factors, then photo-electrons, nothing more
    f = _factors_from_z(quiet, p.shot_sigma, rng.standard_normal(50))
    mean = quiet.sampling_mean("S02")
    expected = (rng.poisson(np.maximum(mean, 0.0) * (f[:, None] / p.gain)).astype(np.float32) * np.float32(p.gain))
    expected += (np.minimum(mean, 0.0)[None, :] * f[:, None]).astype(np.float32)
    if quiet.integer:
        np.rint(expected, out=expected)
    if quiet.floor is not None or quiet.saturation is not None:
        np.clip(expected, quiet.floor, quiet.saturation, out=expected)
    np.testing.assert_array_equal(draws, expected)
    noisy = replace(model, samples={"S02": replace(p, read_noise=5.0)})
    assert not np.array_equal(sample_spectra(noisy, "S02", 50, np.random.default_rng(3)), draws)


def test_standard_normal_f32_is_standard_normal_deterministic_and_any_shape():
    from scipy import stats

    z = standard_normal_f32(np.random.default_rng(11), (401, 999))  # an odd size: the last pair is half used
    assert z.dtype == np.float32 and z.shape == (401, 999) and np.isfinite(z).all()
    assert standard_normal_f32(np.random.default_rng(11), (401, 999)).tobytes() == z.tobytes()
    flat = z.astype(np.float64).ravel()
    assert abs(flat.mean()) < 0.005 and abs(flat.std() - 1.0) < 0.005
    assert abs(stats.skew(flat)) < 0.01 and abs(stats.kurtosis(flat)) < 0.02
    assert stats.kstest(flat[:100_000], "norm").pvalue > 1e-3
    first, second = flat[: flat.size // 2], flat[flat.size // 2 :]  # the two halves of each pair: independent
    assert abs(np.corrcoef(first, second[: first.size])[0, 1]) < 0.005
    # the radius of every pair comes from a float64 uniform: a float32 one would cap |z| at 5.77
    rng = np.random.default_rng(0)
    radius = np.sqrt(-2.0 * np.log(1.0 - rng.random(8)))
    angle = rng.random(8, dtype=np.float32) * np.float32(2.0 * np.pi)
    expected = np.concatenate([radius.astype(np.float32) * np.cos(angle), radius.astype(np.float32) * np.sin(angle)])
    np.testing.assert_allclose(standard_normal_f32(np.random.default_rng(0), (16,)), expected, rtol=1e-6)


def test_integer_clipped_saturated_data_give_integer_clipped_draws():
    wl = toy_wavelength(400)
    rng = np.random.default_rng(0)
    mean = toy_mean_spectrum(wl, 3.0) * 6.0 - 1700.0  # negative baseline regions and lines above saturation
    shots = np.clip(np.round(rng.poisson(np.clip(mean, 0, None), (10, 400)) + rng.normal(0, 4, (10, 400))), 0, 38000)
    ds = make_spectra_dataset(shots, wl, ["A"] * 10, range(10))
    assert (shots == 38000).sum() >= 20 and (shots == 0).sum() > 0
    model = fit_noise_model(ds)
    assert model.integer and model.floor == 0.0
    assert model.saturation == pytest.approx(38000.0)
    s = model.sample("A")
    assert s.n_fit_channels < 400  # saturated and clipped channels left out of the fit
    draws = sample_spectra(model, "A", 200, np.random.default_rng(1))
    assert draws.min() >= 0 and draws.max() <= 38000
    np.testing.assert_array_equal(draws, np.round(draws))


def test_detect_saturation_needs_a_pile_up():
    rng = np.random.default_rng(0)
    smooth = rng.gamma(2.0, 1000.0, 50_000)
    assert detect_saturation(smooth) is None
    piled = np.concatenate([smooth, rng.normal(38000, 60, 300)])
    piled = np.minimum(piled, 38300)
    assert detect_saturation(piled) == pytest.approx(38000, abs=200)
    assert detect_saturation(np.zeros(10)) is None


def test_fit_errors_name_the_sample_and_rule(toy_ds):
    few = toy_ds.isel(spectrum=[0, 1, 10, 11, 12])
    with pytest.raises(ValueError, match="sample 'S00': 2 shot\\(s\\); the noise fit needs at least 3"):
        fit_noise_model(few)
    with pytest.raises(ValueError, match="detector 'shared' is not one of"):
        fit_noise_model(toy_ds, detector="shared")
    with pytest.raises(ValueError, match="shot_factor"):
        fit_noise_model(toy_ds, shot_factor="gamma")
    with pytest.raises(ValueError, match="no 'intensity' variable"):
        fit_noise_model(toy_ds.drop_vars("intensity"))
    flat = make_spectra_dataset(np.full((5, 64), 100.0) + np.random.default_rng(0).normal(0, 3, (5, 64)),
                                np.linspace(300, 310, 64), ["F"] * 5, range(5))
    with pytest.raises(ValueError, match="sample 'F'.*(narrow|grow)"):
        fit_noise_model(flat)
    bad = toy_ds.copy(deep=True)
    bad["intensity"][3, 5] = np.nan
    with pytest.raises(ValueError, match="sample 'S00': intensity holds NaN"):
        fit_noise_model(bad)
    with pytest.raises(KeyError, match="no sample 'nope'"):
        fit_noise_model(toy_ds).sample("nope")


def test_sample_noise_validates_mode_correlations():
    with pytest.raises(ValueError, match="2 modes but 1 mode correlations"):
        SampleNoise("X", np.ones(4), 1.0, 0.0, 0.1, 3, {}, modes=np.ones((2, 4)), mode_correlation=np.ones(1) * 0.1)
    with pytest.raises(ValueError, match="norm < 1"):
        SampleNoise("X", np.ones(4), 1.0, 0.0, 0.1, 3, {}, modes=np.ones((2, 4)), mode_correlation=np.array([0.8, 0.8]))
