"""Trust calibration: line calibrations, residual scales, threshold, trust.json round trip and its errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from libs_pipeline.config import TrustConfig
from libs_pipeline.trust.calibration import TRUST_FILE, load_trust, save_trust
from libs_pipeline.trust.fitting import calibrate_threshold, fit_trust_calibration, line_label, sample_folds
from libs_pipeline.trust.scales import LineCalibration, ResidualScale


def test_line_calibration_recovers_linear_relation_from_sample_means():
    rng = np.random.default_rng(0)
    conc = np.repeat([0.5, 1.0, 2.0, 4.0], 25)
    area = (conc - 0.1) / 0.002 * rng.normal(1.0, 0.08, conc.size)  # noisy regressor (shot fluctuation)
    groups = np.repeat(["a", "b", "c", "d"], 25)
    cal = LineCalibration.fit(area, conc, groups)
    assert cal.slope == pytest.approx(0.002, rel=0.05)
    assert cal.intercept == pytest.approx(0.1, abs=0.05)
    np.testing.assert_allclose(cal.predict(np.array([0.0, 1000.0])), [cal.intercept, cal.intercept + 1000 * cal.slope])


def test_line_calibration_rejects_degenerate_data():
    with pytest.raises(ValueError, match="need >= 2 distinct areas"):
        LineCalibration.fit(np.ones(10), np.arange(10.0))
    with pytest.raises(ValueError, match="got 1 points"):
        LineCalibration.fit(np.array([1.0, np.nan]), np.array([1.0, 2.0]))


def test_residual_scale_recovers_heteroscedastic_noise_and_standardises():
    rng = np.random.default_rng(1)
    p = rng.uniform(0, 1000, 4000)
    r = rng.normal(0, 1, p.size) * np.sqrt(20.0**2 + (0.05 * p) ** 2)
    scale = ResidualScale.fit(r, p)
    assert scale.a == pytest.approx(20.0, rel=0.15)
    assert scale.b == pytest.approx(0.05, rel=0.1)
    z = scale.standardise(r, p)
    assert abs(np.median(z)) < 0.1
    assert np.mean(np.abs(z) > 1.96) == pytest.approx(0.05, abs=0.015)
    # the residual of a prediction outside the validation range uses the scale at the range's edge
    assert scale.scale(np.array([1e6]))[0] == pytest.approx(scale.scale(np.array([scale.p_high]))[0])


def test_residual_scale_ignores_gross_outliers():
    rng = np.random.default_rng(2)
    p = rng.uniform(0, 10, 500)
    r = rng.normal(0, 1.0, p.size)
    r[:10] = 1e4
    scale = ResidualScale.fit(r, p)
    assert scale.a == pytest.approx(1.0, rel=0.15)


def test_residual_scale_errors():
    with pytest.raises(ValueError, match="aux:X: need >= 5 finite"):
        ResidualScale.fit(np.array([1.0, 2.0, np.nan]), np.ones(3), name="aux:X")
    with pytest.raises(ValueError, match="all zero"):
        ResidualScale.fit(np.zeros(10), np.ones(10))


def test_calibrate_threshold_is_the_upper_quantile():
    scores = np.arange(1, 101, dtype=float)
    t = calibrate_threshold(scores, 0.05)
    assert np.mean(scores > t) == pytest.approx(0.05, abs=0.01)
    with pytest.raises(ValueError, match=">= 20 finite validation scores"):
        calibrate_threshold(np.ones(5), 0.05)
    with pytest.raises(ValueError, match="target_false_flag_rate"):
        calibrate_threshold(scores, 1.5)


def test_line_label_from_window_dict_and_name(cu_lines):
    assert line_label(cu_lines[1]) == ("Cu I 327.40", "Cu I 327.40")
    assert line_label(cu_lines[1].to_dict()) == ("Cu I 327.40", "Cu I 327.40")
    assert line_label({"name": "L1", "element": "Cu", "center_nm": 327.396}) == ("L1", "Cu 327.4 nm (L1)")
    assert line_label("plain") == ("plain", "plain")


def test_fitted_calibration_round_trips_through_trust_json(trust_setup, tmp_path):
    _, cal, _, _ = trust_setup
    path = save_trust(cal, tmp_path)
    assert path == tmp_path / TRUST_FILE
    loaded = load_trust(tmp_path)
    assert loaded.to_dict() == cal.to_dict()
    assert loaded.threshold == cal.threshold > 0
    assert cal.extra["threshold_method"] == "cross-fitted by sample, 5 folds"
    assert cal.extra["out_of_sample_flag_rate"] == pytest.approx(0.05, abs=0.005)
    assert cal.validation_flag_rate <= 0.06  # in-sample scores are optimistic, so at most about the target
    assert cal.n_validation_spectra == 480 and cal.n_validation_samples == 12
    assert not list(tmp_path.glob(".*tmp"))  # atomic write left no temporary file


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("threshold"), "missing field 'threshold'"),
        (lambda d: d.update(schema_version="9"), "'schema_version' is '9'"),
        (lambda d: d.update(threshold=-1.0), "field 'threshold' must be a positive"),
        (lambda d: d.update(combine="mean"), "field 'combine'"),
        (lambda d: d["aux_scales"]["Cu I 327.40"].update(spread=None), r"aux_scales.Cu I 327.40.spread"),
        (lambda d: d["line_calibrations"].pop("Cu I 324.75"), r"line_calibrations.Cu I 324.75' is missing"),
        (lambda d: d.update(lines=[]), "'lines' is empty"),
    ],
)
def test_invalid_trust_json_names_file_and_field(trust_setup, tmp_path, mutate, message):
    d = trust_setup[1].to_dict()
    mutate(d)
    (tmp_path / TRUST_FILE).write_text(json.dumps(d))
    with pytest.raises(ValueError, match=message) as err:
        load_trust(tmp_path)
    assert str(tmp_path / TRUST_FILE) in str(err.value)


def test_load_trust_missing_and_broken_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no trust calibration"):
        load_trust(tmp_path)
    (tmp_path / TRUST_FILE).write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_trust(tmp_path)
    (tmp_path / TRUST_FILE).write_text("[1, 2]")
    with pytest.raises(ValueError, match="expected a JSON object"):
        load_trust(tmp_path / TRUST_FILE)


def test_fit_trust_calibration_input_errors(cu_lines):
    n = 50
    rng = np.random.default_rng(3)
    areas = pd.DataFrame({f"{ln.name}:area": rng.uniform(100, 1000, n) for ln in cu_lines})
    y = rng.uniform(0.1, 5, n)
    preds = {"Cu": y, **{c: areas[c].to_numpy() for c in areas.columns}}
    with pytest.raises(ValueError, match="no analyte task 'Cu'"):
        fit_trust_calibration("Cu", areas, y, {k: v for k, v in preds.items() if k != "Cu"}, areas, cu_lines)
    with pytest.raises(ValueError, match=r"val_measured has no column 'Cu I 327.40:area'"):
        fit_trust_calibration("Cu", areas, y, preds, areas.drop(columns="Cu I 327.40:area"), cu_lines)
    # a model without area outputs is no error any more: its aux parts are off with the reason
    only_analyte = fit_trust_calibration("Cu", areas, y, {"Cu": y}, areas, cu_lines)
    assert only_analyte.disabled_parts["aux:Cu I 324.75"] == "model predicts no Cu I 324.75 area"
    with pytest.raises(ValueError, match="train_measured has 50 rows but train_concentration has 3"):
        fit_trust_calibration("Cu", areas, y[:3], preds, areas, cu_lines)
    with pytest.raises(ValueError, match="no lines given"):
        fit_trust_calibration("Cu", areas, y, preds, areas, [])


def test_config_controls_rate_and_combination(trust_setup, cu_lines):
    from libs_pipeline.features.line_features import dataset_line_features

    model, _, train, val = trust_setup
    cal = fit_trust_calibration(
        "Cu",
        dataset_line_features(train, cu_lines),
        train["Cu"].values,
        model.predict(val["intensity"].values),
        dataset_line_features(val, cu_lines),
        cu_lines,
        config=TrustConfig(target_false_flag_rate=0.1, combine="rms"),
    )
    assert cal.combine == "rms" and cal.target_false_flag_rate == 0.1
    # no sample groups given: the threshold is the in-sample quantile
    assert cal.extra["threshold_method"].startswith("in-sample")
    assert cal.validation_flag_rate == pytest.approx(0.1, abs=0.005)
    with pytest.raises(ValueError):
        TrustConfig(target_false_flag_rate=0.0)
    with pytest.raises(ValueError):
        TrustConfig(unknown_field=1)


def test_sample_folds_never_split_a_sample():
    groups = np.repeat(["a", "b", "c", "d", "e", "f", "g"], 3)
    folds = sample_folds(groups, 5)
    assert len(folds) == 5
    assert sorted(np.concatenate(folds).tolist()) == list(range(21))
    for fold in folds:
        for sid in set(groups[fold]):
            assert set(np.flatnonzero(groups == sid)) <= set(fold.tolist())
    assert sample_folds(groups[:9], 5) == []  # 3 samples: too few to cross-fit
    assert len(sample_folds(groups, 10)) == 7
