"""Known synthetic lines for tests: pixel-averaged Gaussian/Voigt profiles of known area on a sloped baseline."""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr, voigt_profile

VIRTUAL_GRID = (250.0, 850.0, 4096)  # the virtual Al campaign's default grid (~0.147 nm/channel)
FWHM_NM = 0.1  # virtual instrument FWHM


def grid(start: float = VIRTUAL_GRID[0], stop: float = VIRTUAL_GRID[1], n: int = VIRTUAL_GRID[2]) -> np.ndarray:
    return np.linspace(start, stop, n)


def edges(wl: np.ndarray) -> np.ndarray:
    e = np.empty(wl.size + 1)
    e[1:-1] = 0.5 * (wl[1:] + wl[:-1])
    e[0] = wl[0] - 0.5 * (wl[1] - wl[0])
    e[-1] = wl[-1] + 0.5 * (wl[-1] - wl[-2])
    return e


def gaussian_line(wl: np.ndarray, center: float, area: float, fwhm: float = FWHM_NM) -> np.ndarray:
    """Mean flux density over each pixel of a Gaussian of total ``area`` (what a detector pixel records)."""
    e = edges(wl)
    sigma = fwhm / (2.0 * np.sqrt(2.0 * np.log(2.0)))
    return area * np.diff(ndtr((e - center) / sigma)) / np.diff(e)


def voigt_line(
    wl: np.ndarray, center: float, area: float, gauss_fwhm: float = FWHM_NM, lorentz_fwhm: float = 0.01, sub: int = 64
) -> np.ndarray:
    """Pixel-averaged Voigt profile of total ``area`` (numerical average over ``sub`` points per pixel)."""
    e = edges(wl)
    sigma = gauss_fwhm / (2.0 * np.sqrt(2.0 * np.log(2.0)))
    frac = (np.arange(sub) + 0.5) / sub
    points = e[:-1, None] + np.diff(e)[:, None] * frac[None, :]
    return area * voigt_profile(points - center, sigma, lorentz_fwhm / 2.0).mean(axis=1)


def sloped_baseline(wl: np.ndarray, level: float = 600.0, slope: float = 0.8) -> np.ndarray:
    """Counts rising linearly with wavelength (``slope`` counts per nm)."""
    return level + slope * (wl - wl[0])
