"""Input and target normalisation, fitted on training data only and saved with the model.

Input: negative counts are clipped to 0, each spectrum is divided by its mean intensity ("total"
normalisation: removes the 7-20 % shot-to-shot gain/ablation fluctuation) or by the mean of given
reference channels ("background": the local continuum beside the analyte lines), optionally
log1p-compressed ("log_total"); then only the selected input channels (region of
interest) are kept, shifted/scaled by statistics of the training spectra (one global pair, or one per
channel), and channels that were (near) saturated in any training spectrum are set to zero.
Targets: each task is standardised (z-score) with NaN-aware training statistics. Line areas scale
with the shot's intensity, which the input normalisation removes, so they are modelled per unit
divisor (area / the spectrum's divisor) and multiplied back by the spectrum's own divisor at prediction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from libs_pipeline.spectra.totals import spectrum_totals

NORMALISATIONS = ("total", "log_total", "background", "none")
BACKGROUND_METHODS = ("background",)
CHANNEL_SCALINGS = ("global", "channel", "none")
_MIN_SCALE = 1e-6




def spectrum_divisors(intensity: np.ndarray, method: str, reference: np.ndarray | None = None) -> np.ndarray:
    """Per-spectrum divisor (n,) of ``method``: the mean of the reference channels for "background", else the total."""
    if method in BACKGROUND_METHODS:
        if reference is None or len(reference) == 0:
            raise ValueError("'background' normalisation needs reference channels (the lines' background windows)")
        return spectrum_totals(np.asarray(intensity)[:, np.asarray(reference, dtype=np.int64)])
    return spectrum_totals(intensity)


def normalise_spectra(intensity: np.ndarray, method: str, reference: np.ndarray | None = None) -> np.ndarray:
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
    if method in BACKGROUND_METHODS:
        divisor = spectrum_divisors(x, method, reference).astype(np.float32)[:, None]
    else:
        divisor = x.mean(axis=1, keepdims=True)  # float32 accumulation, as the original total normalisation
    if np.any(divisor <= 0):
        row = int(np.flatnonzero(divisor[:, 0] <= 0)[0])
        what = "reference (background) intensity" if method in BACKGROUND_METHODS else "total intensity"
        raise ValueError(f"spectrum row {row} has zero {what}; cannot apply {method!r} normalisation")
    x = x / divisor
    if method == "log_total":
        x = np.log1p(x)
    return x.astype(np.float32, copy=False)


def _index_array(values: Any) -> np.ndarray | None:
    return None if values is None else np.asarray(values, dtype=np.int64).reshape(-1)


@dataclass
class SpectrumNormaliser:
    """Input transform: ``(normalise_spectra(x)[:, channels] - offset) / scale``, then ``masked`` inputs set to 0.

    ``channels``: full-grid indices the network reads (None = all); ``masked``: positions within the
    input that were saturated in training; ``reference``: full-grid indices of the "background" divisor.
    """

    method: str = "total"
    scaling: str = "global"
    offset: np.ndarray = field(default_factory=lambda: np.zeros(1, np.float32))
    scale: np.ndarray = field(default_factory=lambda: np.ones(1, np.float32))
    channels: np.ndarray | None = None
    masked: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    reference: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.scaling not in CHANNEL_SCALINGS:
            raise ValueError(f"channel scaling {self.scaling!r} is not one of {CHANNEL_SCALINGS}")
        if self.method not in NORMALISATIONS:
            raise ValueError(f"normalisation {self.method!r} is not one of {NORMALISATIONS}")
        self.offset = np.asarray(self.offset, dtype=np.float32).reshape(-1)
        self.scale = np.asarray(self.scale, dtype=np.float32).reshape(-1)
        self.channels = _index_array(self.channels)
        self.masked = np.asarray(self.masked, dtype=np.int64).reshape(-1)
        self.reference = _index_array(self.reference)
        if self.method in BACKGROUND_METHODS and (self.reference is None or self.reference.size == 0):
            raise ValueError("'background' normalisation needs reference channels (the lines' background windows)")

    def input_size(self, n_grid: int) -> int:
        """Number of network inputs for spectra of ``n_grid`` channels."""
        return int(self.channels.size) if self.channels is not None else int(n_grid)

    def divisors(self, intensity: np.ndarray) -> np.ndarray:
        """Per-spectrum divisor (n,) of this normalisation (the unit of per-divisor targets such as line areas)."""
        x = np.clip(np.asarray(intensity, dtype=np.float32), 0.0, None)
        return spectrum_divisors(x, self.method, self.reference)

    def _select(self, x: np.ndarray) -> np.ndarray:
        if self.channels is None:
            return x
        if self.channels.size and self.channels.max() >= x.shape[1]:
            raise ValueError(f"spectra have {x.shape[1]} channels; the input selection reaches channel {self.channels.max()}")
        return x[:, self.channels]

    @classmethod
    def fit(
        cls,
        blocks: Iterable[np.ndarray],
        method: str = "total",
        scaling: str = "global",
        channels: Sequence[int] | None = None,
        reference: Sequence[int] | None = None,
        saturation: float | None = None,
        saturation_margin: float = 0.01,
    ) -> SpectrumNormaliser:
        """Fit offset/scale (and the saturation mask) from raw intensity blocks (streamed: running sums only)."""
        probe = cls(method, scaling, channels=channels, reference=reference)
        total = total_sq = peak = None
        count = 0
        for block in blocks:
            raw = probe._select(np.asarray(block, dtype=np.float32))
            x = probe._select(normalise_spectra(block, method, probe.reference)).astype(np.float64)
            if total is None:
                total, total_sq, peak = np.zeros(x.shape[1]), np.zeros(x.shape[1]), np.full(x.shape[1], -np.inf)
            elif x.shape[1] != total.shape[0]:
                raise ValueError(f"block has {x.shape[1]} channels, expected {total.shape[0]}")
            total += x.sum(axis=0)
            total_sq += (x * x).sum(axis=0)
            peak = np.maximum(peak, raw.max(axis=0))
            count += x.shape[0]
        if total is None or count == 0:
            raise ValueError("cannot fit the input normalisation: no training spectra")
        masked = np.zeros(total.shape[0], dtype=bool)
        if saturation is not None:
            masked = peak >= saturation * (1.0 - saturation_margin)
        if masked.all():
            raise ValueError(f"every input channel reaches saturation {saturation} in some training spectrum")
        kept = ~masked
        common = {"channels": probe.channels, "masked": np.flatnonzero(masked), "reference": probe.reference}
        if scaling == "none":
            return cls(method, scaling, **common)
        if scaling == "global":
            n = count * int(kept.sum())
            mean = total[kept].sum() / n
            var = max(total_sq[kept].sum() / n - mean * mean, 0.0)
            return cls(method, scaling, np.array([mean]), np.array([max(np.sqrt(var), _MIN_SCALE)]), **common)
        mean = total / count
        var = np.clip(total_sq / count - mean * mean, 0.0, None)
        # channels that never vary get the median spread, not 1e-6 (which would blow up noise at test time)
        std = np.sqrt(var)
        floor = max(float(np.median(std[kept])) * 1e-2, _MIN_SCALE)
        mean[masked], std[masked] = 0.0, 1.0
        return cls(method, scaling, mean, np.maximum(std, floor), **common)

    def transform(self, intensity: np.ndarray) -> np.ndarray:
        """Raw counts (n, m) on the model grid -> network input (n, n_inputs) float32."""
        x = self._select(normalise_spectra(intensity, self.method, self.reference))
        if self.scaling == "channel" and x.shape[1] != self.offset.shape[0]:
            raise ValueError(f"spectra have {x.shape[1]} channels; the normalisation was fitted on {self.offset.shape[0]}")
        out = ((x - self.offset) / self.scale).astype(np.float32, copy=False)
        if self.masked.size:
            out[:, self.masked] = 0.0
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "scaling": self.scaling,
            "offset": [float(v) for v in self.offset],
            "scale": [float(v) for v in self.scale],
            "channels": None if self.channels is None else [int(v) for v in self.channels],
            "masked": [int(v) for v in self.masked],
            "reference": None if self.reference is None else [int(v) for v in self.reference],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SpectrumNormaliser:
        try:
            return cls(
                str(data["method"]), str(data["scaling"]), np.asarray(data["offset"]), np.asarray(data["scale"]),
                channels=data.get("channels"), masked=data.get("masked", []), reference=data.get("reference"),
            )
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
