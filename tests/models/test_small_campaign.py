"""Few-sample options: saturation mask, region-of-interest input, background normalisation, exact step
budgets, inner-LOSO budget selection and a pretraining phase (toy campaign, tiny networks)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from libs_pipeline.features.lines import default_lines
from libs_pipeline.models import load_model, save_model, train_model
from libs_pipeline.models.inputs import analyte_windows, background_channels, window_channels
from libs_pipeline.models.network import fit_pool
from libs_pipeline.models.step_budget import inner_loso_errors, select_step_budget
from libs_pipeline.testing import toy_campaign
from libs_pipeline.testing.stores import write_zarr

ROI = {"roi": "analyte", "val_fraction": 0.0}


def test_fit_pool_keeps_full_spectra_and_shrinks_for_short_inputs():
    assert fit_pool(8011, 3, 4) == 4
    assert fit_pool(512, 3, 4) == 4  # 512 // 64 = 8 positions: unchanged
    assert fit_pool(92, 3, 4) == 2  # 92 // 8 = 11 positions
    assert fit_pool(39, 3, 4) == 1


def test_saturated_channels_are_zeroed_in_training_and_prediction(toy_ds, fast_config, tmp_path):
    config = fast_config.model_copy(update={"saturation": 10000.0, "max_steps": 5, "val_fraction": 0.0})
    model = train_model([toy_ds], config)
    x = toy_ds["intensity"].values
    expected = np.flatnonzero(x.max(axis=0) >= 10000.0 * 0.99)
    assert expected.size > 0
    np.testing.assert_array_equal(model.normaliser.masked, expected)
    assert model.metrics["saturated_inputs"] == expected.size
    inputs = model.normaliser.transform(x)
    assert np.all(inputs[:, expected] == 0.0) and np.any(inputs != 0.0)
    # a test spectrum far above saturation in those channels still gives 0 there
    bright = x[:1].copy()
    bright[0, expected] = 1e6
    np.testing.assert_array_equal(model.normaliser.transform(bright)[0, expected], np.zeros(expected.size))
    reloaded = load_model(save_model(model, tmp_path / "m"))
    np.testing.assert_array_equal(reloaded.normaliser.masked, expected)
    np.testing.assert_allclose(reloaded.predict(x[:5])["Cu"], model.predict(x[:5])["Cu"], rtol=1e-6)


def test_input_windows_select_channels_and_predict_takes_full_spectra(toy_ds, fast_config, tmp_path):
    config = fast_config.model_copy(update={"input_windows": [(322.0, 330.0), (390.0, 398.0)], "max_steps": 20,
                                            "val_fraction": 0.0})
    model = train_model([toy_ds], config)
    wl = toy_ds["wavelength"].values
    expected = np.flatnonzero(((wl >= 322.0) & (wl <= 330.0)) | ((wl >= 390.0) & (wl <= 398.0)))
    np.testing.assert_array_equal(model.normaliser.channels, expected)
    assert model.network.spec.n_channels == expected.size == model.metrics["input_channels"]
    x = toy_ds["intensity"].values
    pred = model.predict(x)
    reloaded = load_model(save_model(model, tmp_path / "m"))
    np.testing.assert_array_equal(reloaded.normaliser.channels, expected)
    np.testing.assert_allclose(reloaded.predict(x)["Cu"], pred["Cu"], rtol=1e-6)
    with pytest.raises(ValueError, match=r"input window \(500.0, 510.0\) nm holds no channel"):
        train_model([toy_ds], config.model_copy(update={"input_windows": [(500.0, 510.0)]}))


def test_outside_channels_do_not_matter_without_total_normalisation(toy_ds, fast_config):
    config = fast_config.model_copy(update={**ROI, "normalisation": "none", "max_steps": 5})
    model = train_model([toy_ds], config)
    x = toy_ds["intensity"].values[:8]
    outside = np.setdiff1d(np.arange(x.shape[1]), model.normaliser.channels)
    other = x.copy()
    other[:, outside] *= 3.0
    np.testing.assert_array_equal(model.predict(other)["Cu"], model.predict(x)["Cu"])


def test_analyte_roi_is_the_widened_line_spans_and_trains_a_short_network(toy_ds, fast_config):
    config = fast_config.model_copy(update={**ROI, "roi_margin_nm": 1.0, "max_steps": 150, "normalisation": "background",
                                            "log_primary": True, "block_channels": [4, 8], "dense_units": 16})
    model = train_model([toy_ds], config)
    wl = toy_ds["wavelength"].values
    lines = default_lines("Cu")
    expected = window_channels(wl, analyte_windows(lines, 1.0))
    np.testing.assert_array_equal(model.normaliser.channels, expected)
    assert 30 <= expected.size <= 50 and model.metrics["pool"] == fit_pool(expected.size, 3, 4) == 1
    # background normalisation divides by the mean of the lines' background channels
    ref = background_channels(wl, lines)
    np.testing.assert_array_equal(model.normaliser.reference, ref)
    x = toy_ds["intensity"].values
    np.testing.assert_allclose(model.normaliser.divisors(x), np.clip(x[:, ref], 0, None).mean(axis=1), rtol=1e-5)
    pred = model.predict(x)
    y = toy_ds["Cu"].values
    assert np.all(pred["Cu"] > 0)  # log-scale primary: positive by construction
    assert np.corrcoef(pred["Cu"], y)[0, 1] > 0.95


def test_auxiliary_primary_head_with_roi_and_least_squares_calibration(toy_ds, fast_config):
    config = fast_config.model_copy(update={**ROI, "primary_head": "auxiliary", "max_steps": 150, "normalisation": "none",
                                            "calibration_fit": "least_squares"})
    model = train_model([toy_ds], config)
    x, y = toy_ds["intensity"].values, toy_ds["Cu"].values
    pred = model.predict(x)
    assert np.corrcoef(pred["Cu"], y)[0, 1] > 0.95
    # least squares with intercept on the training rows: the mean prediction equals the mean label
    assert np.mean(pred["Cu"]) == pytest.approx(np.mean(y), rel=1e-4)
    # and the primary is exactly that affine map of the predicted line areas
    areas = np.column_stack([pred[t] for t in model.task_names[1:]])
    design = np.column_stack([areas, np.ones(len(y))])
    coef, *_ = np.linalg.lstsq(design, pred["Cu"], rcond=None)
    np.testing.assert_allclose(design @ coef, pred["Cu"], rtol=1e-4)
    with pytest.raises(ValueError, match="calibration_fit 'least_squares' needs primary_head 'auxiliary'"):
        train_model([toy_ds], config.model_copy(update={"primary_head": "features", "max_steps": 2}))


def test_no_validation_means_exactly_max_steps(toy_ds, fast_config):
    config = fast_config.model_copy(update={**ROI, "max_steps": 37, "eval_every": 5, "patience": 1})
    m = train_model([toy_ds], config).metrics
    assert m["steps"] == 37 and m["best_step"] == 37 and m["val_samples"] == []
    assert [h["step"] for h in m["history"]][-1] == 37


def test_select_step_budget_uses_inner_leave_one_sample_out(toy_ds, fast_config):
    config = fast_config.model_copy(update={**ROI, "normalisation": "none", "primary_head": "auxiliary",
                                            "dense_units": 16})
    # the caller's held-out samples (S00, S05) never enter; inner folds hold out each remaining sample once
    train = toy_ds.where(toy_ds["sample_id"].isin(["S01", "S02", "S03", "S04"]), drop=True)
    errors = inner_loso_errors([train], config, budgets=(1, 80))
    assert set(errors) == {1, 80} and sorted(errors[1]) == ["S01", "S02", "S03", "S04"]
    rmse = {b: np.sqrt(np.mean(np.square(list(e.values())))) for b, e in errors.items()}
    assert rmse[80] < rmse[1]
    assert select_step_budget(config, train, budgets=(1, 80)) == 80
    with pytest.raises(ValueError, match="at least 3 labelled training samples"):
        select_step_budget(config, toy_ds.where(toy_ds["sample_id"].isin(["S00", "S01"]), drop=True), budgets=(1, 2))


def test_pretraining_phase_runs_then_fine_tunes(toy_ds, fast_config, tmp_path):
    rng = np.random.default_rng(3)
    sim = toy_campaign(n_samples=8, seed=7, cu_range=(0.05, 6.0))
    n = sim.sizes["spectrum"]
    # simulated spectra marked synthetic (no measured parent in the store): pretraining still uses them all
    sim = sim.assign(T_K=("spectrum", rng.normal(9000.0, 500.0, n)), synthetic=("spectrum", np.ones(n, bool)),
                     source_sample=("spectrum", sim["sample_id"].values))
    sim_uri = write_zarr(sim, tmp_path / "sim.zarr")
    base = fast_config.model_copy(update={**ROI, "max_steps": 10, "eval_every": 5})
    plain = train_model([toy_ds], base)
    pre = train_model([toy_ds], base.model_copy(update={"pretrain_uris": [sim_uri], "pretrain_steps": 15}))
    assert plain.metrics["pretrain_steps"] == 0
    assert pre.metrics["pretrain_steps"] == 15 and pre.metrics["n_pretrain_spectra"] == 80
    assert pre.metrics["steps"] == 10 and [h["step"] for h in pre.metrics["pretrain_history"]] == [5, 10, 15]
    assert pre.task_names[-1] == "T_K" and "T_K" not in plain.task_names
    # T_K exists only in the pretraining data: its scaling comes from there
    j = pre.task_names.index("T_K")
    assert pre.scaler.mean[j] == pytest.approx(sim["T_K"].values.mean())
    a, b = plain.network.state_dict(), pre.network.state_dict()
    shared = [k for k in a if k.startswith("trunk") and a[k].is_floating_point()]
    assert shared and any(not torch.equal(a[k], b[k]) for k in shared)
    with pytest.raises(ValueError, match="pretraining needs both pretrain_uris and pretrain_steps"):
        train_model([toy_ds], base.model_copy(update={"pretrain_steps": 5}))
