"""Held-out split, config hash, training manifest and provenance helpers."""

from __future__ import annotations

import pytest

from libs_pipeline.config import RecalibrationConfig
from libs_pipeline.registry import recalibration_config_hash, training_manifest
from libs_pipeline.spectra.sample_splits import heldout_samples
from libs_pipeline.config import config_hash
from libs_pipeline.registry.provenance import GIT_SHA_ENV, code_version, current_flow_run_id


def test_heldout_assignment_is_stable_when_samples_are_added():
    ids = [f"S{i:03d}" for i in range(200)]
    held = heldout_samples(ids, 0.25, seed=3)
    assert 30 < len(held) < 70  # ~50 expected
    assert heldout_samples(list(reversed(ids)), 0.25, seed=3) == held[::-1]  # order follows the input
    more = heldout_samples(ids + [f"N{i}" for i in range(50)], 0.25, seed=3)
    assert set(held) <= set(more) and not set(more) - set(held) - {f"N{i}" for i in range(50)}
    assert set(heldout_samples(ids, 0.25, seed=4)) != set(held)


def test_heldout_bounds_on_tiny_sets():
    for seed in range(20):
        held = heldout_samples(["a", "b", "c", "d"], 0.3, seed=seed)
        assert 1 <= len(held) <= 2
    assert len(heldout_samples(["a", "b", "c", "d"], 0.99, seed=0)) == 2  # min_train=2 left
    with pytest.raises(ValueError, match="need at least 3 samples.*got 2"):
        heldout_samples(["a", "b"], 0.5)
    with pytest.raises(ValueError, match="must be in \\(0, 1\\)"):
        heldout_samples(["a", "b", "c"], 1.0)


def test_config_hash_covers_only_training_relevant_fields():
    base = RecalibrationConfig(dataset="toy")
    h = recalibration_config_hash(base)
    assert len(h) == 16
    assert recalibration_config_hash(base.model_copy(update={"root": "/elsewhere"})) == h
    assert recalibration_config_hash(RecalibrationConfig(dataset="toy", promotion={"max_flag_rate": 0.5})) == h
    assert recalibration_config_hash(RecalibrationConfig(dataset="toy", seed=1)) != h
    assert recalibration_config_hash(RecalibrationConfig(dataset="toy", training={"max_steps": 5})) != h
    assert config_hash({"a": 1, "b": 2}) == config_hash({"b": 2, "a": 1})


def test_training_manifest_shape_and_errors():
    m = training_manifest(
        spectra={"name": "toy", "version": "d1"}, heldout=["S01"], seeds={"train": 0}, metrics={"rmsep": 0.1},
        config_hash="h", config={"seed": 0}, synthetic={"uri": "x.zarr"}, trust_threshold=3.0,
    )
    assert m["data"]["spectra"] == {"name": "toy", "version": "d1"} and m["data"]["heldout_samples"] == ["S01"]
    assert m["trust_threshold"] == 3.0 and m["config_hash"] == "h"
    with pytest.raises(ValueError, match="spectra lacks 'version'"):
        training_manifest(spectra={"name": "toy"}, heldout=[], seeds={}, metrics={}, config_hash="h", config={})


def test_code_version_and_flow_run_id(monkeypatch):
    monkeypatch.setenv(GIT_SHA_ENV, "deadbeef")
    assert code_version()["git_sha"] == "deadbeef"
    monkeypatch.delenv(GIT_SHA_ENV)
    info = code_version()
    assert info["package_version"] == "0.1.0"
    assert info["git_sha"] is None or len(info["git_sha"]) == 40
    assert current_flow_run_id() is None
