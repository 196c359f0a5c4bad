"""Recalibration as plain Python: compare candidate families on the same samples, serve the best honest one.

``loso_selection``: leave-one-sample-out comparison, choice and refit for small campaigns;
``loso_run``: one such recalibration step on a stored spectra version (what the recalibrate flow calls).
"""

from libs_pipeline.recalibration.decisions import champion_family, choose_protocol, decide_loso_promotion
from libs_pipeline.recalibration.holdout_baseline import SERVABLE_BASELINES, best_on_heldout, serve_heldout_baseline
from libs_pipeline.recalibration.loso_run import NoLabelsError, labelled_spectra, run_loso_recalibration
from libs_pipeline.recalibration.realism_gate import RealismEligibility, augmented_families, realism_exclusions
from libs_pipeline.recalibration.loso_selection import (
    CandidateComparison,
    Selection,
    ServedModel,
    choose_served,
    compare_by_loso,
    fit_served,
)

__all__ = [
    "RealismEligibility",
    "augmented_families",
    "realism_exclusions",
    "CandidateComparison",
    "NoLabelsError",
    "Selection",
    "SERVABLE_BASELINES",
    "ServedModel",
    "best_on_heldout",
    "champion_family",
    "choose_protocol",
    "decide_loso_promotion",
    "choose_served",
    "compare_by_loso",
    "fit_served",
    "labelled_spectra",
    "run_loso_recalibration",
    "serve_heldout_baseline",
]
