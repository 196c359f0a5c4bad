"""SelectedPLS: region/normalisation/components chosen by inner LOSO, saturation dropped, round trip, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.cross_decomposition import PLSRegression

from libs_pipeline.baselines.pls_selection import SelectedPLS, pls_linear_model
from libs_pipeline.testing.selection_toy import WL, campaign, gauss, window

NA = window("A 600", 600.0)
IS = window("IS 550", 550.0)
CONC = np.array([100.0, 400.0, 800.0, 1500.0, 2500.0, 4000.0, 6000.0])


def _interferents(i, rng):
    """Strong lines elsewhere whose amplitudes vary from sample to sample, unrelated to the analyte."""
    amp = np.random.default_rng(100 + i).uniform(0.0, 3000.0, 5)
    return sum(a * gauss(c) for a, c in zip(amp, (510.0, 530.0, 620.0, 660.0, 690.0)))


def test_windows_region_wins_over_interferent_laden_full_spectrum():
    X, y, g = campaign(CONC, lambda c: 0.5 * c, extra=_interferents, noise=5.0)
    model = SelectedPLS([NA], normalisations=("none",)).fit(X, WL, y, g)
    assert model.choice_["region"] == "windows"
    assert model.choice_["n_channels"] == int(((WL >= 599.0) & (WL <= 601.0)).sum())
    full = model.scores_[model.scores_["region"] == "full"]["inner_rmsep"].min()
    assert model.choice_["inner_rmsep"] < 0.5 * full


def test_total_normalisation_wins_when_samples_carry_a_gain():
    gain = np.array([0.6, 1.4, 0.8, 1.2, 0.7, 1.3, 1.0])
    X, y, g = campaign(CONC, lambda c: 0.5 * c, sample_gain=gain, shot_gain_sd=0.05)
    model = SelectedPLS([NA], regions=("windows",), normalisations=("none", "total")).fit(X, WL, y, g)
    assert model.choice_["normalisation"] == "total"


def test_components_are_capped_by_inner_training_samples_and_scores_match_a_brute_force_loso():
    X, y, g = campaign(CONC[:5], lambda c: 0.5 * c, shot_gain_sd=0.1, seed=2)
    model = SelectedPLS([NA], regions=("windows",), normalisations=("none",), max_components=10).fit(X, WL, y, g)
    assert model.scores_["n_components"].max() == 3  # 5 samples -> inner folds train on 4 -> at most 3
    cols = (WL >= 599.0) & (WL <= 601.0)
    for k in (1, 2, 3):
        err = []
        for s in np.unique(g):
            tr = g != s
            pls = PLSRegression(n_components=k, scale=False).fit(X[tr][:, cols].astype(float), y[tr])
            err.append(pls.predict(X[~tr][:, cols].astype(float)).mean() - y[~tr][0])
        row = model.scores_[model.scores_["n_components"] == k]
        assert row["inner_rmsep"].iloc[0] == pytest.approx(np.sqrt(np.mean(np.square(err))), rel=1e-6)


def test_saturated_channels_are_dropped_and_a_saturated_standard_is_rejected():
    X, y, g = campaign(CONC, lambda c: 10.0 * c, clip=30000.0)
    sat_idx = np.flatnonzero((X >= 30000.0 * 0.99).any(axis=0))
    assert sat_idx.size > 0
    strong_is = window("IS 600 clipped", 600.0)
    model = SelectedPLS([NA], internal_standards=[IS, strong_is], saturation=30000.0).fit(X, WL, y, g)
    data = model.to_dict()
    assert not set(sat_idx) & set(data["channels"])
    rejected = model.scores_[model.scores_["internal_standard"] == "IS 600 clipped"]
    assert rejected["reason"].str.startswith("saturated").all() and rejected["inner_rmsep"].isna().all()


def test_linear_model_matches_sklearn_prediction():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 12))
    y = X[:, 0] * 3 + X[:, 1] + rng.normal(0, 0.1, 30)
    for scale in (False, True):
        beta, b0 = pls_linear_model(X, y, 2, scale)
        ref = PLSRegression(n_components=2, scale=scale).fit(X, y).predict(X).ravel()
        np.testing.assert_allclose(X @ beta + b0, ref, rtol=1e-8, atol=1e-8)


def test_round_trip_through_json_predicts_identically():
    gain = np.array([0.6, 1.4, 0.8, 1.2, 0.7, 1.3, 1.0])
    X, y, g = campaign(CONC, lambda c: 0.5 * c, sample_gain=gain)
    for norms in (("total",), ("internal_standard",)):
        model = SelectedPLS([NA], normalisations=norms, internal_standards=[IS], saturation=1e6).fit(X, WL, y, g)
        restored = SelectedPLS.from_dict(json.loads(json.dumps(model.to_dict())))
        np.testing.assert_allclose(restored.predict(X), model.predict(X), rtol=1e-10)
        assert restored.choice_ == model.choice_


def test_clear_errors():
    X, y, g = campaign(CONC[:4], lambda c: 0.5 * c)
    with pytest.raises(ValueError, match="regions: must be a non-empty selection"):
        SelectedPLS([NA], regions=("everything",))
    with pytest.raises(ValueError, match="max_components must be >= 1"):
        SelectedPLS([NA], max_components=0)
    with pytest.raises(ValueError, match="needs at least one line"):
        SelectedPLS([NA], internal_standards=[])
    with pytest.raises(RuntimeError, match="before fit"):
        SelectedPLS([NA]).predict(X)
    with pytest.raises(ValueError, match="one label per sample"):
        SelectedPLS([NA]).fit(X, WL, np.arange(y.size, dtype=float), g)
    model = SelectedPLS([NA], internal_standards=[IS]).fit(X, WL, y, g)
    with pytest.raises(ValueError, match="same wavelength grid"):
        model.predict(X[:, 1:])
    with pytest.raises(ValueError, match="'kind' must be 'SelectedPLS'"):
        SelectedPLS.from_dict({"kind": "SelectedUnivariate"})


def test_windows_region_can_include_the_internal_standard_windows():
    X, y, g = campaign(CONC, lambda c: 0.5 * c)
    model = SelectedPLS([NA], regions=("windows",), normalisations=("none",), internal_standards=[IS],
                        include_internal_standard_windows=True, window_margin_nm=0.2).fit(X, WL, y, g)
    expected = ((WL >= 599.3) & (WL <= 600.7)) | ((WL >= 549.3) & (WL <= 550.7))
    assert model.choice_["n_channels"] == int(expected.sum())
