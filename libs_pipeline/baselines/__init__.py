"""Baseline calibrations a chemist would use: univariate line area, PLS."""
