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
#: Output name of the members' disagreement on the analyte: ``predict`` adds ``<analyte>:spread`` (their standard
#: deviation) beside the averaged tasks, so trust can score it like any other output.
SPREAD_SUFFIX = ":spread"


def spread_task(analyte: str) -> str:
    """Name of the ensemble-spread output of ``analyte`` (``"Cu:spread"``)."""
    return f"{analyte}{SPREAD_SUFFIX}"


@dataclass
class EnsembleModel:
    """Members share grid, tasks and lines; ``predict`` averages them and adds the analyte's spread across members
    (``spread_task``; with >= 2 members), ``predict_with_uncertainty`` gives every task's spread."""

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

    def _stack(self, intensity: np.ndarray, **options: Any) -> dict[str, np.ndarray]:
        outs = [m.predict(intensity, **options) for m in self.members]
        return {k: np.stack([o[k] for o in outs]) for k in outs[0]}

    def predict(self, intensity: np.ndarray, **options: Any) -> dict[str, np.ndarray]:
        """Mean of the members' outputs per task, plus ``<analyte>:spread`` (sample standard deviation of the
        members' analyte predictions) when there are >= 2 members; ``options`` go to every member's ``predict``."""
        stack = self._stack(intensity, **options)
        out = {k: v.mean(axis=0) for k, v in stack.items()}
        if len(self.members) > 1:
            out[spread_task(self.analyte)] = stack[self.analyte].std(axis=0, ddof=1)
        return out

    def predict_with_uncertainty(
        self, intensity: np.ndarray, n_samples: int = 0, seed: int = 0
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """(mean, standard deviation across members) per task; ``n_samples``/``seed`` are unused (no dropout)."""
        stack = self._stack(intensity)
        ddof = 1 if len(self.members) > 1 else 0
        return ({k: v.mean(axis=0) for k, v in stack.items()}, {k: v.std(axis=0, ddof=ddof) for k, v in stack.items()})


def member_name(i: int) -> str:
    """Sub-directory of member ``i`` in an ensemble directory."""
    return f"member-{i}"


def describe_ensemble(directory: str | Path, n_members: int, metrics: dict[str, Any]) -> Path:
    """Write ``ensemble.json`` (naming ``member-0`` ... ``member-<n-1>``, which must already be saved model
    directories inside ``directory``) and ``metrics.json``; returns ``directory``."""
    directory = Path(directory)
    names = [member_name(i) for i in range(n_members)]
    missing = [n for n in names if not (directory / n).is_dir()]
    if missing:
        raise FileNotFoundError(f"{directory}: ensemble members {missing} are not saved model directories")
    (directory / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str) + "\n")
    (directory / ENSEMBLE_FILE).write_text(json.dumps({"format": FORMAT, "members": names}, indent=2) + "\n")
    return directory


def save_ensemble(model: EnsembleModel, directory: str | Path, overwrite: bool = False) -> Path:
    """Write ``ensemble.json`` and every member atomically (temporary sibling, then rename)."""
    from libs_pipeline.models import save_model

    def write(tmp: Path) -> None:
        for i, member in enumerate(model.members):
            save_model(member, tmp / member_name(i))
        describe_ensemble(tmp, len(model.members), model.metrics)

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


__all__ = ["ENSEMBLE_FILE", "SPREAD_SUFFIX", "EnsembleModel", "describe_ensemble", "load_ensemble", "member_name",
           "save_ensemble", "spread_task"]
