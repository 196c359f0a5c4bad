"""Baseline calibrations a chemist would use: univariate line area, PLS."""

from libs_pipeline.baselines.pls import PLSCalibration, normalise_total
from libs_pipeline.baselines.univariate import UnivariateCalibration, group_means

__all__ = ["PLSCalibration", "UnivariateCalibration", "group_means", "normalise_total"]
