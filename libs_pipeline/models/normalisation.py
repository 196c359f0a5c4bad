"""Input and target normalisation, fitted on training data only and saved with the model.

Input: negative counts are clipped to 0, each spectrum is divided by its mean intensity ("total"
normalisation: removes the 7-20 % shot-to-shot gain/ablation fluctuation), optionally log1p-compressed,
then shifted/scaled by statistics of the training spectra (one global pair, or one per channel).
Targets: each task is standardised (z-score) with NaN-aware training statistics. Line areas scale
with the shot's total intensity, which the input normalisation removes, so they are modelled per
unit total intensity (area / spectrum mean) and multiplied back by the spectrum's own total at prediction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

NORMALISATIONS = ("total", "log_total", "none")
CHANNEL_SCALINGS = ("global", "channel", "none")
_MIN_SCALE = 1e-6


def spectrum_totals(intensity: np.ndarray) -> np.ndarray:
    """Mean of the non-negative counts of each spectrum (n,): the divisor of the "total" normalisation."""
    x = np.asarray(intensity, dtype=np.float32)
    return np.clip(x, 0.0, None).mean(axis=1, dtype=np.float64)


def normalise_spectra(intensity: np.ndarray, method: str) -> np.ndarray:
    """The fixed (parameter-free) part of the input transform; returns float32 (n, m)."""
    if method not in NORMALISATIONS:
        raise ValueError(f"normalisation {method!r} is not one of {NORMALISATIONS}")
    x = np.asarray(intensity, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"intensity must be 2-D (spectrum, wavelength), got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        bad = np.argwhere(~np.isfinite(x))[0]
        raise ValueError(f"intensity has a non-finite value at spectrum row {bad[0]}, channel {bad[1]}")
    if method == "none":
        return x
    x = np.clip(x, 0.0, None)
    mean = x.mean(axis=1, keepdims=True)
    if np.any(mean <= 0):
        row = int(np.flatnonzero(mean[:, 0] <= 0)[0])
        raise ValueError(f"spectrum row {row} has zero total intensity; cannot apply {method!r} normalisation")
    x = x / mean
    if method == "log_total":
        x = np.log1p(x)
    return x.astype(np.float32, copy=False)


@dataclass
class SpectrumNormaliser:
    """Full-spectrum input transform: ``(normalise_spectra(x) - offset) / scale``."""

    method: str = "total"
    scaling: str = "global"
    offset: np.ndarray = field(default_factory=lambda: np.zeros(1, np.float32))
    scale: np.ndarray = field(default_factory=lambda: np.ones(1, np.float32))

    def __post_init__(self) -> None:
        if self.scaling not in CHANNEL_SCALINGS:
            raise ValueError(f"channel scaling {self.scaling!r} is not one of {CHANNEL_SCALINGS}")
        if self.method not in NORMALISATIONS:
            raise ValueError(f"normalisation {self.method!r} is not one of {NORMALISATIONS}")
        self.offset = np.asarray(self.offset, dtype=np.float32).reshape(-1)
        self.scale = np.asarray(self.scale, dtype=np.float32).reshape(-1)

    @classmethod
    def fit(cls, blocks: Iterable[np.ndarray], method: str = "total", scaling: str = "global") -> SpectrumNormaliser:
        """Fit offset/scale from raw intensity blocks (streamed; nothing is held but running sums)."""
        total = total_sq = None
        count = 0
        for block in blocks:
            x = normalise_spectra(block, method).astype(np.float64)
            if total is None:
                total, total_sq = np.zeros(x.shape[1]), np.zeros(x.shape[1])
            elif x.shape[1] != total.shape[0]:
                raise ValueError(f"block has {x.shape[1]} channels, expected {total.shape[0]}")
            total += x.sum(axis=0)
            total_sq += (x * x).sum(axis=0)
            count += x.shape[0]
        if total is None or count == 0:
            raise ValueError("cannot fit the input normalisation: no training spectra")
        if scaling == "none":
            return cls(method, scaling)
        if scaling == "global":
            n = count * total.shape[0]
            mean = total.sum() / n
            var = max(total_sq.sum() / n - mean * mean, 0.0)
            return cls(method, scaling, np.array([mean]), np.array([max(np.sqrt(var), _MIN_SCALE)]))
        mean = total / count
        var = np.clip(total_sq / count - mean * mean, 0.0, None)
        # channels that never vary get the median spread, not 1e-6 (which would blow up noise at test time)
        std = np.sqrt(var)
        floor = max(float(np.median(std)) * 1e-2, _MIN_SCALE)
        return cls(method, scaling, mean, np.maximum(std, floor))

    def transform(self, intensity: np.ndarray) -> np.ndarray:
        """Raw counts (n, m) -> network input (n, m) float32."""
        x = normalise_spectra(intensity, self.method)
        if self.scaling == "channel" and x.shape[1] != self.offset.shape[0]:
            raise ValueError(f"spectra have {x.shape[1]} channels; the normalisation was fitted on {self.offset.shape[0]}")
        return ((x - self.offset) / self.scale).astype(np.float32, copy=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "scaling": self.scaling,
            "offset": [float(v) for v in self.offset],
            "scale": [float(v) for v in self.scale],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SpectrumNormaliser:
        try:
            return cls(str(data["method"]), str(data["scaling"]), np.asarray(data["offset"]), np.asarray(data["scale"]))
        except KeyError as exc:
            raise ValueError(f"input normalisation: missing key {exc.args[0]!r}") from None


@dataclass
class TargetScaler:
    """Per-task z-scoring, NaN = missing target.

    ``log_tasks`` are z-scored on log10 scale; ``per_total_tasks`` are divided by the spectrum's
    total intensity (``spectrum_totals``) first, and multiplied back on the way out.
    """

    task_names: list[str]
    mean: np.ndarray
    std: np.ndarray
    log_tasks: list[str] = field(default_factory=list)
    per_total_tasks: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.mean = np.asarray(self.mean, dtype=np.float64).reshape(-1)
        self.std = np.asarray(self.std, dtype=np.float64).reshape(-1)
        if not (len(self.task_names) == self.mean.shape[0] == self.std.shape[0]):
            raise ValueError("target scaler: task_names, mean and std must have the same length")
        for kind, names in (("log", self.log_tasks), ("per-total", self.per_total_tasks)):
            unknown = sorted(set(names) - set(self.task_names))
            if unknown:
                raise ValueError(f"target scaler: {kind} tasks {unknown} are not tasks {self.task_names}")
        self._log = np.array([t in self.log_tasks for t in self.task_names], dtype=bool)
        self._per_total = np.array([t in self.per_total_tasks for t in self.task_names], dtype=bool)

    def _totals(self, totals: np.ndarray | None, n: int) -> np.ndarray | None:
        if not self._per_total.any():
            return None
        if totals is None:
            raise ValueError(f"tasks {self.per_total_tasks} are per unit total intensity: spectrum totals are required")
        totals = np.asarray(totals, dtype=np.float64).reshape(-1)
        if totals.shape[0] != n:
            raise ValueError(f"{totals.shape[0]} spectrum totals for {n} target rows")
        return totals

    def _forward(self, y: np.ndarray, totals: np.ndarray | None = None) -> np.ndarray:
        y = np.array(y, dtype=np.float64, copy=True)
        t = self._totals(totals, y.shape[0])
        if t is not None:
            with np.errstate(divide="ignore", invalid="ignore"):
                y[:, self._per_total] = y[:, self._per_total] / t[:, None]
        if self._log.any():
            sub = y[:, self._log]
            if np.any(sub[np.isfinite(sub)] <= 0):
                names = [t for t, flag in zip(self.task_names, self._log) if flag]
                raise ValueError(f"tasks {names} are fitted on log scale and need positive targets")
            y[:, self._log] = np.log10(sub)
        return y

    @classmethod
    def fit(
        cls,
        task_names: Sequence[str],
        targets: np.ndarray,
        log_tasks: Sequence[str] = (),
        per_total_tasks: Sequence[str] = (),
        totals: np.ndarray | None = None,
    ) -> TargetScaler:
        """Statistics of the training targets (n, n_tasks); a task with no finite value is an error."""
        targets = np.asarray(targets, dtype=np.float64)
        if targets.ndim != 2 or targets.shape[1] != len(task_names):
            raise ValueError(f"targets shape {targets.shape} does not match {len(task_names)} tasks")
        k = len(task_names)
        probe = cls(list(task_names), np.zeros(k), np.ones(k), list(log_tasks), list(per_total_tasks))
        y = probe._forward(targets, totals)
        mean = np.empty(len(task_names))
        std = np.empty(len(task_names))
        for j, name in enumerate(task_names):
            col = y[:, j][np.isfinite(y[:, j])]
            if col.size == 0:
                raise ValueError(f"task {name!r} has no finite training target")
            mean[j] = col.mean()
            sd = col.std()
            std[j] = sd if sd > 0 and np.isfinite(sd) else max(abs(mean[j]), 1.0)
        return cls(list(task_names), mean, std, list(log_tasks), list(per_total_tasks))

    def transform(self, targets: np.ndarray, totals: np.ndarray | None = None) -> np.ndarray:
        """Raw targets (n, n_tasks) -> standardised float32 (NaN stays NaN); ``totals`` per spectrum if needed."""
        return ((self._forward(targets, totals) - self.mean) / self.std).astype(np.float32)

    def inverse(self, scaled: np.ndarray, totals: np.ndarray | None = None) -> np.ndarray:
        """Standardised (n, n_tasks) -> raw units float64."""
        y = np.asarray(scaled, dtype=np.float64) * self.std + self.mean
        if self._log.any():
            y[:, self._log] = 10.0 ** y[:, self._log]
        t = self._totals(totals, y.shape[0])
        if t is not None:
            y[:, self._per_total] = y[:, self._per_total] * t[:, None]
        return y

    def to_dict(self) -> dict[str, Any]:
        return {
            "task_names": list(self.task_names),
            "mean": [float(v) for v in self.mean],
            "std": [float(v) for v in self.std],
            "log_tasks": list(self.log_tasks),
            "per_total_tasks": list(self.per_total_tasks),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TargetScaler:
        try:
            return cls(
                list(data["task_names"]),
                data["mean"],
                data["std"],
                list(data.get("log_tasks", [])),
                list(data.get("per_total_tasks", [])),
            )
        except KeyError as exc:
            raise ValueError(f"target normalisation: missing key {exc.args[0]!r}") from None
