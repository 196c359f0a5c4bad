"""Baseline removal, emission-line windows and line areas (auxiliary targets, univariate input)."""

from libs_pipeline.features.baseline import estimate_baseline, remove_baseline
from libs_pipeline.features.line_features import (
    auxiliary_names,
    auxiliary_targets,
    dataset_line_features,
    feature_column,
    line_features,
)
from libs_pipeline.features.lines import LineWindow, default_lines, resolve_lines

__all__ = [
    "LineWindow",
    "auxiliary_names",
    "auxiliary_targets",
    "dataset_line_features",
    "default_lines",
    "estimate_baseline",
    "feature_column",
    "line_features",
    "remove_baseline",
    "resolve_lines",
]
