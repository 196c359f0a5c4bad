"""Univariate and PLS calibrations as servable models: same predict, trust and registry path as the CNN.

A model directory holds ``baseline.json`` (kind, analyte, grid, lines, the fitted estimator's parameters)
and ``metrics.json`` (training samples and the choices made), written atomically as one folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from libs_pipeline.baselines import SelectedPLS, SelectedUnivariate
from libs_pipeline.spectra.atomic import write_directory

BASELINE_FILE = "baseline.json"
METRICS_FILE = "metrics.json"
FORMAT = "libs-pipeline-baseline"
FORMAT_VERSION = 1
ESTIMATORS = {"univariate": SelectedUnivariate, "pls": SelectedPLS}


@dataclass
class BaselineModel:
    """A fitted baseline with what the predict and trust paths need: analyte, wavelength grid, line windows."""

    kind: str
    analyte: str
    units: str
    wavelength: np.ndarray
    lines: list[dict]
    estimator: Any
    metrics: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in ESTIMATORS:
            raise ValueError(f"baseline kind {self.kind!r} is not one of {sorted(ESTIMATORS)}")
        self.wavelength = np.asarray(self.wavelength, dtype=np.float64)

    @property
    def task_names(self) -> list[str]:
        return [self.analyte]

    def predict(self, intensity: np.ndarray) -> dict[str, np.ndarray]:
        """Concentration per spectrum, for spectra (n, m) or (m,) on the model's grid."""
        x = np.asarray(intensity, dtype=np.float64)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self.wavelength.size:
            raise ValueError(
                f"intensity shape {np.shape(intensity)} does not match the {self.kind} model's wavelength grid of "
                f"{self.wavelength.size} channels ({self.wavelength[0]:.3f}-{self.wavelength[-1]:.3f} nm)"
            )
        return {self.analyte: np.asarray(self.estimator.predict(x), dtype=np.float64)}

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "kind": self.kind,
            "analyte": self.analyte,
            "units": self.units,
            "wavelength": [float(v) for v in self.wavelength],
            "lines": list(self.lines),
            "estimator": self.estimator.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], metrics: dict | None = None, source: str = "baseline") -> BaselineModel:
        if data.get("format") != FORMAT:
            raise ValueError(f"{source}: not a libs-pipeline baseline model (format {data.get('format')!r})")
        kind = data.get("kind")
        if kind not in ESTIMATORS:
            raise ValueError(f"{source}: unknown baseline kind {kind!r} (known: {sorted(ESTIMATORS)})")
        return cls(
            kind=kind,
            analyte=str(data["analyte"]),
            units=str(data.get("units", "")),
            wavelength=np.asarray(data["wavelength"], dtype=np.float64),
            lines=list(data.get("lines") or []),
            estimator=ESTIMATORS[kind].from_dict(data["estimator"]),
            metrics=dict(metrics or {}),
        )


def _json_text(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, allow_nan=True, default=str) + "\n"


def save_baseline(model: BaselineModel, directory: str | Path, overwrite: bool = False) -> Path:
    """Write the model directory atomically (temporary sibling, then rename)."""

    def write(tmp: Path) -> None:
        (tmp / BASELINE_FILE).write_text(_json_text(model.to_dict()), encoding="utf-8")
        (tmp / METRICS_FILE).write_text(_json_text(model.metrics), encoding="utf-8")

    return write_directory(directory, write, overwrite)


def load_baseline(directory: str | Path) -> BaselineModel:
    """The baseline model saved in ``directory``; a clear error when a file is missing or malformed."""
    directory = Path(directory)
    path = directory / BASELINE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{directory}: no {BASELINE_FILE} (not a baseline model directory)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        metrics_path = directory / METRICS_FILE
        metrics = json.loads(metrics_path.read_text(encoding="utf-8")) if metrics_path.is_file() else {}
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc
    return BaselineModel.from_dict(data, metrics, source=str(path))


__all__ = ["BASELINE_FILE", "BaselineModel", "load_baseline", "save_baseline"]
