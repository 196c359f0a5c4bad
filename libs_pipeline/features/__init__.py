"""Baseline removal, emission-line windows and line areas (auxiliary targets, univariate input)."""
