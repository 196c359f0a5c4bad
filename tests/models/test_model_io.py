"""save_model / load_model: identical predictions, weights-only loading, corrupt directories fail clearly."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch

from libs_pipeline.models import ModelLoadError, load_model, save_model, train_model
from libs_pipeline.models.model_io import MODEL_FILES


class NotAWeight:
    """A custom object: torch.load(weights_only=True) must refuse to unpickle it."""

    def __init__(self) -> None:
        self.payload = "arbitrary code could run here"


@pytest.fixture(scope="module")
def trained(toy_ds):
    from libs_pipeline.config import TrainingConfig

    torch.set_num_threads(1)
    config = TrainingConfig(
        analyte="Cu", augmentation=False, max_steps=15, eval_every=5, batch_size=16, progress_bar=False,
        device="cpu", stem_channels=4, block_channels=[4, 4], dense_units=16, head_units=8, dropout=0.2,
    )
    return train_model([toy_ds], config)


@pytest.fixture
def saved(trained, tmp_path):
    return save_model(trained, tmp_path / "model")


def test_round_trip_gives_identical_predictions_and_metadata(trained, saved, toy_ds):
    assert sorted(p.name for p in saved.iterdir()) == sorted(MODEL_FILES)
    loaded = load_model(saved)
    x = toy_ds["intensity"].values
    a, b = trained.predict(x), loaded.predict(x)
    assert list(a) == list(b) == trained.task_names
    for task in a:
        np.testing.assert_array_equal(a[task], b[task])
    ma, sa = trained.predict_with_uncertainty(x[:5], n_samples=5, seed=1)
    mb, sb = loaded.predict_with_uncertainty(x[:5], n_samples=5, seed=1)
    np.testing.assert_array_equal(sa["Cu"], sb["Cu"])
    np.testing.assert_array_equal(loaded.wavelength, trained.wavelength)
    assert loaded.lines == trained.lines and loaded.lines[0]["name"] == "Cu I 324.75"
    assert loaded.config == trained.config
    assert loaded.metrics["task_names"] == trained.task_names
    assert loaded.data_versions[0]["fingerprint"] == trained.data_versions[0]["fingerprint"]
    config = json.loads((saved / "config.json").read_text())
    assert config["task_names"] == trained.task_names and len(config["wavelength"]) == 512
    norm = json.loads((saved / "normalisation.json").read_text())
    assert norm["input"]["method"] == "total" and norm["targets"]["per_total_tasks"] == trained.task_names[1:]


def test_loading_uses_weights_only(saved, monkeypatch):
    seen = {}
    original = torch.load

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    load_model(saved)
    assert seen.get("weights_only") is True


def _rewrite_weights(directory, data: bytes) -> None:
    """Replace weights.pt and record its hash, as an attacker who also edits config.json would."""
    import hashlib

    (directory / "weights.pt").write_bytes(data)
    config = json.loads((directory / "config.json").read_text())
    config["weights_sha256"] = hashlib.sha256(data).hexdigest()
    (directory / "config.json").write_text(json.dumps(config))


def test_a_pickled_object_in_the_weights_is_refused(saved):
    buf = io.BytesIO()
    torch.save({"evil": NotAWeight()}, buf)
    _rewrite_weights(saved, buf.getvalue())
    with pytest.raises(ModelLoadError, match=r"weights\.pt: cannot be read as a weights-only state_dict"):
        load_model(saved)


def test_tampered_and_truncated_weights_fail_with_a_clear_error(saved):
    data = (saved / "weights.pt").read_bytes()
    tampered = bytearray(data)
    tampered[len(data) // 2] ^= 0xFF
    (saved / "weights.pt").write_bytes(bytes(tampered))
    with pytest.raises(ModelLoadError, match=r"weights\.pt: sha256 .* does not match .* modified or truncated"):
        load_model(saved)
    (saved / "weights.pt").write_bytes(data[: len(data) // 3])
    with pytest.raises(ModelLoadError, match="modified or truncated"):
        load_model(saved)
    # even with a matching hash, a truncated zip is not a state_dict
    _rewrite_weights(saved, data[: len(data) // 3])
    with pytest.raises(ModelLoadError, match="cannot be read as a weights-only state_dict"):
        load_model(saved)


def test_weights_of_another_network_are_rejected(saved):
    state = torch.load(io.BytesIO((saved / "weights.pt").read_bytes()), weights_only=True)
    state.pop(next(iter(state)))
    buf = io.BytesIO()
    torch.save(state, buf)
    _rewrite_weights(saved, buf.getvalue())
    with pytest.raises(ModelLoadError, match="does not fit the network"):
        load_model(saved)


def test_incomplete_or_invalid_directories(saved, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model(tmp_path / "nowhere")
    (saved / "metrics.json").unlink()
    with pytest.raises(ModelLoadError, match=r"missing \['metrics.json'\]"):
        load_model(saved)
    (saved / "metrics.json").write_text("{}")
    (saved / "normalisation.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="normalisation.json: not valid JSON"):
        load_model(saved)
    config = json.loads((saved / "config.json").read_text())
    config["format_version"] = 99
    (saved / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="format_version 99 is not supported"):
        load_model(saved)


def test_save_refuses_to_overwrite_unless_asked(trained, saved):
    before = (saved / "weights.pt").read_bytes()
    with pytest.raises(FileExistsError, match="already exists"):
        save_model(trained, saved)
    assert save_model(trained, saved, overwrite=True) == saved
    assert (saved / "weights.pt").read_bytes() == before
    assert not [p for p in saved.parent.iterdir() if p.name.startswith(".")]  # no temporary left behind
