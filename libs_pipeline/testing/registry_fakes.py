"""Test helpers for the model registry: a manifest and staged model directories shaped like saved models."""

from __future__ import annotations

import json
import os
from pathlib import Path

#: The caller's part of a manifest, as recalibration would write it.
TOY_MANIFEST = {"data": {"spectra": {"name": "toy", "version": "abc"}}, "seeds": {"train": 0}, "metrics": {"rmsep": 0.5}}


def stage_model_dir(tmp_path: Path, tag: str, weights: bytes | None = None) -> Path:
    """A saved-model directory like libs_pipeline.models.save_model writes (content differs per tag)."""
    d = tmp_path / f"staged-{tag}"
    d.mkdir()
    (d / "weights.pt").write_bytes(weights if weights is not None else os.urandom(4096))
    (d / "normalisation.json").write_text(json.dumps({"tag": tag}))
    (d / "config.json").write_text(json.dumps({"analyte": "Cu"}))
    (d / "metrics.json").write_text(json.dumps({"rmsep": 0.5}))
    return d


__all__ = ["TOY_MANIFEST", "stage_model_dir"]
