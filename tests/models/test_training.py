"""train_model on the toy campaign: the loss falls, the variants switch tasks, runs are seeded, MC dropout works."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from libs_pipeline.models import train_model
from libs_pipeline.models.training import select_device


def test_a_tiny_run_lowers_the_loss_and_predicts_every_task(toy_ds, fast_config):
    model = train_model([toy_ds], fast_config.model_copy(update={"val_fraction": 0.0}))
    history = model.metrics["history"]
    assert history[-1]["train_loss"] < 0.5 * history[0]["train_loss"]
    assert model.task_names == ["Cu", "Cu I 324.75:area", "Cu I 327.40:area"]
    assert model.metrics["steps"] == 40 and model.metrics["val_samples"] == []
    pred = model.predict(toy_ds["intensity"].values)
    assert list(pred) == model.task_names
    assert all(v.shape == (60,) and v.dtype == np.float64 for v in pred.values())
    # fitted on its own training data: predictions track the labels
    y = toy_ds["Cu"].values
    assert np.corrcoef(pred["Cu"], y)[0, 1] > 0.9
    assert np.all(pred["Cu I 324.75:area"] > 0)


def test_early_stopping_restores_the_best_validation_weights(toy_ds, fast_config):
    config = fast_config.model_copy(update={"max_steps": 200, "eval_every": 5, "patience": 2, "val_fraction": 0.2})
    model = train_model([toy_ds], config)
    m = model.metrics
    assert m["val_samples"] and not set(m["val_samples"]) & set(m["train_samples"])
    scores = [h["val_rmse_scaled"]["Cu"] for h in m["history"]]
    best = min(scores)
    assert m["history"][int(np.argmin(scores))]["step"] == m["best_step"]
    assert m["steps"] < 200  # stopped early: two evaluations without improvement
    assert scores[-1] > best and scores[-2] > best
    assert set(m["validation"]) == set(model.task_names) and m["validation"]["Cu"]["n"] == 10 * len(m["val_samples"])


def test_single_task_and_plasma_heads(toy_ds, fast_config):
    single = train_model([toy_ds], fast_config.model_copy(update={"multitask": False, "max_steps": 5}))
    assert single.task_names == ["Cu"]
    rng = np.random.default_rng(0)
    with_truth = toy_ds.assign(
        T_K=("spectrum", rng.normal(10000, 300, toy_ds.sizes["spectrum"])),
        n_e_per_m3=("spectrum", rng.lognormal(np.log(1e23), 0.2, toy_ds.sizes["spectrum"])),
    )
    multi = train_model([with_truth], fast_config.model_copy(update={"max_steps": 5}))
    assert multi.task_names[-2:] == ["T_K", "n_e_per_m3"]
    off = train_model([with_truth], fast_config.model_copy(update={"max_steps": 5, "plasma_tasks": False}))
    assert "T_K" not in off.task_names


def test_augmentation_trains_on_synthetic_spectra_of_training_samples_only(toy_zarr, synthetic_uri, fast_config):
    config = fast_config.model_copy(update={"augmentation": True, "max_steps": 5, "val_fraction": 0.34})
    model = train_model([toy_zarr, synthetic_uri], config)
    m = model.metrics
    assert m["n_train_synthetic"] > 0
    assert m["n_train_spectra"] == 10 * len(m["train_samples"]) + m["n_train_synthetic"]
    kinds = {(d["split"], d["n_synthetic"] > 0) for d in model.data_versions}
    assert ("train", True) in kinds and ("val", False) in kinds
    with pytest.raises(ValueError, match="augmentation is on but the training sources hold no synthetic"):
        train_model([toy_zarr], config)


def test_same_seed_same_weights_other_seed_other_weights(toy_ds, fast_config):
    config = fast_config.model_copy(update={"max_steps": 12, "eval_every": 6, "dropout": 0.2})
    a = train_model([toy_ds], config).network.state_dict()
    b = train_model([toy_ds], config).network.state_dict()
    c = train_model([toy_ds], config.model_copy(update={"seed": 1})).network.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())


def test_training_leaves_the_global_torch_rng_alone(toy_ds, fast_config):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train_model([toy_ds], fast_config.model_copy(update={"max_steps": 3}))
    assert torch.equal(torch.rand(3), expected)


def test_mc_dropout_uncertainty_is_seeded_and_positive(toy_ds, fast_config):
    model = train_model([toy_ds], fast_config.model_copy(update={"max_steps": 20, "dropout": 0.3}))
    x = toy_ds["intensity"].values[:7]
    before = model.predict(x)["Cu"]
    mean, std = model.predict_with_uncertainty(x, n_samples=10, seed=4)
    mean2, std2 = model.predict_with_uncertainty(x, n_samples=10, seed=4)
    assert set(mean) == set(std) == set(model.task_names)
    assert all(std[t].shape == (7,) and np.all(std[t] > 0) for t in model.task_names)
    np.testing.assert_array_equal(std["Cu"], std2["Cu"])
    np.testing.assert_array_equal(mean["Cu"], mean2["Cu"])
    # the deterministic prediction is the same before and after MC sampling (dropout switched back off),
    # and differs from the MC mean (which averages dropout-perturbed passes)
    np.testing.assert_array_equal(model.predict(x)["Cu"], before)
    assert not np.array_equal(mean["Cu"], before)
    assert not any(m.training for m in model.network.modules())
    with pytest.raises(ValueError, match="n_samples must be >= 2"):
        model.predict_with_uncertainty(x, n_samples=1)


def test_predict_rejects_the_wrong_grid(toy_ds, fast_config):
    model = train_model([toy_ds], fast_config.model_copy(update={"max_steps": 2}))
    with pytest.raises(ValueError, match=r"does not match the model's wavelength grid of 512 channels"):
        model.predict(np.ones((2, 500), np.float32))
    single = model.predict(toy_ds["intensity"].values[0])
    assert single["Cu"].shape == (1,)


def test_device_selection():
    assert select_device("cpu").type == "cpu"
    assert select_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="cuda"):
            select_device("cuda")


def test_checkpoints_are_state_dicts_loadable_weights_only(toy_ds, fast_config, tmp_path):
    config = fast_config.model_copy(update={"max_steps": 10, "eval_every": 5, "checkpoint_dir": str(tmp_path / "ckpt")})
    model = train_model([toy_ds], config)
    ckpt = torch.load(tmp_path / "ckpt" / "checkpoint.pt", weights_only=True)
    assert set(ckpt) == {"step", "network", "loss"}
    assert int(ckpt["step"]) == model.metrics["best_step"]
    assert set(ckpt["network"]) == set(model.network.state_dict())
    assert "log_vars" in ckpt["loss"]


def test_too_few_training_spectra(toy_ds, fast_config):
    one = toy_ds.isel(spectrum=[0])
    with pytest.raises(ValueError, match="at least 2 spectra"):
        train_model([one], fast_config.model_copy(update={"val_fraction": 0.0}))
