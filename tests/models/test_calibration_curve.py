"""The concentration as a curve on one predicted line area (calibration_fit "curve"): the selection on known
curves, its refusals, and a trained network whose primary output is exactly that curve."""

from __future__ import annotations

import numpy as np
import pytest

from libs_pipeline.models import load_model, save_model, train_model
from libs_pipeline.models.calibration_curve import choose_calibration_curve, per_sample_means

ROI = {"roi": "analyte", "val_fraction": 0.0}


def test_a_curved_response_gets_the_quadratic_on_the_informative_line():
    c = np.array([0.1, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0])
    informative = np.sqrt(c) * 10.0  # c = a^2 / 100: a direct quadratic, exactly
    noise = np.random.default_rng(0).normal(size=c.size)
    curve = choose_calibration_curve(np.column_stack([noise, informative]), c, ["noise", "bent"])
    assert (curve.task, curve.task_name, curve.form, curve.n_samples) == (1, "bent", "direct_quadratic", 7)
    np.testing.assert_allclose(curve.coef, [0.01, 0.0, 0.0], atol=1e-10)
    assert curve.inner_rmsep < 1e-9
    assert curve.to_dict()["form"] == "direct_quadratic"


def test_a_straight_response_keeps_the_linear_form():
    c = np.array([0.1, 0.5, 1.0, 2.0, 3.0, 4.0])
    area = 2.0 * c + 1.0 + np.array([0.01, -0.02, 0.015, -0.01, 0.02, -0.015])
    curve = choose_calibration_curve(area[:, None], c, ["line"])
    assert curve.form == "direct_linear" and len(curve.coef) == 2
    assert curve.coef[0] == pytest.approx(0.5, rel=0.02)


def test_too_few_samples_or_bad_shapes_are_refused_with_the_reason():
    with pytest.raises(ValueError, match=r"needs >= 4 labelled training samples, got 3"):
        choose_calibration_curve(np.array([[1.0], [2.0], [3.0]]), np.array([1.0, 2.0, 3.0]), ["line"])
    with pytest.raises(ValueError, match=r"values must be \(n_samples=3, n_tasks=2\)"):
        choose_calibration_curve(np.ones((3, 1)), np.ones(3), ["a", "b"])
    with pytest.raises(ValueError, match="no line and form could be fitted"):
        choose_calibration_curve(np.ones((5, 1)), np.arange(5.0), ["flat"])


def test_per_sample_means_group_rows_by_sample():
    outputs = np.array([[1.0, 10.0], [3.0, 30.0], [5.0, 50.0]])
    means, y = per_sample_means(outputs, np.array([1.0, 3.0, 7.0]), np.array(["b", "b", "a"]))
    np.testing.assert_array_equal(means, [[5.0, 50.0], [2.0, 20.0]])  # sorted ids: a, b
    np.testing.assert_array_equal(y, [7.0, 2.0])


def test_a_trained_curve_network_predicts_exactly_its_curve_and_survives_a_round_trip(toy_ds, fast_config, tmp_path):
    config = fast_config.model_copy(update={**ROI, "primary_head": "auxiliary", "max_steps": 120,
                                            "normalisation": "none", "calibration_fit": "curve"})
    model = train_model([toy_ds], config)
    record = model.metrics["calibration_curve"]
    assert record["form"] in ("direct_linear", "direct_quadratic") and record["n_samples"] == 6
    x, y = toy_ds["intensity"].values, toy_ds["Cu"].values
    pred = model.predict(x)
    assert np.corrcoef(pred["Cu"], y)[0, 1] > 0.95
    # the primary is a polynomial of that one predicted area (the scaler is affine here: so in raw units too)
    area = pred[record["task"]]
    design = np.column_stack([area ** 2, area, np.ones_like(area)])[:, (0 if record["form"] == "direct_quadratic" else 1):]
    coef, *_ = np.linalg.lstsq(design, pred["Cu"], rcond=None)
    np.testing.assert_allclose(design @ coef, pred["Cu"], rtol=1e-4, atol=1e-5)
    reloaded = load_model(save_model(model, tmp_path / "m"))
    np.testing.assert_allclose(reloaded.predict(x[:7])["Cu"], pred["Cu"][:7], rtol=1e-5, atol=1e-6)
    assert reloaded.network.spec.quadratic_calibration


def test_too_few_samples_keep_the_least_squares_calibration_and_say_why(toy_ds, fast_config):
    three = toy_ds.where(toy_ds["sample_id"].isin(["S00", "S01", "S02"]), drop=True)
    config = fast_config.model_copy(update={**ROI, "primary_head": "auxiliary", "max_steps": 5,
                                            "normalisation": "none", "calibration_fit": "curve"})
    record = train_model([three], config).metrics["calibration_curve"]
    assert record == {"form": "least_squares",
                      "reason": "calibration curve: needs >= 4 labelled training samples, got 3"}
    with pytest.raises(ValueError, match="calibration_fit 'curve' needs primary_head 'auxiliary'"):
        train_model([toy_ds], config.model_copy(update={"primary_head": "features", "max_steps": 2}))
