"""What trust measures directly on every new spectrum: line areas, mean intensity, and its alignment and
similarity to the training spectra (wavelength offset and correlation against a stored reference)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.ndimage import uniform_filter1d
from scipy.stats import norm

from libs_pipeline.features.line_features import line_features
from libs_pipeline.features.lines import LineWindow
from libs_pipeline.spectra.totals import spectrum_totals

MEAN_INTENSITY = "mean_intensity"
OFFSET_CHANNELS = "wavelength_offset_channels"
CORRELATION = "spectral_correlation"
NOISE_PER_COUNT = "log_noise_per_count"


def mean_intensity(intensity: np.ndarray) -> np.ndarray:
    """Mean of the non-negative counts of each spectrum: ``spectra.totals.spectrum_totals``, which the model's
    total normalisation divides by."""
    return spectrum_totals(intensity)


NOISE_QUANTILE = 0.1
NOISE_MIN_COUNTS = 20.0


def log_noise_per_count(intensity: np.ndarray) -> np.ndarray:
    """log of the shot-noise variance per count of each spectrum: the detector gain, independent of brightness.

    Counts of a photon-limited detector have variance = gain x mean, so the second difference
    d_i = x_i - (x_(i-1) + x_(i+1))/2 (variance 1.5 x gain x level on a smooth stretch) divided by
    sqrt(1.5 x level) has a spread of sqrt(gain). A low quantile (10 %) of |d| over the channels with at least
    20 counts (no quantisation), scaled to a normal's, ignores the lines, which only raise |d|. A gain change
    (x0.5 on OREAS: -0.69 against a robust spread of 0.13 over the seven rocks' shots) moves it, a brighter or
    darker sample does not; spectra resampled from another grid (smoothed noise) fall far below.
    """
    x = np.asarray(intensity, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"intensity must be 2-D (spectra, channels), got shape {x.shape}")
    if x.shape[1] < 3:
        return np.full(x.shape[0], np.nan)
    mid = x[:, 1:-1]
    z = np.abs(mid - 0.5 * (x[:, :-2] + x[:, 2:])) / np.sqrt(1.5 * np.clip(mid, 1.0, None))
    bright = mid >= NOISE_MIN_COUNTS
    enough = bright.sum(axis=1) >= 30
    z = np.where(bright | ~enough[:, None], z, np.nan)
    q = np.nanquantile(z, NOISE_QUANTILE, axis=1) / norm.ppf(0.5 + NOISE_QUANTILE / 2)
    with np.errstate(divide="ignore"):
        return np.where(q > 0, 2.0 * np.log(np.where(q > 0, q, 1.0)), -np.inf)


def _highpass(intensity: np.ndarray, width: int) -> np.ndarray:
    """Total-normalised spectra minus their running mean over ``width`` channels: lines, not baseline."""
    x = np.clip(np.asarray(intensity, dtype=np.float64), 0.0, None)
    total = spectrum_totals(x)[:, None]
    x = x / np.where(total > 0, total, 1.0)
    return x - uniform_filter1d(x, size=width, axis=1, mode="nearest")


def _check_reference_settings(wavelength: np.ndarray, highpass_channels: int, max_lag: int) -> np.ndarray:
    """The wavelength axis as float64, after checking the reference's filter width and lag range fit it."""
    wl = np.asarray(wavelength, dtype=np.float64)
    if max_lag < 1 or wl.size < 4 * max_lag + 2:
        raise ValueError(f"need max_lag >= 1 and more than {4 * max_lag + 1} channels, got {wl.size}")
    if highpass_channels < 3:
        raise ValueError(f"highpass_channels must be >= 3, got {highpass_channels}")
    return wl


def highpass_sum(intensity: np.ndarray, width: int) -> np.ndarray:
    """Sum over spectra of the high-passed, total-normalised spectra (what a spectral reference averages)."""
    return _highpass(intensity, width).sum(axis=0)


@dataclass
class SpectralReference:
    """High-passed mean training spectrum; a new spectrum's offset (channels, sub-channel by a parabola through
    the cross-correlation peak) and peak correlation against it say whether the axis and the shape still match."""

    reference: np.ndarray
    channel_nm: float
    highpass_channels: int = 31
    max_lag: int = 10

    @classmethod
    def fit(
        cls,
        intensity: np.ndarray | Iterable[np.ndarray],
        wavelength: np.ndarray,
        highpass_channels: int = 31,
        max_lag: int = 10,
    ) -> SpectralReference:
        """From training spectra: an array (n, m) or an iterable of such blocks (streamed, never all loaded)."""
        wl = _check_reference_settings(wavelength, highpass_channels, max_lag)
        blocks = [intensity] if isinstance(intensity, np.ndarray) else intensity
        total, count = np.zeros(wl.size), 0
        for block in blocks:
            x = np.asarray(block)
            if x.ndim != 2 or x.shape[1] != wl.size:
                raise ValueError(f"intensity block shape {x.shape} does not match {wl.size} wavelength channels")
            total += highpass_sum(x, highpass_channels)
            count += x.shape[0]
        return cls.from_sum(total, count, wl, highpass_channels, max_lag)

    @classmethod
    def from_sum(
        cls, total: np.ndarray, count: int, wavelength: np.ndarray, highpass_channels: int = 31, max_lag: int = 10
    ) -> SpectralReference:
        """From ``highpass_sum`` totals of ``count`` spectra (sums of disjoint groups add, so a reference that
        leaves one sample out is the total minus that sample's sum)."""
        wl = _check_reference_settings(wavelength, highpass_channels, max_lag)
        if count <= 0:
            raise ValueError("no training spectra for the spectral reference")
        ref = np.asarray(total, dtype=np.float64) / count
        if ref.shape != wl.shape:
            raise ValueError(f"reference sum has {ref.size} channels, the wavelength axis {wl.size}")
        if not np.any(ref):
            raise ValueError("reference spectrum is flat after high-pass filtering (no lines)")
        return cls(ref, float(np.median(np.diff(wl))), int(highpass_channels), int(max_lag))

    def measure(self, intensity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(offset in channels, positive = features to the right; peak correlation) per spectrum."""
        h = _highpass(intensity, self.highpass_channels)
        n, k = h.shape[1], self.max_lag
        if n != self.reference.size:
            raise ValueError(f"spectra have {n} channels, the spectral reference {self.reference.size}")
        core = self.reference[k : n - k]
        core_norm = np.linalg.norm(core)
        corr = np.empty((h.shape[0], 2 * k + 1))
        for j, lag in enumerate(range(-k, k + 1)):
            seg = h[:, k + lag : n - k + lag]
            norm = np.linalg.norm(seg, axis=1) * core_norm
            corr[:, j] = np.divide(seg @ core, norm, out=np.zeros(h.shape[0]), where=norm > 0)
        i = np.clip(corr.argmax(axis=1), 1, 2 * k - 1)
        rows = np.arange(h.shape[0])
        y0, y1, y2 = corr[rows, i - 1], corr[rows, i], corr[rows, i + 1]
        curvature = y0 - 2 * y1 + y2
        frac = np.divide(0.5 * (y0 - y2), curvature, out=np.zeros_like(y1), where=curvature < 0)
        return (i - k) + np.clip(frac, -0.5, 0.5), np.max(corr, axis=1)

    def to_dict(self) -> dict:
        return {
            "reference": [float(f"{v:.6g}") for v in self.reference],
            "channel_nm": self.channel_nm,
            "highpass_channels": self.highpass_channels,
            "max_lag": self.max_lag,
        }

    @classmethod
    def from_dict(cls, d: Mapping, source: str = "spectral reference") -> SpectralReference:
        try:
            ref = np.asarray(d["reference"], dtype=np.float64)
            out = cls(ref, float(d["channel_nm"]), int(d["highpass_channels"]), int(d["max_lag"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{source}: invalid spectral reference ({type(exc).__name__}: {exc})") from None
        if ref.ndim != 1 or ref.size < 4 * out.max_lag + 2 or not np.all(np.isfinite(ref)):
            raise ValueError(f"{source}: field 'spectral.reference' must be a finite 1-D list of > {4 * out.max_lag + 1} values")
        return out


def measure_spectra(
    intensity: np.ndarray,
    wavelength: np.ndarray,
    lines: Sequence[LineWindow],
    reference: SpectralReference | None = None,
) -> pd.DataFrame:
    """``<line>:area`` (and height, sbr), ``mean_intensity``, ``log_noise_per_count`` and, with a reference,
    the wavelength offset (channels) and spectral correlation; one row per spectrum."""
    x = np.asarray(intensity)
    if x.ndim == 1:
        x = x[None, :]
    table = line_features(x, wavelength, lines)
    table[MEAN_INTENSITY] = mean_intensity(x)
    table[NOISE_PER_COUNT] = log_noise_per_count(x)
    if reference is not None:
        offset, corr = reference.measure(x)
        table[OFFSET_CHANNELS] = offset
        table[CORRELATION] = corr
    return table
