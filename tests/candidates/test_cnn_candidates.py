"""CNN candidates: the small-campaign recipe trains, an ensemble averages its members and survives a round trip."""

from __future__ import annotations

import numpy as np
import pytest

from libs_pipeline.candidates import CNNCandidate, load_servable, save_servable, servable_kind
from libs_pipeline.candidates.ensemble import EnsembleModel, load_ensemble
from libs_pipeline.registry import ModelRegistry
from libs_pipeline.spectra.dataset import select_samples
from libs_pipeline.testing import toy_campaign

TINY = {"max_steps": 20, "batch_size": 16, "stem_channels": 2, "block_channels": [2], "dense_units": 8,
        "head_units": 4}


@pytest.fixture(scope="module")
def toy():
    return toy_campaign(n_samples=5, n_shots=6, seed=11)


@pytest.fixture(scope="module")
def fitted(toy):
    train = select_samples(toy, ["S00", "S01", "S02", "S04"])
    return CNNCandidate("multitask_aug", TINY, per_sample=4, seed=3, n_networks=2).fit(train, "Cu")


def test_recipe_and_ensemble(fitted):
    model = fitted.model
    assert isinstance(model, EnsembleModel) and len(model.members) == 2
    assert fitted.train_samples == ["S00", "S01", "S02", "S04"]
    config = model.members[0].config
    assert (config.roi, config.normalisation, config.primary_head, config.val_fraction) == (
        "analyte", "background", "auxiliary", 0.0)
    assert [m.config.seed for m in model.members] == [3, 4]  # one seed per member
    assert fitted.details["steps"] == [20, 20] and fitted.details["per_sample"] == 4
    assert model.task_names[0] == "Cu" and "Cu I 324.75:area" in model.task_names


def test_ensemble_mean_and_spread(fitted, toy):
    x = toy["intensity"].values[:6]
    members = [m.predict(x)["Cu"] for m in fitted.model.members]
    mean, std = fitted.model.predict_with_uncertainty(x)
    np.testing.assert_allclose(fitted.model.predict(x)["Cu"], np.mean(members, axis=0), rtol=1e-6)
    np.testing.assert_allclose(std["Cu"], np.std(members, axis=0, ddof=1), rtol=1e-6)
    np.testing.assert_allclose(mean["Cu"], np.mean(members, axis=0), rtol=1e-6)


def test_ensemble_round_trip_and_registry(tmp_path, fitted, toy):
    path = save_servable(fitted.model, tmp_path / "staged" / "ens")
    assert servable_kind(path) == "ensemble"
    loaded = load_servable(path)
    x = toy["intensity"].values
    np.testing.assert_array_equal(loaded.predict(x)["Cu"], fitted.model.predict(x)["Cu"])
    version = ModelRegistry(tmp_path).register("toy", path, {"data": {}, "seeds": {}, "metrics": {}})
    served = ModelRegistry(tmp_path).path("toy", version)
    assert {"ensemble.json", "member-0/weights.pt", "member-1/weights.pt"} <= set(
        ModelRegistry(tmp_path).manifest("toy", version)["files"])
    np.testing.assert_array_equal(load_ensemble(served).predict(x)["Cu"], fitted.model.predict(x)["Cu"])
    (served / "ensemble.json").write_text("{}")
    with pytest.raises(ValueError, match="not a libs-pipeline ensemble"):
        load_ensemble(served)


def test_members_must_agree(fitted):
    other = fitted.model.members[1]
    other_wl = type(other)(**{**other.__dict__, "wavelength": other.wavelength + 1.0})
    with pytest.raises(ValueError, match="another wavelength grid"):
        EnsembleModel([fitted.model.members[0], other_wl])
    with pytest.raises(ValueError, match="at least one member"):
        EnsembleModel([])
