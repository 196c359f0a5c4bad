"""Fakes of the trust tests: a fast multitask stand-in for the CNN (ridge on mean-normalised spectra), toy campaigns
with prefixed sample ids, and a small trained CNN directory with its trust.json.

The stand-in mimics what trust relies on from ``TrainedModel``: ``predict(intensity) -> {task: array}`` with
the analyte first and ``<line>:area`` auxiliaries, computed from total-normalised spectra as the network does.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import Ridge

from libs_pipeline.config import TrainingConfig
from libs_pipeline.features.line_features import line_features
from libs_pipeline.testing import toy_campaign
from libs_pipeline.trust.calibration import save_trust
from libs_pipeline.trust.prediction import calibrate_model_trust


class RidgeStandIn:
    """Ridge regression from mean-normalised spectra to [analyte, line areas] (tests only)."""

    def __init__(self, analyte: str, lines, alpha: float = 1e-3) -> None:
        self.analyte = analyte
        self.lines = list(lines)
        self.task_names = [analyte] + [f"{ln.name}:area" for ln in self.lines]
        self.alpha = alpha

    @staticmethod
    def _x(intensity: np.ndarray) -> np.ndarray:
        x = np.clip(np.asarray(intensity, dtype=np.float64), 0, None)
        return x / x.mean(axis=1, keepdims=True)

    def fit(self, ds):
        self.wavelength = ds["wavelength"].values
        areas = line_features(ds["intensity"].values, self.wavelength, self.lines)
        y = np.column_stack([ds[self.analyte].values] + [areas[t].to_numpy() for t in self.task_names[1:]])
        self._mu, self._sd = y.mean(axis=0), y.std(axis=0)
        self._ridge = Ridge(alpha=self.alpha).fit(self._x(ds["intensity"].values), (y - self._mu) / self._sd)
        return self

    def predict(self, intensity: np.ndarray) -> dict[str, np.ndarray]:
        y = self._ridge.predict(self._x(intensity)) * self._sd + self._mu
        return {t: y[:, j].astype(np.float32) for j, t in enumerate(self.task_names)}


def toy(prefix: str, **kwargs):
    """A toy campaign whose sample ids carry ``prefix`` (so splits never share ids)."""
    ds = toy_campaign(**kwargs)
    return ds.assign(sample_id=("spectrum", np.char.add(prefix, ds["sample_id"].values.astype(str))))


def build_toy_model_dir(directory):
    """Train a small multitask CNN on toy data (a few seconds on CPU) and save it with its trust.json."""
    from libs_pipeline.models import save_model, train_model  # torch, only when a network is trained

    train = toy("T", n_samples=8, n_shots=20, seed=10)
    early_stop = toy("E", n_samples=4, n_shots=10, seed=13, cu_range=(0.2, 4.8))
    validation = toy("V", n_samples=10, n_shots=30, seed=11, cu_range=(0.15, 4.9))
    config = TrainingConfig(
        analyte="Cu", augmentation=False, max_steps=150, eval_every=50, progress_bar=False, device="cpu", seed=0
    )
    model = train_model([train], config, val_sources=[early_stop])
    directory = save_model(model, directory)
    save_trust(calibrate_model_trust(model, train, validation), directory)
    return directory


__all__ = ["RidgeStandIn", "build_toy_model_dir", "toy"]
