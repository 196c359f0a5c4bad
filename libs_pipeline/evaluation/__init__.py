"""Metrics, homoscedasticity, figures and reports.

Modules: ``metrics`` (RMSEP, MAE, bias, R^2, Breusch-Pagan, tertile spread, ``evaluate_methods``),
``split`` (by sample), ``crossval`` (leave-one-sample-out), ``plots``, ``report``, ``run`` (one evaluation run).
"""

from libs_pipeline.evaluation.metrics import (
    breusch_pagan_p,
    evaluate_methods,
    per_sample_predictions,
    regression_metrics,
    residual_spread_by_tertile,
)

__all__ = [
    "breusch_pagan_p",
    "evaluate_methods",
    "per_sample_predictions",
    "regression_metrics",
    "residual_spread_by_tertile",
]
