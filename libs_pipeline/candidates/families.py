"""The candidate families: univariate line-area calibration, PLS, and multitask/single-task CNNs.

Each ``fit(train, analyte)`` sees only ``train`` and makes every choice there (the baselines' inner
leave-one-sample-out over normalisation, window, form and components; the CNN's noise model, synthetic
spectra and fixed step budget), so the nested evaluator and recalibration can use them unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from libs_pipeline.baselines import SelectedPLS, SelectedUnivariate
from libs_pipeline.candidates.baseline_model import BaselineModel
from libs_pipeline.features.lines import resolve_lines
from libs_pipeline.spectra.dataset import sample_ids
from libs_pipeline.spectra.grid import intensity_on_grid
from libs_pipeline.synth.noise_model import detect_saturation

#: Names recalibration and the benchmark know, in the order they are listed.
CANDIDATE_NAMES = ("univariate", "pls", "single_task", "multitask", "multitask_aug", "multitask_physics")

#: The CNN's training budget on small campaigns: a fixed number of steps, no early stopping on one sample.
SMALL_CAMPAIGN_TRAINING: dict[str, Any] = {
    "max_steps": 300,
    "val_fraction": 0.0,
    "num_threads": 1,
    "progress_bar": False,
}
DEFAULT_SYNTHETIC_PER_SAMPLE = 100


def saturation_level(ds: xr.Dataset) -> float | None:
    """The detector's saturation level: the dataset's ``saturation_level`` attr, else detected from the data."""
    level = ds.attrs.get("saturation_level")
    if level is not None:
        return float(level)
    return detect_saturation(np.asarray(ds["intensity"].values))


def _labelled(ds: xr.Dataset, analyte: str) -> xr.Dataset:
    if analyte not in ds:
        raise ValueError(f"spectra have no label variable {analyte!r}")
    keep = np.isfinite(np.asarray(ds[analyte].values, dtype=np.float64))
    if not keep.any():
        raise ValueError(f"no spectrum has a known {analyte!r} label: nothing to calibrate on")
    return ds.isel(spectrum=np.flatnonzero(keep))


@dataclass
class FittedCandidate:
    """A fitted candidate: the servable model, the samples it saw, and the choices it made."""

    name: str
    model: Any
    train_samples: list[str]
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def analyte(self) -> str:
        return self.model.analyte

    def predict_tasks(self, ds: xr.Dataset) -> dict[str, np.ndarray]:
        """Every output of the model (concentration first; a CNN adds line areas) per spectrum of ``ds``."""
        return self.model.predict(intensity_on_grid(ds, self.model.wavelength))

    def predict_dataset(self, ds: xr.Dataset) -> np.ndarray:
        """Concentration per spectrum (float64)."""
        return np.asarray(self.predict_tasks(ds)[self.analyte], dtype=np.float64)

    def describe(self) -> dict[str, Any]:
        return {"candidate": self.name, **self.details}


@dataclass
class FittedMean:
    """Predicts the mean certified value of the training samples (each sample weighted once)."""

    value: float
    train_samples: list[str]

    def predict_dataset(self, ds: xr.Dataset) -> np.ndarray:
        return np.full(ds.sizes["spectrum"], self.value)

    def describe(self) -> dict[str, Any]:
        return {"candidate": "mean", "mean": self.value}


@dataclass
class MeanCandidate:
    """The no-skill reference (null control): any model worth serving must beat it."""

    name: str = "mean"

    def fit(self, train: xr.Dataset, analyte: str) -> FittedMean:
        train = _labelled(train, analyte)
        y = np.asarray(train[analyte].values, dtype=np.float64)
        sids = np.asarray(train["sample_id"].values).astype(str)
        samples = sample_ids(train)
        return FittedMean(float(np.mean([y[sids == s].mean() for s in samples])), samples)


def _xyg(train: xr.Dataset, analyte: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return (
        np.asarray(train["intensity"].values, dtype=np.float64),
        np.asarray(train["wavelength"].values, dtype=np.float64),
        np.asarray(train[analyte].values, dtype=np.float64),
        np.asarray(train["sample_id"].values).astype(str),
    )


@dataclass
class _BaselineCandidate:
    """Shared fit of the two baseline families (the estimator class differs)."""

    lines: Sequence[dict] | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    name = "baseline"
    kind = "baseline"

    def _estimator(self, lines, saturation):  # pragma: no cover - overridden
        raise NotImplementedError

    def fit(self, train: xr.Dataset, analyte: str) -> FittedCandidate:
        train = _labelled(train, analyte)
        windows = resolve_lines(analyte, list(self.lines) if self.lines else None)
        saturation = saturation_level(train)
        estimator = self._estimator(windows, saturation)
        x, wl, y, groups = _xyg(train, analyte)
        estimator.fit(x, wl, y, groups)
        samples = sample_ids(train)
        choice = dict(getattr(estimator, "choice_", {}) or {})
        model = BaselineModel(
            kind=self.kind,
            analyte=analyte,
            units=str(train[analyte].attrs.get("units", "")),
            wavelength=wl,
            lines=[w.to_dict() for w in windows],
            estimator=estimator,
            metrics={"train_samples": samples, "val_samples": [], "choice": choice, "saturation": saturation},
        )
        return FittedCandidate(self.name, model, samples, {"choice": choice, "saturation": saturation})


@dataclass
class UnivariateCandidate(_BaselineCandidate):
    """Line-area calibration; line, normalisation and calibration form chosen by inner leave-one-sample-out."""

    name = "univariate"
    kind = "univariate"

    def _estimator(self, lines, saturation):
        return SelectedUnivariate(lines, saturation=saturation, **dict(self.options))


@dataclass
class PLSCandidate(_BaselineCandidate):
    """PLS on the full spectrum or analyte windows; region, normalisation and components by inner LOSO."""

    name = "pls"
    kind = "pls"

    def _estimator(self, lines, saturation):
        return SelectedPLS(lines, saturation=saturation, **dict(self.options))


@dataclass
class CNNCandidate:
    """A 1-D CNN (multitask or single-task), optionally trained on Poisson-augmented spectra of its own
    training samples; fixed step budget from ``training`` (TrainingConfig fields)."""

    name: str = "multitask_aug"
    training: Mapping[str, Any] = field(default_factory=dict)
    per_sample: int = 0
    seed: int = 0

    def fit(self, train: xr.Dataset, analyte: str) -> FittedCandidate:
        from libs_pipeline.config import TrainingConfig
        from libs_pipeline.models import train_model
        from libs_pipeline.synth.in_memory import synthesize_in_memory

        train = _labelled(train, analyte).load()
        sources: list[xr.Dataset] = [train]
        if self.per_sample > 0:
            sources.append(synthesize_in_memory(train, self.per_sample, self.seed))
        options = {**SMALL_CAMPAIGN_TRAINING, **dict(self.training)}
        options.setdefault("saturation", saturation_level(train))
        config = TrainingConfig(analyte=analyte, augmentation=self.per_sample > 0, seed=self.seed, **options)
        model = train_model(sources, config)
        samples = sample_ids(train)
        details = {"per_sample": self.per_sample, "steps": model.metrics.get("steps"),
                   "training": config.model_dump(mode="json", exclude={"measured_uris", "synthetic_uris", "val_uris"})}
        return FittedCandidate(self.name, model, samples, details)


def default_candidates(
    names: Sequence[str],
    *,
    lines: Sequence[dict] | None = None,
    training: Mapping[str, Any] | None = None,
    per_sample: int = DEFAULT_SYNTHETIC_PER_SAMPLE,
    seed: int = 0,
) -> dict[str, Any]:
    """The named candidates with the project's small-campaign defaults (``training`` overrides the CNNs')."""
    unknown = [n for n in names if n not in CANDIDATE_NAMES]
    if unknown:
        raise ValueError(f"unknown candidate(s) {unknown}; known: {list(CANDIDATE_NAMES)}")
    training = dict(training or {})
    made: dict[str, Any] = {}
    for name in names:
        if name == "univariate":
            made[name] = UnivariateCandidate(lines=lines)
        elif name == "pls":
            made[name] = PLSCandidate(lines=lines)
        elif name == "single_task":
            made[name] = CNNCandidate(name, {**training, "multitask": False}, 0, seed)
        elif name == "multitask":
            made[name] = CNNCandidate(name, training, 0, seed)
        elif name == "multitask_aug":
            made[name] = CNNCandidate(name, training, per_sample, seed)
        elif name == "multitask_physics":
            raise ValueError("candidate 'multitask_physics' needs a physics-matched pretraining set (not available)")
    return made


__all__ = [
    "CANDIDATE_NAMES",
    "CNNCandidate",
    "FittedCandidate",
    "FittedMean",
    "MeanCandidate",
    "PLSCandidate",
    "UnivariateCandidate",
    "default_candidates",
    "saturation_level",
]
