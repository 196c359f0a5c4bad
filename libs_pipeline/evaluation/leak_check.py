"""A test any evaluator can be put through: a memorising candidate must score exactly like the mean predictor.

``MemorisingCandidate`` remembers every training spectrum (by its exact intensity bytes) with its label
and predicts the remembered label for a spectrum it recognises, else the mean training label. Under an
honest protocol it never sees a scored spectrum, so each held-out sample s gets the mean label of the
other samples, and the per-sample RMSEP is n/(n-1) times the population std of the n labels. Any leak
of held-out spectra into ``fit`` makes it recognise them and score better: ``assert_protocol_leaks_nothing``
raises AssertionError then.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import xarray as xr

from libs_pipeline.spectra.dataset import make_spectra_dataset, sample_ids, spectrum_sample_ids

Evaluate = Callable[[xr.Dataset, str, object], np.ndarray]
LEAK_ANALYTE = "Na"


class FittedMemory:
    """Remembered spectra (intensity bytes -> label) and the mean training label."""

    def __init__(self, train: xr.Dataset, analyte: str) -> None:
        y = np.asarray(train[analyte].values, dtype=np.float64)
        rows = np.asarray(train["intensity"].values)
        self.known = {row.tobytes(): float(v) for row, v in zip(rows, y)}
        self.mean = float(y.mean())
        self.train_samples = sample_ids(train)

    def predict_dataset(self, ds: xr.Dataset) -> np.ndarray:
        rows = np.asarray(ds["intensity"].values)
        return np.array([self.known.get(row.tobytes(), self.mean) for row in rows], dtype=np.float64)


class MemorisingCandidate:
    """A candidate that is perfect on spectra it has seen and no better than the mean elsewhere."""

    name = "memorising"

    def fit(self, train: xr.Dataset, analyte: str) -> FittedMemory:
        return FittedMemory(train, analyte)


def memory_campaign(n_samples: int = 5, n_shots: int = 3, n_channels: int = 8, seed: int = 0) -> xr.Dataset:
    """Random spectra (every row distinct) with distinct per-sample labels ``Na`` in ppm."""
    rng = np.random.default_rng(seed)
    labels = np.round(rng.uniform(100.0, 20000.0, n_samples), 1)
    return make_spectra_dataset(
        rng.uniform(0.0, 1000.0, (n_samples * n_shots, n_channels)),
        np.linspace(300.0, 400.0, n_channels),
        np.repeat([f"M{i}" for i in range(n_samples)], n_shots),
        np.tile(np.arange(n_shots), n_samples),
        labels={LEAK_ANALYTE: (np.repeat(labels, n_shots), "ppm")},
    )


def assert_protocol_leaks_nothing(evaluate: Evaluate, n_samples: int = 5) -> None:
    """Raise AssertionError unless ``evaluate(ds, analyte, candidate)`` gives the memoriser the mean-predictor's error.

    ``evaluate`` returns one out-of-sample prediction per row of ``ds``.
    """
    ds = memory_campaign(n_samples=n_samples)
    y = np.asarray(ds[LEAK_ANALYTE].values, dtype=np.float64)
    sids = spectrum_sample_ids(ds)
    pred = np.asarray(evaluate(ds, LEAK_ANALYTE, MemorisingCandidate()), dtype=np.float64)
    if pred.shape != y.shape:
        raise AssertionError(f"evaluate returned {pred.shape} predictions for {y.size} spectra")
    expected = np.array([y[sids != s].mean() for s in sids])
    wrong = np.flatnonzero(~np.isclose(pred, expected, rtol=1e-12, atol=0.0))
    if wrong.size:
        i = int(wrong[0])
        raise AssertionError(
            f"the memorising candidate predicted {pred[i]} for spectrum {i} (sample {sids[i]}) instead of "
            f"{expected[i]}, the mean label of the other samples: held-out spectra reached fit"
        )
    per_sample = np.array([pred[sids == s].mean() - y[sids == s][0] for s in sample_ids(ds)])
    labels = np.array([y[sids == s][0] for s in sample_ids(ds)])
    rmsep = float(np.sqrt(np.mean(per_sample**2)))
    closed_form = n_samples / (n_samples - 1) * float(np.std(labels))
    if not np.isclose(rmsep, closed_form, rtol=1e-9):
        raise AssertionError(f"memoriser per-sample RMSEP {rmsep} differs from the mean-predictor's {closed_form}")
