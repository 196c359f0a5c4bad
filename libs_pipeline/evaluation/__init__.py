"""Metrics, homoscedasticity, figures and reports.

Modules: ``metrics`` (RMSEP, MAE, bias, R^2, Breusch-Pagan, tertile spread, ``evaluate_methods``),
``split`` (by sample), ``plots``, ``report``, ``run`` (one evaluation run);
for small campaigns: ``protocol`` (Candidate contract, ``use_nested_protocol``), ``nested`` (LOSO and nested
LOSO with a served model), ``small_campaign`` (per-sample metrics with bootstrap interval and error slope, the paired difference
of two methods' RMSEP with its interval),
``leak_check`` (memorising-candidate test for any evaluator).
"""

from libs_pipeline.evaluation.metrics import (
    breusch_pagan_p,
    evaluate_methods,
    per_sample_predictions,
    regression_metrics,
    residual_spread_by_tertile,
)
from libs_pipeline.evaluation.nested import LosoResult, NestedResult, loso_predictions, nested_loso
from libs_pipeline.evaluation.protocol import Candidate, FittedCandidate, LeakError, use_nested_protocol
from libs_pipeline.evaluation.small_campaign import paired_rmsep_difference, small_campaign_metrics

__all__ = [
    "Candidate",
    "FittedCandidate",
    "LeakError",
    "LosoResult",
    "NestedResult",
    "breusch_pagan_p",
    "evaluate_methods",
    "loso_predictions",
    "nested_loso",
    "paired_rmsep_difference",
    "per_sample_predictions",
    "regression_metrics",
    "residual_spread_by_tertile",
    "small_campaign_metrics",
    "use_nested_protocol",
]
