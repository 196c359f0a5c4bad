"""Which channels the network reads (region of interest) and which divide the spectrum ("background").

With 5-50 training samples a network over thousands of channels has far more inputs than the data can
constrain; reading only the analyte lines (window + background, widened by a margin) plus chosen
covariate windows keeps the first dense layer small. All selections are full-grid channel indices,
stored in the model's input normaliser, so ``TrainedModel.predict`` still takes full spectra.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from libs_pipeline.config import TrainingConfig
from libs_pipeline.features.lines import LineWindow


def window_channels(wavelength: np.ndarray, windows: Sequence[tuple[float, float]], what: str = "input window") -> np.ndarray:
    """Sorted unique grid indices inside any (low, high) nm window; a window without a channel is an error."""
    wl = np.asarray(wavelength, dtype=np.float64)
    parts = []
    for window in windows:
        lo, hi = (float(v) for v in window)
        if not lo < hi:
            raise ValueError(f"{what} ({lo}, {hi}) nm: low must be below high")
        idx = np.flatnonzero((wl >= lo) & (wl <= hi))
        if idx.size == 0:
            raise ValueError(f"{what} ({lo}, {hi}) nm holds no channel of the grid {wl[0]:.3f}-{wl[-1]:.3f} nm")
        parts.append(idx)
    if not parts:
        raise ValueError(f"no {what} given")
    return np.unique(np.concatenate(parts))


def analyte_windows(lines: Sequence[LineWindow], margin_nm: float) -> list[tuple[float, float]]:
    """Each line's span (integration and background windows) widened by ``margin_nm`` on both sides."""
    return [(ln.span_nm[0] - margin_nm, ln.span_nm[1] + margin_nm) for ln in lines]


def input_channels(config: TrainingConfig, wavelength: np.ndarray, lines: Sequence[LineWindow]) -> np.ndarray | None:
    """Grid indices the network reads: ``input_windows``, else the analyte ROI, else None (the full spectrum)."""
    if config.input_windows is not None:
        return window_channels(wavelength, config.input_windows)
    if config.roi == "analyte":
        windows = analyte_windows(lines, config.roi_margin_nm) + [tuple(w) for w in config.covariate_windows]
        return window_channels(wavelength, windows, "roi window")
    if config.covariate_windows:
        raise ValueError("covariate_windows are read only with roi='analyte' (or list them in input_windows)")
    return None


def background_channels(wavelength: np.ndarray, lines: Sequence[LineWindow]) -> np.ndarray:
    """Grid indices of every line's background windows: the divisor of the "background" normalisation."""
    return window_channels(wavelength, [bg for ln in lines for bg in ln.background_nm], "background window")


def masked_input_windows(
    wavelength: np.ndarray, lines: Sequence[LineWindow], channels: np.ndarray | None
) -> tuple[tuple[int, int], ...]:
    """For each line, the (start, stop) range of network-input positions covering its integration window
    (the masked-window auxiliaries hide it); ``channels``: the grid indices the network reads (None = all)."""
    read = np.arange(np.asarray(wavelength).size) if channels is None else np.asarray(channels)
    out = []
    for ln in lines:
        inside = np.flatnonzero(np.isin(read, window_channels(wavelength, [ln.window_nm], f"line {ln.name} window")))
        if inside.size == 0:
            raise ValueError(f"masked auxiliaries: the network input holds no channel of line {ln.name}'s window")
        out.append((int(inside.min()), int(inside.max()) + 1))
    return tuple(out)
