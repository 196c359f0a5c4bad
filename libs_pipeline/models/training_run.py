"""One training run from a TrainingConfig file: read the config, train on its URIs, write the model directory.

Shared by the CLI (``libs-pipeline train CONFIG``) and the train flow, so both produce the same directory.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import yaml
from pydantic import ValidationError

from libs_pipeline.config import TrainingConfig, config_hash
from libs_pipeline.models.model_io import save_model
from libs_pipeline.models.training import train_model


def load_training_config(path: str | Path) -> TrainingConfig:
    """A TrainingConfig from a YAML or JSON file; errors name the file and the offending field."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"training config {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))  # JSON is valid YAML
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not valid YAML/JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of TrainingConfig fields, got {type(data).__name__}")
    try:
        return TrainingConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"{path}: invalid training config: {problems}") from None


def default_model_name(config: TrainingConfig, now: dt.datetime | None = None) -> str:
    """``<analyte>-<UTC time>-<first 8 hex of the config's hash>``: sortable and unique per config."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return f"{config.analyte}-{now:%Y%m%dT%H%M%S}-{config_hash(config)[:8]}"


def training_sources(config: TrainingConfig) -> tuple[list[str], list[str] | None]:
    """(training URIs, validation URIs or None) named by the config; augmentation adds the synthetic stores."""
    if not config.measured_uris:
        raise ValueError("training config: measured_uris is empty (no measured spectra to train on)")
    if config.augmentation and not config.synthetic_uris:
        raise ValueError("training config: augmentation is on but synthetic_uris is empty")
    train = list(config.measured_uris) + (list(config.synthetic_uris) if config.augmentation else [])
    return train, (list(config.val_uris) or None)


def model_directory(config: TrainingConfig) -> Path:
    """Where the model is saved: ``config.model_dir``, else ``<output_dir>/<analyte>-<UTC time>-<config hash>``."""
    if config.model_dir:
        return Path(config.model_dir)
    if not config.output_dir:
        raise ValueError("training config: give model_dir or output_dir (where the model directory goes)")
    return Path(config.output_dir) / default_model_name(config)


def run_training(config: TrainingConfig, progress: Callable[[int, int], None] | None = None) -> Path:
    """Train on the config's URIs and save the model directory (``model_directory(config)``);
    ``progress(step, max_steps)`` as in ``train_model``."""
    model_dir = model_directory(config)
    train, val = training_sources(config)
    model = train_model(train, config, val_sources=val, progress=progress)
    return save_model(model, model_dir)
