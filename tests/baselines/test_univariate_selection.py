"""SelectedUnivariate: the known-best candidate wins, saturated lines are excluded, scores, round trip, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from libs_pipeline.baselines.calibration_forms import fit_curve, predict_curve
from libs_pipeline.baselines.univariate import UnivariateCalibration
from libs_pipeline.baselines.univariate_selection import SelectedUnivariate
from libs_pipeline.features import feature_column, line_features
from libs_pipeline.testing.selection_toy import WL, campaign, gauss, window

NA = window("A 600", 600.0)
IS = window("IS 550", 550.0)
CONC = np.array([100.0, 400.0, 800.0, 1500.0, 2500.0, 4000.0, 6000.0])


def test_total_normalisation_wins_when_samples_carry_a_gain():
    gain = np.array([0.6, 1.4, 0.8, 1.2, 0.7, 1.3, 1.0])
    X, y, g = campaign(CONC, lambda c: 0.5 * c, sample_gain=gain, shot_gain_sd=0.1)
    model = SelectedUnivariate([NA], normalisations=("none", "total"), forms=("linear",)).fit(X, WL, y, g)
    assert model.choice_["normalisation"] == "total"
    scores = model.scores_.set_index("normalisation")["inner_rmsep"]
    assert scores["total"] < 0.05 * scores["none"]
    assert model.choice_["inner_rmsep"] == pytest.approx(scores.min())
    held = g == "s3"
    refit = SelectedUnivariate([NA], normalisations=("none", "total"), forms=("linear",)).fit(
        X[~held], WL, y[~held], g[~held])
    assert abs(refit.predict(X[held]).mean() - CONC[3]) < 0.03 * CONC[3]


def test_internal_standard_wins_when_only_line_emission_fluctuates():
    factor = np.array([0.6, 1.4, 0.8, 1.2, 0.7, 1.3, 1.0])  # plasma-temperature-like: lines, not continuum
    X, y, g = campaign(CONC, lambda c: 0.5 * c, line_factor=factor)
    model = SelectedUnivariate([NA], internal_standards=[IS], forms=("linear",)).fit(X, WL, y, g)
    assert model.choice_["normalisation"] == "internal_standard"
    assert model.choice_["internal_standard"] == "IS 550"


def test_loglog_wins_on_a_power_law_response():
    conc = np.geomspace(10.0, 20000.0, 7)
    X, y, g = campaign(conc, lambda c: 40.0 * c**0.7, noise=1.0)  # c is no polynomial of the area
    model = SelectedUnivariate([NA], normalisations=("none",)).fit(X, WL, y, g)
    assert model.choice_["form"] == "loglog"
    assert set(model.scores_["form"]) == {"linear", "quadratic", "loglog", "weighted", "direct_linear",
                                          "direct_quadratic"}


def test_direct_quadratic_wins_on_a_self_absorbing_response():
    """A line that saturates with concentration, area = 2000 (sqrt(1 + c/500) - 1): the concentration is a quadratic
    of the area, which the direct form fits exactly; the classical quadratic (area on c, inverted) cannot."""
    X, y, g = campaign(CONC, lambda c: 2000.0 * (np.sqrt(1.0 + c / 500.0) - 1.0), noise=1.0)
    model = SelectedUnivariate([NA], normalisations=("none",)).fit(X, WL, y, g)
    assert model.choice_["form"] == "direct_quadratic"
    scores = model.scores_.set_index("form")["inner_rmsep"]
    assert scores["direct_quadratic"] < 0.05 * scores["quadratic"]
    held = g == "s3"
    refit = SelectedUnivariate([NA], normalisations=("none",)).fit(X[~held], WL, y[~held], g[~held])
    assert refit.choice_["form"] == "direct_quadratic"
    assert abs(refit.predict(X[held]).mean() - CONC[3]) < 0.02 * CONC[3]


def test_saturated_line_is_never_a_candidate():
    strong = window("B 600 strong", 600.0)
    weak = window("C 650 weak", 650.0)

    def extra(i, rng):
        return 0.05 * CONC[i] * gauss(650.0)

    X, y, g = campaign(CONC, lambda c: 10.0 * c, extra=extra, clip=30000.0)
    assert X[:, (WL > 599.5) & (WL < 600.5)].max() >= 30000.0  # the strong line really is clipped
    model = SelectedUnivariate([strong, weak], normalisations=("none",), forms=("linear",),
                               saturation=30000.0).fit(X, WL, y, g)
    assert model.choice_["line"] == "C 650 weak"
    rejected = model.scores_[model.scores_["line"] == "B 600 strong"]
    assert len(rejected) == 1 and rejected["inner_rmsep"].isna().all()
    assert rejected["reason"].iloc[0].startswith("saturated")
    unguarded = SelectedUnivariate([strong, weak], normalisations=("none",), forms=("linear",)).fit(X, WL, y, g)
    assert unguarded.scores_["inner_rmsep"].notna().all()  # saturation=None detects nothing


def test_inner_score_equals_a_hand_made_leave_one_sample_out():
    X, y, g = campaign(CONC, lambda c: 0.5 * c, shot_gain_sd=0.15, seed=3)
    model = SelectedUnivariate([NA], normalisations=("none",), forms=("linear", "quadratic")).fit(X, WL, y, g)
    area = line_features(X, WL, [NA])[feature_column(NA, "area")].to_numpy()
    for degree, form in ((1, "linear"), (2, "quadratic")):
        err = []
        for s in np.unique(g):
            tr = g != s
            pred = UnivariateCalibration(degree).fit(area[tr], y[tr], groups=g[tr]).predict(area[~tr])
            err.append(pred.mean() - y[~tr][0])
        expected = np.sqrt(np.mean(np.square(err)))
        got = model.scores_.set_index("form").loc[form, "inner_rmsep"]
        assert got == pytest.approx(expected, rel=1e-9)


def test_weighted_form_is_least_squares_with_weights_one_over_c_squared():
    conc = np.array([1.0, 2.0, 4.0, 100.0])
    value = np.array([10.0, 21.0, 40.0, 2000.0])
    sw = 1.0 / conc  # sqrt of the weights 1/c^2
    b0, b1 = np.linalg.lstsq(np.column_stack([sw, conc * sw]), value * sw, rcond=None)[0]
    params = fit_curve("weighted", value, conc)
    assert params["coef"] == pytest.approx([b1, b0], rel=1e-9)
    assert fit_curve("linear", value, conc)["coef"][0] != pytest.approx(b1, rel=1e-3)
    assert predict_curve("weighted", params, np.array([b0 + 3.0 * b1]))[0] == pytest.approx(3.0)


def test_direct_forms_regress_concentration_on_the_value():
    value = np.array([10.0, 21.0, 40.0, 75.0, 130.0])
    conc = np.array([1.0, 2.0, 4.0, 8.0, 15.0])
    b1, b0 = np.polyfit(value, conc, 1)
    lin = fit_curve("direct_linear", value, conc)
    assert lin["coef"] == pytest.approx([b1, b0], rel=1e-9)
    assert predict_curve("direct_linear", lin, np.array([50.0]))[0] == pytest.approx(b0 + 50.0 * b1)
    exact = 0.002 * value**2 + 0.05 * value + 0.3  # a concentration that is a quadratic of the value
    quad = fit_curve("direct_quadratic", value, exact)
    assert quad["coef"] == pytest.approx([0.002, 0.05, 0.3], rel=1e-6)
    np.testing.assert_allclose(predict_curve("direct_quadratic", quad, np.array([0.0, 200.0])),
                               [0.3, 0.002 * 200.0**2 + 0.05 * 200.0 + 0.3], rtol=1e-9)
    with pytest.raises(ValueError, match="direct_quadratic calibration: too few distinct values"):
        fit_curve("direct_quadratic", np.array([5.0, 5.0, 7.0]), np.array([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="direct_linear calibration: too few distinct concentrations"):
        fit_curve("direct_linear", np.array([1.0, 2.0, 3.0]), np.array([4.0, 4.0, 4.0]))


def test_round_trip_through_json_predicts_identically():
    gain = np.array([0.6, 1.4, 0.8, 1.2, 0.7, 1.3, 1.0])
    X, y, g = campaign(CONC, lambda c: 0.5 * c, sample_gain=gain)
    model = SelectedUnivariate([NA], internal_standards=[IS]).fit(X, WL, y, g)
    restored = SelectedUnivariate.from_dict(json.loads(json.dumps(model.to_dict())))
    np.testing.assert_allclose(restored.predict(X), model.predict(X), rtol=1e-12)
    assert restored.choice_ == model.choice_


def test_clear_errors():
    X, y, g = campaign(CONC[:4], lambda c: 0.5 * c)
    with pytest.raises(ValueError, match="unknown calibration form 'cubic'"):
        SelectedUnivariate([NA], forms=("cubic",))
    with pytest.raises(ValueError, match="normalisations: unknown option 'max'"):
        SelectedUnivariate([NA], normalisations=("max",))
    with pytest.raises(ValueError, match="at least 3 samples"):
        SelectedUnivariate([NA]).fit(X[g != "s0"][:16], WL, y[g != "s0"][:16], g[g != "s0"][:16])
    with pytest.raises(ValueError, match="saturation_margin"):
        SelectedUnivariate([NA], saturation=100.0, saturation_margin=1.5)
    with pytest.raises(RuntimeError, match="before fit"):
        SelectedUnivariate([NA]).predict(X)
    model = SelectedUnivariate([NA], internal_standards=[IS]).fit(X, WL, y, g)
    with pytest.raises(ValueError, match="same wavelength grid"):
        model.predict(X[:, :-1])
    with pytest.raises(ValueError, match="'kind' must be 'SelectedUnivariate'"):
        SelectedUnivariate.from_dict({"kind": "SelectedPLS"})


def test_default_internal_standards_off_the_grid_are_rejected_with_a_reason():
    X, y, g = campaign(CONC, lambda c: 0.5 * c)
    model = SelectedUnivariate([NA], normalisations=("none", "internal_standard"), forms=("linear",)).fit(X, WL, y, g)
    rejected = model.scores_[model.scores_["normalisation"] == "internal_standard"]
    assert len(rejected) == 8 and rejected["reason"].str.startswith("outside the grid").all()
    assert model.choice_["normalisation"] == "none"
