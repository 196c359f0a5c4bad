"""Fixtures of the trust tests on the fakes of ``libs_pipeline.testing.trust_fakes`` (ridge stand-in, toy
campaigns, a small CNN directory)."""

from __future__ import annotations

import pytest

from libs_pipeline.features.line_features import dataset_line_features
from libs_pipeline.features.lines import default_lines
from libs_pipeline.testing import toy_campaign
from libs_pipeline.testing.trust_fakes import RidgeStandIn, build_toy_model_dir, toy  # noqa: F401
from libs_pipeline.trust.fitting import fit_trust_calibration
from libs_pipeline.trust.measurements import SpectralReference, measure_spectra


@pytest.fixture(scope="session")
def cu_lines():
    return default_lines("Cu")


@pytest.fixture(scope="session")
def trust_setup(cu_lines):
    """(stand-in model, calibration, train ds, val ds): model on 8 samples, trust on 12 unseen ones.

    Line parts only (areas measured, no mean intensity or spectral reference): aux and cons per line.
    """
    train = toy_campaign(n_samples=8, n_shots=20, seed=10)
    val = toy_campaign(n_samples=12, n_shots=40, seed=11, cu_range=(0.15, 4.9))
    model = RidgeStandIn("Cu", cu_lines).fit(train)
    cal = fit_trust_calibration(
        "Cu",
        dataset_line_features(train, cu_lines),
        train["Cu"].values,
        model.predict(val["intensity"].values),
        dataset_line_features(val, cu_lines),
        cu_lines,
        train_groups=train["sample_id"].values,
        val_groups=val["sample_id"].values,
        units="wt%",
    )
    return model, cal, train, val


@pytest.fixture(scope="session")
def full_trust_setup(trust_setup, cu_lines):
    """Same model and data, every part the measurements allow: per-total consistency, intensity, spectral."""
    model, _, train, val = trust_setup
    wl = train["wavelength"].values
    reference = SpectralReference.fit(train["intensity"].values, wl)
    cal = fit_trust_calibration(
        "Cu",
        measure_spectra(train["intensity"].values, wl, cu_lines),
        train["Cu"].values,
        model.predict(val["intensity"].values),
        measure_spectra(val["intensity"].values, wl, cu_lines, reference),
        cu_lines,
        train_groups=train["sample_id"].values,
        val_groups=val["sample_id"].values,
        units="wt%",
        spectral=reference,
    )
    return model, cal, train, val


@pytest.fixture(scope="session")
def cnn_model_dir(tmp_path_factory):
    """A small multitask CNN trained on toy data, saved with its trust.json."""
    return build_toy_model_dir(tmp_path_factory.mktemp("models") / "toy-cu")
