"""One loader and one writer for every servable model directory (baseline JSON or CNN weights).

Torch is imported only when a CNN directory is opened or written, through ``libs_pipeline.models``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from libs_pipeline.candidates.baseline_model import BASELINE_FILE, BaselineModel, load_baseline, save_baseline
from libs_pipeline.candidates.ensemble import ENSEMBLE_FILE, EnsembleModel, load_ensemble, save_ensemble


def servable_kind(directory: str | Path) -> str:
    """'univariate' / 'pls' for a baseline directory, 'ensemble' for a CNN ensemble, 'cnn' otherwise (the
    model's own loader checks it)."""
    if (Path(directory) / BASELINE_FILE).is_file():
        return load_baseline(directory).kind
    if (Path(directory) / ENSEMBLE_FILE).is_file():
        return "ensemble"
    return "cnn"


def load_servable(directory: str | Path) -> Any:
    """The model saved in ``directory``: a BaselineModel, an EnsembleModel or a TrainedModel."""
    if (Path(directory) / BASELINE_FILE).is_file():
        return load_baseline(directory)
    if (Path(directory) / ENSEMBLE_FILE).is_file():
        return load_ensemble(directory)
    from libs_pipeline.models import load_model

    return load_model(directory)


def save_servable(model: Any, directory: str | Path, overwrite: bool = False) -> Path:
    """Write any servable model to ``directory`` atomically."""
    if isinstance(model, BaselineModel):
        return save_baseline(model, directory, overwrite=overwrite)
    if isinstance(model, EnsembleModel):
        return save_ensemble(model, directory, overwrite=overwrite)
    from libs_pipeline.models import save_model

    return save_model(model, directory, overwrite=overwrite)


__all__ = ["load_servable", "save_servable", "servable_kind"]
