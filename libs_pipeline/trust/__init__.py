"""Trustworthiness: consistency scores, threshold calibration, out-of-distribution evaluation.

Modules by role: ``scales`` (line calibrations and the scales of the parts), ``calibration`` (``TrustCalibration``,
``trust.json``), ``fitting`` (learning a calibration), ``scores`` (applying it), ``measurements`` (what is measured
on a spectrum), ``prediction`` (a model's outputs with trust).

Public API (no torch import here; ``prediction`` loads models lazily):
``fit_trust_calibration`` (held-out validation spectra), ``fit_trust_calibration_oof`` (out-of-fold
predictions on the training spectra), ``TrustCalibration`` (``disabled_parts``: part -> why it is off),
``save_trust`` / ``load_trust`` (``trust.json`` in the model directory), ``measure_spectra``,
``SpectralReference``, ``trust_scores``, ``sample_trust``, ``auroc``, ``flag_metrics``; model-level glue in
``libs_pipeline.trust.prediction`` (``calibrate_model_trust``, ``calibrate_trust_from_oof``,
``predict_with_trust``); the predict application (model resolution, tables) is ``libs_pipeline.prediction``.
"""

from libs_pipeline.trust.calibration import TRUST_FILE, TrustCalibration, load_trust, save_trust
from libs_pipeline.trust.fitting import calibrate_threshold, fit_trust_calibration, fit_trust_calibration_oof
from libs_pipeline.trust.measurements import SpectralReference, measure_spectra
from libs_pipeline.trust.ood_evaluation import auroc, flag_metrics, roc_curve
from libs_pipeline.trust.scores import sample_trust, trust_parts, trust_scores

__all__ = [
    "TRUST_FILE",
    "SpectralReference",
    "TrustCalibration",
    "auroc",
    "calibrate_threshold",
    "fit_trust_calibration",
    "fit_trust_calibration_oof",
    "flag_metrics",
    "load_trust",
    "measure_spectra",
    "roc_curve",
    "sample_trust",
    "save_trust",
    "trust_parts",
    "trust_scores",
]
