"""A deep ensemble of CNNs trained with different seeds, served as one model: outputs averaged, their spread is
the predictive uncertainty.

Why: with 5-10 training samples one network's error depends strongly on its seed (on OREAS 611-1149 ppm for
three seeds of one recipe); averaging a few removes most of that lottery. A directory holds ``ensemble.json``
and one CNN model directory per member (``member-<i>/``, as ``libs_pipeline.models.save_model`` writes them).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from libs_pipeline.spectra.atomic import write_directory

ENSEMBLE_FILE = "ensemble.json"
FORMAT = "libs-pipeline-ensemble"


@dataclass
class EnsembleModel:
    """Members share grid, tasks and lines; ``predict`` averages them, ``predict_with_uncertainty`` adds the spread."""

    members: list[Any]
    metrics: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.members:
            raise ValueError("an ensemble needs at least one member")
        first = self.members[0]
        for i, m in enumerate(self.members[1:], start=1):
            if m.task_names != first.task_names or not np.array_equal(m.wavelength, first.wavelength):
                raise ValueError(f"ensemble member {i} has other tasks or another wavelength grid than member 0")

    @property
    def analyte(self) -> str:
        return self.members[0].analyte

    @property
    def task_names(self) -> list[str]:
        return self.members[0].task_names

    @property
    def wavelength(self) -> np.ndarray:
        return self.members[0].wavelength

    @property
    def lines(self) -> list[dict]:
        return self.members[0].lines

    @property
    def config(self):
        return self.members[0].config

    def _stack(self, intensity: np.ndarray) -> dict[str, np.ndarray]:
        outs = [m.predict(intensity) for m in self.members]
        return {k: np.stack([o[k] for o in outs]) for k in outs[0]}

    def predict(self, intensity: np.ndarray) -> dict[str, np.ndarray]:
        """Mean of the members' outputs per task."""
        return {k: v.mean(axis=0) for k, v in self._stack(intensity).items()}

    def predict_with_uncertainty(
        self, intensity: np.ndarray, n_samples: int = 0, seed: int = 0
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """(mean, standard deviation across members) per task; ``n_samples``/``seed`` are unused (no dropout)."""
        stack = self._stack(intensity)
        ddof = 1 if len(self.members) > 1 else 0
        return ({k: v.mean(axis=0) for k, v in stack.items()}, {k: v.std(axis=0, ddof=ddof) for k, v in stack.items()})


def save_ensemble(model: EnsembleModel, directory: str | Path, overwrite: bool = False) -> Path:
    """Write ``ensemble.json`` and every member atomically (temporary sibling, then rename)."""
    from libs_pipeline.models import save_model

    def write(tmp: Path) -> None:
        names = []
        for i, member in enumerate(model.members):
            names.append(f"member-{i}")
            save_model(member, tmp / names[-1])
        (tmp / ENSEMBLE_FILE).write_text(json.dumps({"format": FORMAT, "members": names}, indent=2) + "\n")
        (tmp / "metrics.json").write_text(json.dumps(model.metrics, indent=2, default=str) + "\n")

    return write_directory(directory, write, overwrite)


def load_ensemble(directory: str | Path) -> EnsembleModel:
    """The ensemble saved in ``directory``; each member is verified by ``libs_pipeline.models.load_model``."""
    from libs_pipeline.models import load_model

    directory = Path(directory)
    path = directory / ENSEMBLE_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot be read as an ensemble description ({exc})") from exc
    if data.get("format") != FORMAT or not data.get("members"):
        raise ValueError(f"{path}: not a libs-pipeline ensemble (format {data.get('format')!r})")
    metrics_path = directory / "metrics.json"
    metrics = json.loads(metrics_path.read_text(encoding="utf-8")) if metrics_path.is_file() else {}
    return EnsembleModel([load_model(directory / name) for name in data["members"]], metrics)


__all__ = ["ENSEMBLE_FILE", "EnsembleModel", "load_ensemble", "save_ensemble"]
