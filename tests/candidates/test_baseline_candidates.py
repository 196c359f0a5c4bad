"""Baseline candidates: fit on a toy campaign, predict, save/load as servable models, refuse bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from libs_pipeline.candidates import (
    BASELINE_FILE,
    BaselineModel,
    PLSCandidate,
    UnivariateCandidate,
    default_candidates,
    load_servable,
    save_servable,
    servable_kind,
)
from libs_pipeline.candidates.families import saturation_level
from libs_pipeline.evaluation.nested import loso_predictions
from libs_pipeline.spectra.dataset import select_samples
from libs_pipeline.testing import toy_campaign


@pytest.fixture(scope="module")
def toy():
    return toy_campaign(n_samples=7, n_shots=6, seed=3)


@pytest.mark.parametrize("candidate", [UnivariateCandidate(), PLSCandidate()], ids=["univariate", "pls"])
def test_fit_predict_and_declared_samples(toy, candidate):
    train = select_samples(toy, ["S00", "S01", "S02", "S04", "S05", "S06"])
    fitted = candidate.fit(train, "Cu")
    assert fitted.train_samples == ["S00", "S01", "S02", "S04", "S05", "S06"]
    pred = fitted.predict_dataset(select_samples(toy, ["S03"]))
    truth = float(toy["Cu"].values[np.asarray(toy["sample_id"].values) == "S03"][0])
    assert pred.shape == (6,)
    assert abs(pred.mean() - truth) < 0.15 * truth  # the toy line is clean: a good calibration is close
    assert fitted.describe()["candidate"] == candidate.name
    assert set(fitted.predict_tasks(select_samples(toy, ["S03"]))) == {"Cu"}


@pytest.mark.parametrize("candidate", [UnivariateCandidate(), PLSCandidate()], ids=["univariate", "pls"])
def test_saved_model_predicts_the_same(tmp_path, toy, candidate):
    fitted = candidate.fit(toy, "Cu")
    path = save_servable(fitted.model, tmp_path / "m")
    assert (path / BASELINE_FILE).is_file()
    assert servable_kind(path) == candidate.kind
    loaded = load_servable(path)
    assert isinstance(loaded, BaselineModel)
    x = toy["intensity"].values
    np.testing.assert_array_equal(loaded.predict(x)["Cu"], fitted.model.predict(x)["Cu"])
    metrics = json.loads((path / "metrics.json").read_text())
    assert metrics["train_samples"] == sorted(set(toy["sample_id"].values.astype(str)))
    assert metrics["val_samples"] == []


def test_wrong_grid_and_bad_files_are_named(tmp_path, toy):
    fitted = UnivariateCandidate().fit(toy, "Cu")
    with pytest.raises(ValueError, match="does not match the univariate model's wavelength grid of 512 channels"):
        fitted.model.predict(np.ones((2, 100)))
    other = toy.isel(wavelength=slice(0, 500))
    with pytest.raises(ValueError, match="differs from the model's"):
        fitted.predict_dataset(other)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / BASELINE_FILE).write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_servable(tmp_path / "bad")
    (tmp_path / "bad" / BASELINE_FILE).write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="not a libs-pipeline baseline model"):
        load_servable(tmp_path / "bad")
    with pytest.raises(FileExistsError, match="not empty"):
        save_servable(fitted.model, tmp_path / "bad")


def test_unlabelled_training_data_is_refused(toy):
    blank = toy.copy()
    blank["Cu"] = blank["Cu"] * np.nan
    with pytest.raises(ValueError, match="no spectrum has a known 'Cu' label"):
        UnivariateCandidate().fit(blank, "Cu")


def test_saturation_from_attrs_or_detected(toy):
    assert saturation_level(toy) is None
    clipped = toy.copy()
    clipped["intensity"] = clipped["intensity"].clip(max=float(np.percentile(toy["intensity"].values, 99.5)))
    level = saturation_level(clipped)
    assert level == pytest.approx(float(np.percentile(toy["intensity"].values, 99.5)), rel=0.01)
    clipped.attrs["saturation_level"] = 1234.0
    assert saturation_level(clipped) == 1234.0


def test_candidates_by_name_and_unknown_names():
    made = default_candidates(["univariate", "pls", "multitask_aug"], per_sample=10)
    assert list(made) == ["univariate", "pls", "multitask_aug"]
    assert made["multitask_aug"].per_sample == 10
    with pytest.raises(ValueError, match="unknown candidate"):
        default_candidates(["lasso"])


def test_loso_with_the_one_evaluator(toy):
    result = loso_predictions(toy, "Cu", UnivariateCandidate())
    assert np.isfinite(result.predictions).all()
    assert result.metrics()["rmsep_sample"] < 0.5
    for held_out, fold in result.folds.items():
        assert held_out not in fold.train_samples
