"""Wavelength-grid equality and moving spectra onto a model's grid: one tolerance, one resampler."""

from __future__ import annotations

import numpy as np
import xarray as xr

#: Two grids are the same when every channel agrees within this many nm.
GRID_ATOL_NM = 1e-6


def same_grid(a: np.ndarray, b: np.ndarray) -> bool:
    """True when the two wavelength grids have the same channels (within GRID_ATOL_NM)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=0.0, atol=GRID_ATOL_NM))


def intensity_on_grid(
    ds: xr.Dataset, wavelength: np.ndarray, rows: slice | np.ndarray | None = None, resample: bool = False
) -> np.ndarray:
    """Intensity of ``rows`` (all by default) on ``wavelength``: equal grids pass, others only with ``resample``
    (linear interpolation, never extrapolation)."""
    wl = np.asarray(ds["wavelength"].values, dtype=np.float64)
    data = ds["intensity"] if rows is None else ds["intensity"].isel(spectrum=rows)
    x = np.asarray(data.values, dtype=np.float32)
    target = np.asarray(wavelength, dtype=np.float64)
    if same_grid(wl, target):
        return x
    if not resample:
        raise ValueError(
            f"spectra wavelength grid ({wl.size} channels, {wl[0]:.3f}-{wl[-1]:.3f} nm) differs from the model's "
            f"({target.size} channels, {target[0]:.3f}-{target[-1]:.3f} nm); pass resample=True to interpolate"
        )
    if wl[0] > target[0] or wl[-1] < target[-1]:
        raise ValueError(
            f"cannot resample: spectra cover {wl[0]:.3f}-{wl[-1]:.3f} nm, the model needs {target[0]:.3f}-{target[-1]:.3f} nm"
        )
    return np.stack([np.interp(target, wl, row) for row in x]).astype(np.float32)


__all__ = ["GRID_ATOL_NM", "intensity_on_grid", "same_grid"]
