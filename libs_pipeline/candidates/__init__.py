"""Model families that recalibration trains and compares (univariate, PLS, multitask CNNs), as servable models.

A *candidate* makes every data-driven choice inside ``fit(train, analyte)`` from the spectra it is given
(the protocol of ``libs_pipeline.evaluation.nested``); the fitted result is a *servable model*: the same
predict, trust and registry path whatever the family. ``load_servable`` opens any saved model directory.
"""

from libs_pipeline.candidates.baseline_model import BASELINE_FILE, BaselineModel, load_baseline, save_baseline
from libs_pipeline.candidates.families import (
    CANDIDATE_NAMES,
    CNNCandidate,
    FittedCandidate,
    MeanCandidate,
    PLSCandidate,
    UnivariateCandidate,
    default_candidates,
)
from libs_pipeline.candidates.servable import load_servable, save_servable, servable_kind

__all__ = [
    "BASELINE_FILE",
    "CANDIDATE_NAMES",
    "BaselineModel",
    "CNNCandidate",
    "FittedCandidate",
    "MeanCandidate",
    "PLSCandidate",
    "UnivariateCandidate",
    "default_candidates",
    "load_baseline",
    "load_servable",
    "save_baseline",
    "save_servable",
    "servable_kind",
]
