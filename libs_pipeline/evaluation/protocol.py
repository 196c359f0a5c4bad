"""What a model family must look like to be evaluated honestly, and when a held-out split is too small.

A ``Candidate`` makes every data-driven choice (normalisation, line windows, PLS components, step
budget, early stopping, synthetic spectra...) inside ``fit`` from the training spectra it is given,
and nothing else; the ``FittedCandidate`` it returns declares in ``train_samples`` every sample whose
spectra it used. The evaluators (``libs_pipeline.evaluation.nested``) hand ``fit`` only the training
samples' spectra and refuse (``LeakError``) a fit that declares a held-out sample.

When to use nested leave-one-sample-out instead of a held-out split (``use_nested_protocol``): a
held-out set of k samples gives k independent errors, and the RMSEP from k errors has a relative
standard error of about 1/sqrt(2k) (> 35 % for k < 4), while one unlucky sample dominates it; and with
fewer than 12 samples, holding out a third removes a large part of the calibration range from
training. So with fewer than ``MIN_SAMPLES_FOR_HELDOUT`` labelled samples, or fewer than
``MIN_HELDOUT_SAMPLES`` held-out samples, a held-out score means nothing and nested LOSO (every
sample predicted once, model choice made inside each fold) is the protocol to report.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol, runtime_checkable

import numpy as np
import xarray as xr

MIN_SAMPLES_FOR_HELDOUT = 12
MIN_HELDOUT_SAMPLES = 4


class LeakError(ValueError):
    """An evaluated model saw spectra of a sample it is scored on."""


def check_disjoint_roles(roles: Mapping[str, Iterable[str]]) -> None:
    """Raise ``LeakError`` naming the sample and both roles when a sample has two roles (e.g. training,
    early stopping, trust calibration, test): every fitted choice must see only the samples of its role."""
    seen: dict[str, str] = {}
    for role, samples in roles.items():
        for sample in map(str, samples):
            if sample in seen and seen[sample] != role:
                raise LeakError(f"sample {sample!r} is used for both {seen[sample]} and {role}; the roles must be disjoint")
            seen[sample] = role


@runtime_checkable
class FittedCandidate(Protocol):
    """A fitted model: the samples it learnt from, and a per-spectrum concentration for any dataset.

    ``train_samples`` lists every sample whose spectra the fit used, including those used only for early
    stopping, inner cross-validation or synthesising spectra. An optional ``describe() -> dict`` (JSON-able)
    is kept by the evaluators as the fold's description (chosen components, window, steps...).
    """

    train_samples: list[str]

    def predict_dataset(self, ds: xr.Dataset) -> np.ndarray:
        """Concentration of every spectrum of ``ds`` (float64, shape (n_spectra,))."""
        ...


@runtime_checkable
class Candidate(Protocol):
    """A model family: ``fit`` makes all its data-driven choices from ``train`` only."""

    name: str

    def fit(self, train: xr.Dataset, analyte: str) -> FittedCandidate:
        """Fit on the spectra of ``train`` (label variable ``analyte``, all finite)."""
        ...


def heldout_count(n_samples: int, heldout_fraction: float) -> int:
    """Held-out samples a seeded split draws: round(fraction * n), at least 1 (as ``spectra.sample_splits.split_samples``)."""
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 2:
        raise ValueError(f"n_samples must be an integer >= 2, got {n_samples!r}")
    if not 0.0 < heldout_fraction < 1.0:
        raise ValueError(f"heldout_fraction must be in (0, 1), got {heldout_fraction}")
    return min(max(1, int(round(heldout_fraction * n_samples))), int(n_samples) - 1)


def use_nested_protocol(n_samples: int, heldout_fraction: float) -> bool:
    """True when a held-out split of ``n_samples`` labelled samples is too small to mean anything (see module doc)."""
    k = heldout_count(n_samples, heldout_fraction)
    return n_samples < MIN_SAMPLES_FOR_HELDOUT or k < MIN_HELDOUT_SAMPLES
