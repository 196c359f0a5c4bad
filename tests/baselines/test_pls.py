"""PLS baseline: total normalisation, components by grouped CV, no leakage across samples, errors."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.cross_decomposition import PLSRegression
from sklearn.model_selection import KFold

from libs_pipeline.baselines.pls import PLSCalibration, normalise_total, truncated_predictions


def _linear_campaign(n_samples=8, n_shots=6, m=200, seed=0):
    """Spectra = continuum + c * analyte line + interferent line (varying independently) + noise; random gain."""
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    x = np.linspace(0.0, 1.0, m)
    cont = 100.0 + 20.0 * x
    analyte = 50.0 * np.exp(-0.5 * ((x - 0.3) / 0.01) ** 2)
    other = 80.0 * np.exp(-0.5 * ((x - 0.7) / 0.01) ** 2)
    conc = np.linspace(0.5, 5.0, n_samples)
    inter = rng.uniform(0.0, 3.0, n_samples)
    rows, y, groups = [], [], []
    for i in range(n_samples):
        for _ in range(n_shots):
            gain = rng.normal(1.0, 0.1)
            rows.append(gain * (cont + conc[i] * analyte + inter[i] * other) + rng.normal(0.0, 0.5, m))
            y.append(conc[i])
            groups.append(f"s{i}")
    return np.asarray(rows), np.asarray(y), np.asarray(groups)


def test_fits_and_predicts_held_out_sample():
    X, y, g = _linear_campaign()
    held = g == "s3"
    model = PLSCalibration(max_components=6).fit(X[~held], y[~held], g[~held])
    assert 1 <= model.n_components_ <= 6
    assert model.cv_rmse_.shape == (6,)
    assert model.cv_rmse_[model.n_components_ - 1] == model.cv_rmse_.min()
    pred = model.predict(X[held])
    assert abs(pred.mean() - y[held][0]) < 0.1 * y.std()


def test_total_normalisation_removes_gain():
    X, y, g = _linear_campaign()
    model = PLSCalibration(max_components=4).fit(X, y, g)
    np.testing.assert_allclose(model.predict(3.0 * X[:5]), model.predict(X[:5]), rtol=1e-9)
    np.testing.assert_allclose(normalise_total(np.array([[1.0, 3.0]])), [[0.25, 0.75]])


def test_cv_folds_never_share_a_sample():
    X, y, g = _linear_campaign(n_samples=7)
    model = PLSCalibration(max_components=3, n_splits=3).fit(X, y, g)
    assert len(model.cv_folds_) == 3
    tested = []
    for train_groups, test_groups in model.cv_folds_:
        assert set(train_groups).isdisjoint(test_groups)
        assert set(train_groups) | set(test_groups) == set(g)
        tested.extend(test_groups)
    assert sorted(tested) == sorted(set(g))  # each sample tested exactly once


def test_grouped_cv_does_not_learn_sample_identity():
    """Labels unrelated to the spectra but each sample has a fingerprint: only leaky CV would 'predict' them."""
    rng = np.random.default_rng(np.random.SeedSequence(11))
    n_samples, n_shots, m = 10, 8, 120
    fingerprints = rng.normal(0.0, 1.0, (n_samples, m))
    labels = rng.uniform(0.0, 10.0, n_samples)
    X = 50.0 + np.repeat(fingerprints, n_shots, axis=0) + rng.normal(0.0, 0.05, (n_samples * n_shots, m))
    y = np.repeat(labels, n_shots)
    g = np.repeat(np.arange(n_samples), n_shots)
    model = PLSCalibration(max_components=8).fit(X, y, g)
    assert model.cv_rmse_.min() > 0.8 * y.std()  # no skill across samples
    # The same procedure with shots of one sample on both sides looks (falsely) excellent:
    Xn = normalise_total(X)
    leaky = np.zeros_like(y)
    for train, test in KFold(5, shuffle=True, random_state=0).split(Xn):
        leaky[test] = PLSRegression(n_components=8, scale=False).fit(Xn[train], y[train]).predict(Xn[test]).ravel()
    assert np.sqrt(np.mean((leaky - y) ** 2)) < 0.2 * y.std()


@pytest.mark.parametrize("scale", [False, True])
def test_truncated_predictions_equal_separate_fits(scale):
    rng = np.random.default_rng(np.random.SeedSequence(5))
    X = rng.normal(size=(30, 50)) + 4.0
    y = X[:, :3].sum(axis=1) + rng.normal(0.0, 0.1, 30)
    X_test = rng.normal(size=(7, 50)) + 4.0
    preds = truncated_predictions(X, y, X_test, 6, scale)
    for k in (1, 3, 6):
        ref = PLSRegression(n_components=k, scale=scale).fit(X, y).predict(X_test).ravel()
        np.testing.assert_allclose(preds[k - 1], ref, rtol=1e-8, atol=1e-8)


def test_components_capped_by_training_size():
    X, y, g = _linear_campaign(n_samples=3, n_shots=2, m=30)
    model = PLSCalibration(max_components=10, n_splits=3).fit(X, y, g)
    assert model.cv_rmse_.size == 3  # smallest training fold has 4 rows -> at most 3 components


def test_errors():
    X, y, g = _linear_campaign(n_samples=3, n_shots=2, m=30)
    with pytest.raises(ValueError, match="at least 2 groups"):
        PLSCalibration().fit(X, y, np.zeros(len(y)))
    bad = X.copy()
    bad[4] = 0.0
    with pytest.raises(ValueError, match="total intensity of row 4 is 0.0"):
        PLSCalibration().fit(bad, y, g)
    with pytest.raises(ValueError, match="X has 6 rows, y 5, groups 6"):
        PLSCalibration().fit(X, y[:5], g)
    y_nan = y.copy()
    y_nan[2] = np.nan
    with pytest.raises(ValueError, match="non-finite label at row 2"):
        PLSCalibration().fit(X, y_nan, g)
    with pytest.raises(RuntimeError, match="before fit"):
        PLSCalibration().predict(X)
    model = PLSCalibration(max_components=2, n_splits=3).fit(X, y, g)
    with pytest.raises(ValueError, match="X: 29 channels, but the model was fitted on 30"):
        model.predict(X[:, :29])
    with pytest.raises(ValueError, match="max_components must be >= 1"):
        PLSCalibration(max_components=0)
    with pytest.raises(ValueError, match="n_splits must be >= 2"):
        PLSCalibration(n_splits=1)
