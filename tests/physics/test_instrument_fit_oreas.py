"""The virtual instrument fitted to the real OREAS Na campaign (skipped when the data are absent)."""

from __future__ import annotations

import numpy as np
import pytest

from libs_pipeline.config import IngestOptions
from libs_pipeline.physics.instrument_fit import fit_instrument
from libs_pipeline.physics.matched_campaign import sim_to_real_gap, simulate_matched_campaign
from libs_pipeline.spectra.campaign_loading import load_campaign

pytestmark = pytest.mark.slow


def test_fit_to_oreas_campaign(oreas_dir):
    ds = load_campaign(oreas_dir / "Na_ppm_from_tutorial.csv", options=IngestOptions(saturation_level=38000)).load()
    fit = fit_instrument(ds, "Na", temperatures_K=(7000.0, 9000.0, 11000.0, 13000.0), densities_per_m3=(3e22, 1e23, 3e23),
                         saturation_counts=38000.0)
    assert len(fit.wavelength_nm) == 8011 and fit.analyte_units == "ppm"
    assert sorted(fit.sample_labels) == [301.0, 594.0, 1515.0, 4283.0, 6068.0, 14543.0, 20848.0]
    assert all(7000.0 <= t <= 13000.0 for t in fit.temperatures_K)
    assert 0.02 < fit.gaussian_sigma_nm < 0.2  # measured isolated lines: sigma 0.05-0.24 nm
    assert min(fit.match_correlations) > 0.3
    gap = sim_to_real_gap(fit, ds)
    assert gap["median_highpass_correlation"] > 0.3
    assert gap["na_slope_measured"] > 0 and gap["na_slope_simulated"] > 0
    virtual = simulate_matched_campaign(fit, n_samples=2, n_shots=2, seed=0, workers=1)
    assert virtual["Na"].attrs["units"] == "ppm"
    assert ((virtual["Na"] >= 150.5) & (virtual["Na"] <= 41696.0)).all()
    assert np.isfinite(virtual["intensity"].values).all()
