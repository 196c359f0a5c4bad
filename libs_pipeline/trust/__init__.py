"""Trustworthiness: consistency scores, threshold calibration, out-of-distribution evaluation."""
