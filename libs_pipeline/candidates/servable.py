"""One loader and one writer for every servable model directory (baseline JSON or CNN weights).

Torch is imported only when a CNN directory is opened or written, through ``libs_pipeline.models``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from libs_pipeline.candidates.baseline_model import BASELINE_FILE, BaselineModel, load_baseline, save_baseline


def servable_kind(directory: str | Path) -> str:
    """'univariate' / 'pls' for a baseline directory, 'cnn' otherwise (the model's own loader checks it)."""
    path = Path(directory) / BASELINE_FILE
    if path.is_file():
        return load_baseline(directory).kind
    return "cnn"


def load_servable(directory: str | Path) -> Any:
    """The model saved in ``directory``: a BaselineModel or a TrainedModel (``libs_pipeline.models``)."""
    if (Path(directory) / BASELINE_FILE).is_file():
        return load_baseline(directory)
    from libs_pipeline.models import load_model

    return load_model(directory)


def save_servable(model: Any, directory: str | Path, overwrite: bool = False) -> Path:
    """Write any servable model to ``directory`` atomically."""
    if isinstance(model, BaselineModel):
        return save_baseline(model, directory, overwrite=overwrite)
    from libs_pipeline.models import save_model

    return save_model(model, directory, overwrite=overwrite)


__all__ = ["load_servable", "save_servable", "servable_kind"]
