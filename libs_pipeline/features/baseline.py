"""Whole-spectrum baseline (continuum) removal, vectorised over many spectra.

Rolling-minimum method: light smoothing against noise, a morphological opening (rolling minimum
then rolling maximum, ``window_nm`` wide: wider than any line, narrower than continuum curvature)
and a moving-average smoothing of the opened curve. The opening follows noise minima (biased low by
about two noise sigmas), so a few refinement passes replace it by the moving average of the channels
lying less than ``clip_sigma`` noise sigmas above the current baseline. Vectorised over (n, m) arrays.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import maximum_filter1d, minimum_filter1d, uniform_filter1d

from libs_pipeline.features.line_features import validate_wavelength


def _channels(width_nm: float, step_nm: float, what: str) -> int:
    if not np.isfinite(width_nm) or width_nm <= 0:
        raise ValueError(f"{what} must be a positive number of nm, got {width_nm}")
    return max(1, int(round(width_nm / step_nm)) | 1)  # odd, so the filters are centred


def estimate_baseline(
    intensity: np.ndarray,
    wavelength: np.ndarray,
    window_nm: float = 4.0,
    noise_smooth_nm: float | None = 0.3,
    smooth_nm: float | None = None,
    refine_iterations: int = 3,
    clip_sigma: float = 2.5,
) -> np.ndarray:
    """Baseline of every spectrum (float32, same shape as ``intensity``: (m,) or (n, m)).

    ``window_nm``: opening width (> widest line incl. wings); ``noise_smooth_nm``: pre-smoothing
    (None = off); ``smooth_nm``: final smoothing width (default = ``window_nm``);
    ``refine_iterations`` (0 = plain smoothed opening) and ``clip_sigma``: de-biasing passes.
    """
    if refine_iterations < 0:
        raise ValueError(f"refine_iterations must be >= 0, got {refine_iterations}")
    if not clip_sigma > 0:
        raise ValueError(f"clip_sigma must be > 0, got {clip_sigma}")
    wl = validate_wavelength(wavelength)
    arr = np.asarray(intensity)
    if arr.ndim not in (1, 2) or arr.shape[-1] != wl.size:
        raise ValueError(
            f"intensity: shape {arr.shape} does not match the wavelength grid of {wl.size} channels"
        )
    if wl.size < 2:
        raise ValueError("wavelength: need at least 2 channels")
    step = float(np.median(np.diff(wl)))
    work = np.asarray(arr, dtype=np.float64)
    if noise_smooth_nm is not None:
        work = uniform_filter1d(work, _channels(noise_smooth_nm, step, "noise_smooth_nm"), axis=-1, mode="nearest")
    w = _channels(window_nm, step, "window_nm")
    opened = maximum_filter1d(minimum_filter1d(work, w, axis=-1, mode="nearest"), w, axis=-1, mode="nearest")
    s = _channels(window_nm if smooth_nm is None else smooth_nm, step, "smooth_nm")
    baseline = np.minimum(uniform_filter1d(opened, s, axis=-1, mode="nearest"), work)
    if refine_iterations:
        raw = np.asarray(arr, dtype=np.float64)
        sigma = _noise_sigma(raw)
        for _ in range(refine_iterations):
            keep = (raw - baseline < clip_sigma * sigma).astype(np.float64)
            weight = uniform_filter1d(keep, s, axis=-1, mode="nearest")
            mean = uniform_filter1d(raw * keep, s, axis=-1, mode="nearest")
            has = weight > 1e-9
            baseline = np.where(has, mean / np.where(has, weight, 1.0), baseline)
    return baseline.astype(np.float32)


def _noise_sigma(raw: np.ndarray) -> np.ndarray:
    """Per-spectrum white-noise sigma from the median absolute first difference (robust to lines)."""
    d = np.abs(np.diff(raw, axis=-1))
    sigma = 1.4826 * np.median(d, axis=-1, keepdims=True) / np.sqrt(2.0)
    return np.maximum(sigma, np.finfo(np.float64).tiny)


def remove_baseline(intensity: np.ndarray, wavelength: np.ndarray, **options: float | int | None) -> np.ndarray:
    """``intensity - estimate_baseline(intensity, wavelength, **options)`` as float32 (same shape as ``intensity``);
    ``options`` are the keyword arguments of ``estimate_baseline``."""
    baseline = estimate_baseline(intensity, wavelength, **options)
    return (np.asarray(intensity, dtype=np.float32) - baseline).astype(np.float32)
