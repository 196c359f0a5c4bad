"""Fitting the virtual instrument to a virtual campaign of known width and plasma state, and matched simulation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from libs_pipeline.config import CampaignConfig
from libs_pipeline.physics import instrument_fit as fi
from libs_pipeline.physics.campaign import simulate_campaign
from libs_pipeline.physics.matched_campaign import (
    draw_virtual_sample,
    sim_to_real_gap,
    simulate_matched_campaign,
    write_matched_zarr,
)
from libs_pipeline.physics.spectrometer import Spectrometer
from libs_pipeline.spectra.dataset import LABEL_ROLE
from libs_pipeline.spectra.store import open_spectra

TRUE_T = 9500.0
GRID_T = (7000.0, 8500.0, 10000.0, 11500.0, 13000.0)
GRID_N = (3e22, 1e23, 3e23)


@pytest.fixture(scope="module")
def known():
    """A rock campaign (reference matrix, 3 Na levels) with a known instrument and plasma state, and its fit."""
    ref = fi.reference_matrix_wt("rock", "Na")
    rows = []
    for i, na in enumerate((0.05, 0.3, 1.5)):
        row = fi.comp._with_balance({**ref, "Na": na}, "O")
        rows.append({"sample_id": f"S{i}", "matrix": "rock", **row})
    config = CampaignConfig(
        name="known", matrix="rock", analyte="Na", analyte_range_wt=(0.03, 2.0), n_shots=5,
        wavelength_start_nm=250.0, wavelength_stop_nm=850.0, n_channels=4096, temperature_K=TRUE_T,
        temperature_rel_sd=0.01, electron_density_log_sd=0.05, basis_temperatures=2, basis_densities=2,
        gaussian_sigma_nm=0.08,
    )
    campaign = simulate_campaign(config, seed=3, samples=pd.DataFrame(rows), workers=1)
    fit = fi.fit_instrument(campaign.spectra, "Na", temperatures_K=GRID_T, densities_per_m3=GRID_N)
    return config, campaign, fit


def test_fitted_width_close_to_known_instrument(known):
    config, _, fit = known
    truth = Spectrometer.from_config(config).effective_sigma_nm  # 0.0905 nm
    assert len(fit.line_fits) >= 8
    assert fit.gaussian_sigma_nm == pytest.approx(truth, rel=0.2)


def test_fitted_temperature_close_to_truth(known):
    _, campaign, fit = known
    true_t = campaign.shots.groupby("sample_id")["T_K"].mean()
    for sid, t in zip(fit.sample_ids, fit.temperatures_K):
        assert t == pytest.approx(true_t[sid], rel=0.06)
    assert min(fit.match_correlations) > 0.9
    assert all(GRID_N[0] <= n <= GRID_N[-1] for n in fit.densities_per_m3)


def test_fit_is_json_roundtrip_and_on_measured_grid(known):
    _, campaign, fit = known
    again = fi.InstrumentFit.from_json(fit.to_json())
    assert again == fit
    np.testing.assert_array_equal(fit.wavelength, campaign.spectra["wavelength"].values)
    assert fit.analyte_units == "wt%" and fit.sample_labels == [0.05, 0.3, 1.5]
    assert fit.gain_counts_per_electron > 0 and fit.read_noise_counts >= 0
    assert 0.0 < fit.shot_log_sd < 0.5


def test_sim_to_real_gap_small_on_its_own_virtual_data(known):
    _, campaign, fit = known
    gap = sim_to_real_gap(fit, campaign.spectra)
    assert gap["median_highpass_correlation"] > 0.9
    assert 0.5 < gap["na_slope_ratio_sim_over_meas"] < 2.0


def test_matched_campaign_shapes_labels_and_units(known):
    _, _, fit = known
    ds = simulate_matched_campaign(fit, n_samples=5, n_shots=3, analyte_range=(0.02, 3.0), seed=1, workers=1)
    assert ds["intensity"].shape == (15, len(fit.wavelength_nm)) and ds["intensity"].dtype == np.float32
    np.testing.assert_array_equal(ds["wavelength"].values, fit.wavelength)
    assert ds["Na"].attrs == {"units": "wt%", "role": LABEL_ROLE}
    assert ds["T_K"].attrs["units"] == "K" and ds["n_e_per_m3"].attrs["units"] == "m^-3"
    assert ((ds["Na"] >= 0.02) & (ds["Na"] <= 3.0)).all()
    assert (ds["T_K"] >= GRID_T[0]).all() and (ds["T_K"] <= GRID_T[-1]).all()
    assert list(ds["shot"].values[:3]) == [0, 1, 2] and len(set(ds["sample_id"].values)) == 5
    assert float(ds["intensity"].max()) <= fit.saturation_counts
    assert ds.attrs["libskit_calls"] == 5


def test_matched_campaign_is_deterministic(known):
    _, _, fit = known
    a = simulate_matched_campaign(fit, n_samples=4, n_shots=2, seed=5, workers=1, chunk_samples=2)
    b = simulate_matched_campaign(fit, n_samples=4, n_shots=2, seed=5, workers=2, chunk_samples=2)
    c = simulate_matched_campaign(fit, n_samples=4, n_shots=2, seed=6, workers=1, chunk_samples=2)
    np.testing.assert_array_equal(a["intensity"].values, b["intensity"].values)
    np.testing.assert_array_equal(a["Na"].values, b["Na"].values)
    assert not np.array_equal(a["intensity"].values, c["intensity"].values)


def test_analyte_drawn_independently_of_matrix(known):
    _, _, fit = known
    draws = [draw_virtual_sample(fit, i, (0.01, 4.0), seed=0) for i in range(3000)]
    log_analyte = np.log([d.analyte_value for d in draws])
    assert log_analyte.min() >= np.log(0.01) and log_analyte.max() <= np.log(4.0)
    # log-uniform: mean of ln at the centre of the log range
    assert log_analyte.mean() == pytest.approx(0.5 * (np.log(0.01) + np.log(4.0)), abs=0.1)
    for element in draws[0].matrix_wt:
        r = np.corrcoef(log_analyte, np.log([d.matrix_wt[element] for d in draws]))[0, 1]
        assert abs(r) < 0.06, element
    for quantity in ("temperature_K", "density_per_m3", "total_counts"):
        assert abs(np.corrcoef(log_analyte, [getattr(d, quantity) for d in draws])[0, 1]) < 0.06, quantity


def test_matched_zarr_opens_with_open_spectra(known, tmp_path):
    _, _, fit = known
    ds = simulate_matched_campaign(fit, n_samples=2, n_shots=2, seed=2, workers=1)
    path = write_matched_zarr(ds, tmp_path / "matched.zarr")
    back = open_spectra(path)
    np.testing.assert_array_equal(back["intensity"].values, ds["intensity"].values)
    assert list(back["sample_id"].values) == list(ds["sample_id"].values)
    assert back["Na"].attrs["units"] == "wt%"
    with pytest.raises(FileExistsError):
        write_matched_zarr(ds, path)


def test_bad_arguments_raise_clear_errors(known):
    _, _, fit = known
    with pytest.raises(ValueError, match="analyte_range"):
        simulate_matched_campaign(fit, n_samples=1, analyte_range=(2.0, 1.0))
    with pytest.raises(ValueError, match="n_samples"):
        simulate_matched_campaign(fit, n_samples=0)
    with pytest.raises(ValueError, match="units"):
        fi.to_wt(1.0, "mg/kg")
