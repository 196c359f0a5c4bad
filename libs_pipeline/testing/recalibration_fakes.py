"""Fakes for the recalibration flow's tests: a toy store, a tiny held-out config, files shaped like a saved
model, and a fake champion in the registry (no torch, no Prefect)."""

from __future__ import annotations

import json
from pathlib import Path

from libs_pipeline.config import RecalibrationConfig
from libs_pipeline.registry import ModelRegistry
from libs_pipeline.spectra.store import SpectraStore
from libs_pipeline.testing import toy_campaign

TINY_TRAINING = {
    "max_steps": 10, "eval_every": 5, "batch_size": 16, "val_fraction": 0.34,
    "stem_channels": 2, "block_channels": [2], "dense_units": 8, "head_units": 4,
}


def make_store(root: Path, n_samples: int = 8, seed: int = 0) -> str:
    ds = toy_campaign(n_samples=n_samples, n_shots=16, n_channels=256, seed=seed)
    return SpectraStore(root).write_version("toy", ds, sources=[{"test": True}], reader="dataset")


def tiny_config(root: Path, **update) -> RecalibrationConfig:
    """The held-out path with the multitask challenger only (the leave-one-sample-out path has its own tests)."""
    base = {
        "root": str(root), "dataset": "toy", "synthesis": {"per_sample": 16, "chunk_size": 64, "n_workers": 1},
        "training": TINY_TRAINING, "promotion": {"max_flag_rate": 1.0}, "protocol": "holdout",
        "candidates": ["multitask_aug"],
    }
    return RecalibrationConfig(**{**base, **update})


def fake_model_dir(path: Path, tag: str) -> Path:
    """Files shaped like a saved model (the registry does not look inside them)."""
    path.mkdir(parents=True)
    for name in ("weights.pt", "normalisation.json", "config.json", "metrics.json", "trust.json"):
        (path / name).write_text(json.dumps({"tag": tag, "file": name}))
    return path


NO_SYNTHESIS = {"synthesis": {"per_sample": 0}, "training": {**TINY_TRAINING, "augmentation": False}}


def register_fake_champion(root: Path, spectra_version: str = "0" * 16) -> str:
    reg = ModelRegistry(root)
    staged = fake_model_dir(root / "fake-staged", "champion")
    manifest = {"data": {"spectra": {"name": "toy", "version": spectra_version}}, "seeds": {},
                "metrics": {"rmsep": 0.5}, "config_hash": "old"}
    version = reg.register("toy", staged, manifest)
    reg.promote("toy", version)
    return version


__all__ = ["NO_SYNTHESIS", "TINY_TRAINING", "fake_model_dir", "make_store", "register_fake_champion", "tiny_config"]
