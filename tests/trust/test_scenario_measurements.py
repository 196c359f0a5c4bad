"""Each virtual-instrument scenario changes what the trust parts rely on (same samples re-measured, same seed).

The physics tests check the physics; these check the measurements trust builds on: mean intensity
(gain, laser energy), wavelength offset against the reference (axis shift), the Cu line-area ratio
(interferent on Cu I 327.40), spectral correlation (matrix) and the plasma temperature (temperature shift).
"""

from __future__ import annotations

import numpy as np
import pytest

from libs_pipeline.config import CampaignConfig
from libs_pipeline.features.lines import default_lines
from libs_pipeline.trust.measurements import SpectralReference, mean_intensity, measure_spectra

pytestmark = pytest.mark.slow

SMALL = dict(
    n_samples=2, n_shots=6, wavelength_start_nm=250.0, wavelength_stop_nm=400.0, n_channels=1024,
    basis_temperatures=3, basis_densities=3, analyte_range_wt=(1.0, 4.0),
)
SEED = 3


@pytest.fixture(scope="module")
def campaigns():
    from libs_pipeline.physics.campaign import simulate_campaign
    from libs_pipeline.physics.scenarios import SEVERITIES, scenario_config, scenario_names

    base = CampaignConfig(**SMALL)
    nominal = simulate_campaign(base, seed=SEED, workers=1)
    out = {"nominal": nominal.spectra}
    for name in scenario_names():
        if name != "nominal":
            for severity in SEVERITIES:
                out[name, severity] = simulate_campaign(
                    scenario_config(base, name, severity), seed=SEED, samples=nominal.samples, workers=1
                ).spectra
    return out


def _level_ratio(campaigns, key):
    return np.median(mean_intensity(campaigns[key]["intensity"].values) / mean_intensity(campaigns["nominal"]["intensity"].values))


def test_gain_change_scales_the_mean_intensity_by_the_gain(campaigns):
    assert _level_ratio(campaigns, ("gain_change", "mild")) == pytest.approx(0.8, rel=0.02)
    assert _level_ratio(campaigns, ("gain_change", "strong")) == pytest.approx(0.5, rel=0.02)


def test_low_laser_energy_lowers_the_mean_intensity(campaigns):
    mild = _level_ratio(campaigns, ("low_laser_energy", "mild"))
    strong = _level_ratio(campaigns, ("low_laser_energy", "strong"))
    assert strong < mild < 0.75


def test_wavelength_shift_is_measured_as_an_offset(campaigns):
    nominal = campaigns["nominal"]
    wl = nominal["wavelength"].values
    reference = SpectralReference.fit(nominal["intensity"].values, wl)
    assert np.abs(reference.measure(nominal["intensity"].values)[0]).max() < 0.05
    for severity, nm in (("mild", 0.15), ("strong", 0.45)):
        offset, _ = reference.measure(campaigns["wavelength_shift", severity]["intensity"].values)
        assert np.median(offset) * reference.channel_nm == pytest.approx(nm, abs=0.02)


def test_interferent_raises_only_the_cu_327_line(campaigns):
    lines = default_lines("Cu")

    def areas(key):
        ds = campaigns[key]
        t = measure_spectra(ds["intensity"].values, ds["wavelength"].values, lines)
        return t["Cu I 324.75:area"].to_numpy(), t["Cu I 327.40:area"].to_numpy()

    a324, a327 = areas("nominal")
    m324, m327 = areas(("interfering_element", "mild"))
    s324, s327 = areas(("interfering_element", "strong"))
    assert np.median(m324 / a324) == pytest.approx(1.0, abs=0.05)
    assert np.median(s324 / a324) == pytest.approx(1.0, abs=0.05)
    assert 1.0 < np.median(m327 / a327) < np.median(s327 / a327)
    assert np.median(s327 / a327) > 1.1


def test_steel_matrix_lowers_the_spectral_correlation(campaigns):
    nominal = campaigns["nominal"]
    reference = SpectralReference.fit(nominal["intensity"].values, nominal["wavelength"].values)
    _, base = reference.measure(nominal["intensity"].values)
    for severity in ("mild", "strong"):
        _, corr = reference.measure(campaigns["steel_matrix", severity]["intensity"].values)
        assert corr.max() < base.min()


def test_temperature_shift_moves_the_plasma_temperature(campaigns):
    t0 = np.median(campaigns["nominal"]["T_K"].values)
    assert np.median(campaigns["temperature_shift", "mild"]["T_K"].values) / t0 == pytest.approx(1.05, abs=0.01)
    assert np.median(campaigns["temperature_shift", "strong"]["T_K"].values) / t0 == pytest.approx(1.15, abs=0.01)
