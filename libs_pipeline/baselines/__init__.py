"""Baseline calibrations a chemist would use: univariate line area, PLS, and their LOSO-selected variants."""

from libs_pipeline.baselines.internal_standards import ROCK_INTERNAL_STANDARDS, default_internal_standards
from libs_pipeline.baselines.pls import PLSCalibration, normalise_total
from libs_pipeline.baselines.pls_selection import SelectedPLS
from libs_pipeline.baselines.univariate import UnivariateCalibration, group_means
from libs_pipeline.baselines.univariate_selection import SelectedUnivariate

__all__ = [
    "PLSCalibration",
    "ROCK_INTERNAL_STANDARDS",
    "SelectedPLS",
    "SelectedUnivariate",
    "UnivariateCalibration",
    "default_internal_standards",
    "group_means",
    "normalise_total",
]
