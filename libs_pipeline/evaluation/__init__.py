"""Metrics, homoscedasticity, figures and reports."""
