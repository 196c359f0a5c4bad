"""Simulation-based augmentation: per-sample noise model, sampling, Dask generation, realism report."""
