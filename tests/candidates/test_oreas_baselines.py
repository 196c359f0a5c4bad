"""Real data: leave-one-sample-out of the selected univariate and PLS candidates over the 7 OREAS rocks (Na).

Each fold's candidate makes its own inner-LOSO choices from the 6 training rocks only (the one evaluator,
``evaluation.nested.loso_predictions``). Measured 2026-12-01 (saturation detected at ~38 050 counts, paired
standard-error selection): univariate 943 ppm, PLS 1159 ppm; the bounds leave ~10-15 % headroom.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from libs_pipeline.baselines import SelectedUnivariate
from libs_pipeline.candidates import PLSCandidate, UnivariateCandidate
from libs_pipeline.config import IngestOptions
from libs_pipeline.evaluation.nested import loso_predictions
from libs_pipeline.features import default_lines
from libs_pipeline.spectra.campaign_loading import load_campaign


@functools.lru_cache(maxsize=1)
def _load(folder: str):
    return load_campaign(f"{folder}/Na_ppm_from_tutorial.csv", options=IngestOptions(saturation_level=38000.0))


@pytest.fixture
def oreas(oreas_dir):
    return _load(str(oreas_dir))


def test_loso_selected_univariate(oreas):
    result = loso_predictions(oreas, "Na", UnivariateCandidate())
    assert np.isfinite(result.predictions).all()
    choices = [f.description["choice"] for f in result.folds.values()]
    assert {c["line"] for c in choices} == {"Na I 818.3+819.5"}  # the unsaturated doublet, never Na D
    assert result.metrics()["rmsep_sample"] < 1050.0  # measured 943 ppm


def test_loso_selected_pls(oreas):
    result = loso_predictions(oreas, "Na", PLSCandidate())
    choices = [f.description["choice"] for f in result.folds.values()]
    assert all(c["n_components"] <= 4 for c in choices)  # inner folds train on 5 samples
    assert result.metrics()["rmsep_sample"] < 1350.0  # measured 1159 ppm


def test_default_internal_standards_are_unsaturated_on_oreas(oreas):
    x, wl = oreas["intensity"].values, oreas["wavelength"].values
    model = SelectedUnivariate(default_lines("Na"), normalisations=("internal_standard",), forms=("linear",),
                               saturation=38000.0).fit(x, wl, oreas["Na"].values, oreas["sample_id"].values)
    assert model.scores_["reason"].isna().all()  # every default standard is a usable candidate
    assert len(model.scores_) == 8
