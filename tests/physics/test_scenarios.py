"""Scenarios are parameter edits of the same model; each must change what it claims (on the same samples)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import find_peaks

from libs_pipeline.config import CampaignConfig
from libs_pipeline.physics import compositions as comp
from libs_pipeline.physics.campaign import simulate_campaign
from libs_pipeline.physics.plasma import emission_lines
from libs_pipeline.physics.scenarios import (
    SCENARIOS,
    apply_scenario,
    base_config,
    scenario_config,
    scenario_edits,
    scenario_names,
)
from libs_pipeline.testing.physics_campaigns import SEED, SMALL


def window_sum(ds, lo, hi, rows=None):
    wl = ds["wavelength"].values
    inside = (wl >= lo) & (wl <= hi)
    counts = ds["intensity"].values if rows is None else ds["intensity"].values[rows]
    return counts[:, inside].sum(axis=1)


def centroid(ds, center, half=0.4, rows=None):
    wl = ds["wavelength"].values
    inside = (wl >= center - half) & (wl <= center + half)
    counts = ds["intensity"].values if rows is None else ds["intensity"].values[rows]
    profile = counts[:, inside].mean(axis=0)
    profile = profile - profile.min()
    return float((profile * wl[inside]).sum() / profile.sum())


def test_names_edits_and_errors():
    assert scenario_names() == ["nominal", "temperature_shift", "low_laser_energy", "wavelength_shift",
                                "steel_matrix", "interfering_element", "gain_change"]
    assert set(scenario_names()) == set(CampaignConfig.model_fields["scenario"].annotation.__args__)
    for name in scenario_names():
        assert set(SCENARIOS[name]) == {"mild", "strong"}
    with pytest.raises(ValueError, match="unknown scenario 'fog'"):
        scenario_edits("fog", "mild")
    with pytest.raises(ValueError, match="unknown severity 'extreme'"):
        scenario_config(CampaignConfig(), "gain_change", "extreme")


def test_apply_scenario_edits_parameters_once():
    base = CampaignConfig(interferent={"Ca": 0.2})
    cases = {
        ("temperature_shift", "mild"): {"temperature_K": 10500.0},
        ("temperature_shift", "strong"): {"temperature_K": 11500.0},
        ("low_laser_energy", "strong"): {"intensity_factor_median": 0.3, "temperature_K": 9000.0,
                                         "electron_density_per_m3": 5e22},
        ("wavelength_shift", "mild"): {"wavelength_shift_nm": 0.15},
        ("wavelength_shift", "strong"): {"wavelength_shift_nm": 0.45},
        ("steel_matrix", "mild"): {"matrix": "low_alloy_steel"},
        ("steel_matrix", "strong"): {"matrix": "stainless_steel"},
        ("interfering_element", "strong"): {"interferent": {"Ca": 0.2, "V": 0.5}},
        ("gain_change", "mild"): {"gain_counts_per_electron": 1.6},
    }
    for (name, severity), expected in cases.items():
        labelled = scenario_config(base, name, severity)
        assert (labelled.scenario, labelled.severity) == (name, severity)
        assert labelled.temperature_K == base.temperature_K  # labelling alone changes no physics
        effective = apply_scenario(labelled)
        assert effective.scenario == "nominal"
        for field, value in expected.items():
            got = getattr(effective, field)
            assert got == pytest.approx(value) if isinstance(value, float) else got == value, (name, field)
        changed = {k for k, v in effective.model_dump().items() if v != base.model_dump()[k]}
        assert changed == set(expected), (name, changed)
        assert apply_scenario(effective) == effective  # applying is idempotent once resolved
        assert base_config(labelled) == base
    # a second scenario replaces the first rather than stacking
    twice = scenario_config(scenario_config(base, "gain_change", "strong"), "temperature_shift", "mild")
    assert apply_scenario(twice).gain_counts_per_electron == base.gain_counts_per_electron


def test_scenario_campaign_without_samples_measures_the_same_samples(nominal_campaign, small_config):
    shifted = simulate_campaign(scenario_config(small_config, "gain_change", "mild"), seed=SEED, workers=1)
    assert shifted.samples.equals(nominal_campaign.samples)
    assert shifted.name == "virtual-aluminium-gain_change-mild"
    assert shifted.spectra.attrs["scenario"] == "gain_change" and shifted.spectra.attrs["severity"] == "mild"


def test_temperature_shift(nominal_campaign, scenario_campaign):
    nominal = nominal_campaign.spectra
    for severity, factor in (("mild", 1.05), ("strong", 1.15)):
        ds = scenario_campaign("temperature_shift", severity).spectra
        np.testing.assert_allclose(ds["T_K"].values / nominal["T_K"].values, factor, rtol=1e-12)
        np.testing.assert_array_equal(ds["n_e_per_m3"].values, nominal["n_e_per_m3"].values)
    # Al I 396.15 (upper level 3.14 eV) vs Al I 309.27 (4.02 eV): a hotter plasma favours 309.27
    ds = scenario_campaign("temperature_shift", "strong").spectra
    ratio = lambda d: window_sum(d, 395.8, 396.5) / window_sum(d, 308.9, 309.6)  # noqa: E731
    change = ratio(ds) / ratio(nominal)
    assert np.median(change) < 0.95 and np.all(change < 1.0)


def test_low_laser_energy(nominal_campaign, scenario_campaign):
    nominal = nominal_campaign.spectra
    ds = scenario_campaign("low_laser_energy", "mild").spectra
    np.testing.assert_allclose(ds["intensity_factor"].values / nominal["intensity_factor"].values, 0.6, rtol=1e-12)
    np.testing.assert_allclose(ds["T_K"].values / nominal["T_K"].values, 0.96, rtol=1e-12)
    np.testing.assert_allclose(ds["n_e_per_m3"].values / nominal["n_e_per_m3"].values, 0.8, rtol=1e-12)
    strong = scenario_campaign("low_laser_energy", "strong").spectra
    totals = [d["intensity"].values.sum() for d in (nominal, ds, strong)]
    assert totals[0] > totals[1] > totals[2]


@pytest.mark.parametrize("severity,shift", [("mild", 0.15), ("strong", 0.45)])
def test_wavelength_shift_moves_peaks_by_the_requested_amount(nominal_campaign, scenario_campaign, severity, shift):
    nominal = nominal_campaign.spectra
    ds = scenario_campaign("wavelength_shift", severity).spectra
    np.testing.assert_array_equal(ds["wavelength"].values, nominal["wavelength"].values)  # labels unchanged
    high_cu = ds["sample_id"].values == nominal_campaign.samples.sort_values("Cu")["sample_id"].iloc[-1]
    for line in (324.754, 396.152):
        moved = centroid(ds, line + shift, rows=high_cu) - centroid(nominal, line, rows=high_cu)
        assert moved == pytest.approx(shift, abs=0.02), line


def test_steel_matrix_keeps_cu_and_fe_lines_dominate(nominal_campaign, scenario_campaign):
    for severity in ("mild", "strong"):
        campaign = scenario_campaign("steel_matrix", severity)
        samples = campaign.samples
        assert samples["sample_id"].tolist() == nominal_campaign.samples["sample_id"].tolist()
        np.testing.assert_array_equal(samples["Cu"].to_numpy(), nominal_campaign.samples["Cu"].to_numpy())
        assert "Al" not in samples.columns and (samples["Fe"] > 60).all()
        ds = campaign.spectra
        np.testing.assert_array_equal(ds["Cu"].values, nominal_campaign.spectra["Cu"].values)
        mean = ds["intensity"].values.mean(axis=0)
        wl = ds["wavelength"].values
        peaks, _ = find_peaks(mean)
        top = wl[peaks[np.argsort(mean[peaks])[::-1][:5]]]
        fractions = comp.mass_fractions(samples.iloc[0])
        lines = emission_lines(fractions, 1e4, 1e23, 1e-3, (SMALL["wavelength_start_nm"], SMALL["wavelength_stop_nm"]))
        for wavelength in top:
            near = lines[(lines["wavelength_air_nm"] - wavelength).abs() < 0.25]
            assert near.iloc[0]["element"] == "Fe", (severity, wavelength, near.head(3))
    nominal_mean = nominal_campaign.spectra["intensity"].values.mean(axis=0)
    al_309 = np.abs(wl - 309.27).argmin()
    assert mean[al_309] < 0.05 * nominal_mean[al_309]


def test_interfering_element_adds_intensity_in_the_cu_window(nominal_campaign, scenario_campaign):
    nominal = nominal_campaign.spectra
    previous = window_sum(nominal, 327.0, 327.9)
    for severity, wt in (("mild", 0.1), ("strong", 0.5)):
        campaign = scenario_campaign("interfering_element", severity)
        np.testing.assert_allclose(campaign.samples["V"], wt)
        ds = campaign.spectra
        cu_327 = window_sum(ds, 327.0, 327.9)
        assert np.all(cu_327 > previous), severity
        previous = cu_327
        # the other Cu line is (almost) untouched: same samples, same plasma draws
        ratio_324 = window_sum(ds, 324.35, 325.25) / window_sum(nominal, 324.35, 325.25)
        assert abs(np.median(ratio_324) - 1) < 0.03
    low_cu = nominal["sample_id"].values == nominal_campaign.samples.sort_values("Cu")["sample_id"].iloc[0]
    gain = window_sum(ds, 327.0, 327.9, low_cu) / window_sum(nominal, 327.0, 327.9, low_cu)
    assert np.median(gain) > 1.5  # strong interference dwarfs a low-Cu line


def test_gain_change_scales_counts(nominal_campaign, scenario_campaign):
    nominal = nominal_campaign.spectra
    for severity, factor in (("mild", 0.8), ("strong", 0.5)):
        ds = scenario_campaign("gain_change", severity).spectra
        np.testing.assert_array_equal(ds["T_K"].values, nominal["T_K"].values)
        ratio = ds["intensity"].values.sum(axis=1) / nominal["intensity"].values.sum(axis=1)
        np.testing.assert_allclose(ratio, factor, rtol=0.01)
