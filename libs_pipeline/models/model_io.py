"""Model directory: ``weights.pt`` (state_dict), ``normalisation.json``, ``config.json``, ``metrics.json``, ``data_versions.json``.

The directory is written under a temporary name and renamed into place (never half-written).
``config.json`` records the sha256 of ``weights.pt``; loading checks it, then reads the weights with
``torch.load(weights_only=True)`` (no pickled code), so a tampered or truncated file fails loudly.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import ValidationError

from libs_pipeline.config import TrainingConfig
from libs_pipeline.models.network import MultitaskCNN, NetworkSpec
from libs_pipeline.models.normalisation import SpectrumNormaliser, TargetScaler
from libs_pipeline.models.training import TrainedModel
from libs_pipeline.spectra.atomic import write_directory

FORMAT = "libs-pipeline-model"
FORMAT_VERSION = 1
WEIGHTS = "weights.pt"
NORMALISATION = "normalisation.json"
CONFIG = "config.json"
METRICS = "metrics.json"
DATA_VERSIONS = "data_versions.json"
MODEL_FILES = (WEIGHTS, NORMALISATION, CONFIG, METRICS, DATA_VERSIONS)


class ModelLoadError(ValueError):
    """A model directory is incomplete, corrupt, tampered with or inconsistent."""


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True, allow_nan=True) + "\n").encode("utf-8")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def save_model(model: TrainedModel, directory: str | Path, overwrite: bool = False) -> Path:
    """Write the model directory atomically; an existing non-empty directory is replaced only if ``overwrite``."""
    directory = Path(directory)
    buf = io.BytesIO()
    torch.save(model.network.state_dict(), buf)
    weights = buf.getvalue()
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "analyte": model.analyte,
        "task_names": model.task_names,
        "training_config": model.config.model_dump(mode="json"),
        "network": model.network.spec.to_dict(),
        "wavelength": [float(v) for v in model.wavelength],
        "lines": model.lines,
        "weights_sha256": _sha256(weights),
        "torch_version": torch.__version__,
    }
    files = {
        WEIGHTS: weights,
        NORMALISATION: _json_bytes({"input": model.normaliser.to_dict(), "targets": model.scaler.to_dict()}),
        CONFIG: _json_bytes(config),
        METRICS: _json_bytes(model.metrics),
        DATA_VERSIONS: _json_bytes(model.data_versions),
    }
    def write(tmp: Path) -> None:
        for name, data in files.items():
            (tmp / name).write_bytes(data)

    write_directory(directory, write, overwrite)
    return directory


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{path}: not valid JSON ({exc})") from None


def load_model(directory: str | Path) -> TrainedModel:
    """Read a model directory written by ``save_model`` (weights via ``torch.load(weights_only=True)``)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"model directory {directory} does not exist")
    missing = [f for f in MODEL_FILES if not (directory / f).is_file()]
    if missing:
        raise ModelLoadError(f"{directory}: missing {missing} (not a complete model directory)")
    config = _read_json(directory / CONFIG)
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ModelLoadError(f"{directory / CONFIG}: not a {FORMAT} config (field 'format')")
    if config.get("format_version") != FORMAT_VERSION:
        raise ModelLoadError(
            f"{directory / CONFIG}: format_version {config.get('format_version')!r} is not supported (expected {FORMAT_VERSION})"
        )
    weights_path = directory / WEIGHTS
    raw = weights_path.read_bytes()
    expected = config.get("weights_sha256")
    if _sha256(raw) != expected:
        raise ModelLoadError(
            f"{weights_path}: sha256 {_sha256(raw)[:16]}... does not match {str(expected)[:16]}... recorded in "
            f"{CONFIG} (the weights file was modified or truncated)"
        )
    try:
        state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelLoadError(f"{weights_path}: cannot be read as a weights-only state_dict ({exc})") from None
    try:
        spec = NetworkSpec.from_dict(config["network"])
        training = TrainingConfig.model_validate(config["training_config"])
        norm = _read_json(directory / NORMALISATION)
        normaliser = SpectrumNormaliser.from_dict(norm["input"])
        scaler = TargetScaler.from_dict(norm["targets"])
        wavelength = np.asarray(config["wavelength"], dtype=np.float64)
        lines = list(config["lines"])
    except (KeyError, TypeError, ValueError, ValidationError) as exc:
        raise ModelLoadError(f"{directory}: inconsistent model description ({type(exc).__name__}: {exc})") from None
    if scaler.task_names != list(config.get("task_names", [])) or spec.n_tasks != len(scaler.task_names):
        raise ModelLoadError(f"{directory}: task names in {CONFIG} and {NORMALISATION} disagree")
    n_inputs = normaliser.input_size(wavelength.size)
    if n_inputs != spec.n_channels:
        raise ModelLoadError(
            f"{directory}: the input selection gives {n_inputs} of the grid's {wavelength.size} channels, "
            f"network expects {spec.n_channels}"
        )
    if normaliser.channels is not None and normaliser.channels.size and normaliser.channels.max() >= wavelength.size:
        raise ModelLoadError(f"{directory}: input channels reach beyond the {wavelength.size}-channel grid")
    network = MultitaskCNN(spec)
    if not isinstance(state, dict):
        raise ModelLoadError(f"{weights_path}: holds a {type(state).__name__}, not a state_dict")
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelLoadError(f"{weights_path}: does not fit the network in {CONFIG} ({exc})") from None
    network.eval()
    return TrainedModel(
        network=network,
        normaliser=normaliser,
        scaler=scaler,
        wavelength=wavelength,
        lines=lines,
        config=training,
        metrics=_read_json(directory / METRICS),
        data_versions=_read_json(directory / DATA_VERSIONS),
    )
