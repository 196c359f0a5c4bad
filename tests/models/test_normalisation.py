"""Input normalisation and target scaling: fitted on training data, exact inverses, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from libs_pipeline.models.normalisation import SpectrumNormaliser, TargetScaler, normalise_spectra, spectrum_totals


def test_total_normalisation_removes_the_shot_gain():
    rng = np.random.default_rng(0)
    base = rng.uniform(10, 100, size=64)
    x = np.stack([base, 1.7 * base])
    out = normalise_spectra(x, "total")
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0], out[1], rtol=1e-6)
    np.testing.assert_allclose(out.mean(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(normalise_spectra(x, "log_total"), np.log1p(out), rtol=1e-6)
    np.testing.assert_allclose(spectrum_totals(x), [base.mean(), 1.7 * base.mean()], rtol=1e-6)


def test_normalisation_errors_name_the_row():
    x = np.ones((3, 8))
    x[1] = -1.0
    with pytest.raises(ValueError, match="spectrum row 1 has zero total intensity"):
        normalise_spectra(x, "total")
    x[1, 4] = np.nan
    with pytest.raises(ValueError, match="spectrum row 1, channel 4"):
        normalise_spectra(x, "none")
    with pytest.raises(ValueError, match="not one of"):
        normalise_spectra(np.ones((1, 4)), "minmax")


@pytest.mark.parametrize("scaling", ["global", "channel", "none"])
def test_streaming_fit_matches_full_statistics_and_round_trips_json(scaling):
    rng = np.random.default_rng(1)
    x = rng.gamma(2.0, 50.0, size=(40, 32)).astype(np.float32)
    blocks = [x[:13], x[13:27], x[27:]]
    norm = SpectrumNormaliser.fit(iter(blocks), "total", scaling)
    z = norm.transform(x)
    assert z.shape == x.shape and z.dtype == np.float32
    if scaling == "global":
        assert abs(z.mean()) < 1e-4 and abs(z.std() - 1) < 1e-3
    elif scaling == "channel":
        np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-4)
        np.testing.assert_allclose(z.std(axis=0), 1.0, atol=1e-3)
    again = SpectrumNormaliser.from_dict(norm.to_dict())
    np.testing.assert_array_equal(again.transform(x), z)


def test_fit_without_data_and_channel_mismatch_fail():
    with pytest.raises(ValueError, match="no training spectra"):
        SpectrumNormaliser.fit(iter([]))
    norm = SpectrumNormaliser.fit(iter([np.ones((2, 8)) + np.arange(8)]), "total", "channel")
    with pytest.raises(ValueError, match="fitted on 8"):
        norm.transform(np.ones((1, 9)))


def test_target_scaler_standardises_inverts_and_handles_nan_log_and_totals():
    names = ["Cu", "Cu I 324.75:area", "T_K"]
    y = np.array([[0.1, 100.0, 9000.0], [1.0, 400.0, np.nan], [5.0, 900.0, 11000.0]])
    totals = np.array([1.0, 2.0, 3.0])
    scaler = TargetScaler.fit(names, y, log_tasks=["Cu"], per_total_tasks=["Cu I 324.75:area"], totals=totals)
    z = scaler.transform(y, totals)
    assert z.dtype == np.float32
    assert np.isnan(z[1, 2])
    np.testing.assert_allclose(np.nanmean(z, axis=0), 0.0, atol=1e-6)
    np.testing.assert_allclose(scaler.mean[0], np.mean(np.log10([0.1, 1.0, 5.0])))
    np.testing.assert_allclose(scaler.mean[1], np.mean([100.0, 200.0, 300.0]))  # area per unit total
    back = scaler.inverse(z, totals)
    np.testing.assert_allclose(back[~np.isnan(y)], y[~np.isnan(y)], rtol=1e-5)
    again = TargetScaler.from_dict(scaler.to_dict())
    np.testing.assert_array_equal(again.transform(y, totals), z)
    with pytest.raises(ValueError, match="spectrum totals are required"):
        scaler.transform(y)
    with pytest.raises(ValueError, match="need positive targets"):
        scaler.transform(np.array([[-1.0, 1.0, 1.0]]), np.ones(1))


def test_target_scaler_rejects_a_task_without_targets():
    with pytest.raises(ValueError, match="task 'b' has no finite training target"):
        TargetScaler.fit(["a", "b"], np.array([[1.0, np.nan], [2.0, np.nan]]))
    with pytest.raises(ValueError, match="log tasks"):
        TargetScaler(["a"], [0.0], [1.0], log_tasks=["z"])
