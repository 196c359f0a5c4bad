"""Line features measured identically on any spectrum: baseline-corrected area, peak height, signal-to-background.

The local background under a line is a straight line fitted (least squares) through the channels of
its background windows (a constant when they all lie on one side). The area is the sum of
baseline-corrected intensity times channel width over the channels whose centres fall in the line
window: exact for pixel-integrated detector counts, and the rectangle rule for well-sampled profiles.
Units: area in intensity*nm, height in intensity, sbr dimensionless.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import xarray as xr

from libs_pipeline.features.lines import LineWindow, check_unique_names

FEATURE_KINDS = ("area", "height", "sbr")
MIN_WINDOW_CHANNELS = 2


def feature_column(line: LineWindow | str, kind: str) -> str:
    """Column name ``<line.name>:<kind>`` used by ``line_features``."""
    name = line.name if isinstance(line, LineWindow) else str(line)
    if kind not in FEATURE_KINDS:
        raise ValueError(f"feature kind {kind!r} is not one of {FEATURE_KINDS}")
    return f"{name}:{kind}"


def auxiliary_names(lines: Sequence[LineWindow]) -> list[str]:
    """Names of the auxiliary targets (the ``:area`` columns), in line order."""
    return [feature_column(line, "area") for line in lines]


def channel_widths(wavelength: np.ndarray) -> np.ndarray:
    """Width of each channel (nm): edges at midpoints between centres, end channels mirrored."""
    wl = validate_wavelength(wavelength)
    if wl.size == 1:
        raise ValueError("wavelength: need at least 2 channels to define channel widths")
    edges = np.empty(wl.size + 1)
    edges[1:-1] = 0.5 * (wl[1:] + wl[:-1])
    edges[0] = wl[0] - 0.5 * (wl[1] - wl[0])
    edges[-1] = wl[-1] + 0.5 * (wl[-1] - wl[-2])
    return np.diff(edges)


def validate_wavelength(wavelength: np.ndarray) -> np.ndarray:
    """1-D, finite, strictly increasing float64 grid, or a ValueError saying which rule failed."""
    wl = np.asarray(wavelength, dtype=np.float64)
    if wl.ndim != 1 or wl.size == 0:
        raise ValueError(f"wavelength: must be a non-empty 1-D array, got shape {wl.shape}")
    if not np.all(np.isfinite(wl)):
        raise ValueError(f"wavelength: non-finite value at index {int(np.flatnonzero(~np.isfinite(wl))[0])}")
    steps = np.diff(wl)
    if np.any(steps <= 0):
        i = int(np.flatnonzero(steps <= 0)[0])
        raise ValueError(
            f"wavelength: must be strictly increasing; index {i + 1} ({wl[i + 1]}) <= index {i} ({wl[i]})"
        )
    return wl


@dataclass(frozen=True)
class _LinePlan:
    """Channel indices and weights of one line on one grid, computed once and applied to many spectra."""

    line: LineWindow
    window_idx: np.ndarray  # channels integrated
    widths: np.ndarray  # their widths (nm)
    background_idx: np.ndarray  # channels of all background windows
    background_design: np.ndarray  # (n_bg, p) design matrix, p = 1 (constant) or 2 (linear)
    window_design: np.ndarray  # (n_window, p) design evaluated on the window channels
    center_design: np.ndarray  # (p,) design at the line centre

    def apply(self, intensity: np.ndarray) -> dict[str, np.ndarray]:
        """Area, height, sbr for every row of ``intensity`` (n, m) on the plan's grid."""
        bg = intensity[:, self.background_idx].astype(np.float64)
        # Least squares via the pseudo-inverse of the shared design: a NaN spectrum only spoils its own column.
        coef = np.linalg.pinv(self.background_design) @ bg.T  # (p, n)
        baseline = (self.window_design @ coef).T  # (n, n_window)
        corrected = intensity[:, self.window_idx].astype(np.float64) - baseline
        area = corrected @ self.widths
        height = corrected.max(axis=1)
        background = self.center_design @ coef
        sbr = np.full_like(height, np.nan)
        np.divide(height, background, out=sbr, where=background > 0)
        return {"area": area, "height": height, "sbr": sbr}

    def on_subset(self, channels: np.ndarray) -> _LinePlan:
        """The same plan for arrays holding only ``channels`` (sorted full-grid indices containing all of ours)."""
        return replace(
            self,
            window_idx=np.searchsorted(channels, self.window_idx),
            background_idx=np.searchsorted(channels, self.background_idx),
        )


def _indices_in(wl: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return np.flatnonzero((wl >= lo) & (wl <= hi))


def _plan(line: LineWindow, wl: np.ndarray) -> _LinePlan:
    lo, hi = line.span_nm
    if lo < wl[0] or hi > wl[-1]:
        raise ValueError(
            f"line {line.name!r}: windows span {lo}-{hi} nm but the wavelength grid covers "
            f"{wl[0]:.3f}-{wl[-1]:.3f} nm"
        )
    window_idx = _indices_in(wl, *line.window_nm)
    if window_idx.size < MIN_WINDOW_CHANNELS:
        raise ValueError(
            f"line {line.name!r}: window {line.window_nm} nm holds {window_idx.size} channel(s) of the grid; "
            f"need at least {MIN_WINDOW_CHANNELS} (widen the window)"
        )
    parts = [_indices_in(wl, *bg) for bg in line.background_nm]
    background_idx = np.unique(np.concatenate(parts)) if parts else np.empty(0, dtype=np.int64)
    if background_idx.size == 0:
        raise ValueError(
            f"line {line.name!r}: background windows {line.background_nm} nm hold no channel of the grid "
            "(widen them)"
        )
    bg_wl = wl[background_idx]
    both_sides = bool(np.any(bg_wl < line.center_nm) and np.any(bg_wl > line.center_nm))
    widths = channel_widths(wl)[window_idx]

    def design(x: np.ndarray) -> np.ndarray:
        x = np.atleast_1d(np.asarray(x, dtype=np.float64)) - line.center_nm
        cols = [np.ones_like(x), x] if both_sides and background_idx.size >= 2 else [np.ones_like(x)]
        return np.column_stack(cols)

    return _LinePlan(
        line=line,
        window_idx=window_idx,
        widths=widths,
        background_idx=background_idx,
        background_design=design(bg_wl),
        window_design=design(wl[window_idx]),
        center_design=design(np.array([line.center_nm]))[0],
    )


def _as_2d(intensity: np.ndarray, n_channels: int) -> np.ndarray:
    arr = np.asarray(intensity)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != n_channels:
        raise ValueError(
            f"intensity: shape {np.shape(intensity)} does not match the wavelength grid of {n_channels} channels "
            "(expected (n_spectra, n_channels) or (n_channels,))"
        )
    return arr


def _features_from_plans(arr: np.ndarray, plans: Sequence[_LinePlan]) -> pd.DataFrame:
    columns: dict[str, np.ndarray] = {}
    for plan in plans:
        values = plan.apply(arr)
        for kind in FEATURE_KINDS:
            columns[feature_column(plan.line, kind)] = values[kind]
    return pd.DataFrame(columns)


def _plans(wl: np.ndarray, lines: Sequence[LineWindow]) -> list[_LinePlan]:
    lines = list(lines)
    if not lines:
        raise ValueError("lines: need at least one LineWindow")
    check_unique_names(lines)
    return [_plan(line, wl) for line in lines]


def line_features(intensity: np.ndarray, wavelength: np.ndarray, lines: Sequence[LineWindow]) -> pd.DataFrame:
    """Columns ``<line>:area``, ``<line>:height``, ``<line>:sbr``; one row per spectrum (float64)."""
    wl = validate_wavelength(wavelength)
    plans = _plans(wl, lines)
    return _features_from_plans(_as_2d(intensity, wl.size), plans)


def auxiliary_targets(intensity: np.ndarray, wavelength: np.ndarray, lines: Sequence[LineWindow]) -> np.ndarray:
    """Baseline-corrected line areas, float32 (n_spectra, n_lines): the multitask auxiliary targets."""
    table = line_features(intensity, wavelength, lines)
    return table[auxiliary_names(lines)].to_numpy(dtype=np.float32)


def line_channels(wavelength: np.ndarray, lines: Sequence[LineWindow]) -> np.ndarray:
    """Sorted indices of every channel any line reads (window and background): load only these."""
    wl = validate_wavelength(wavelength)
    return np.unique(np.concatenate([np.concatenate([p.window_idx, p.background_idx]) for p in _plans(wl, lines)]))


def dataset_line_features(
    ds: xr.Dataset, lines: Sequence[LineWindow], chunk_size: int = 4096, var: str = "intensity"
) -> pd.DataFrame:
    """``line_features`` of a (possibly lazy, zarr-backed) dataset, loading only the channels the lines read.

    Rows follow the dataset's spectrum order; the index is the ``spectrum`` coordinate when present.
    """
    if var not in ds:
        raise ValueError(f"dataset has no variable {var!r} (variables: {sorted(map(str, ds.data_vars))})")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    wl = validate_wavelength(ds["wavelength"].values)
    plans = _plans(wl, lines)
    idx = np.unique(np.concatenate([np.concatenate([p.window_idx, p.background_idx]) for p in plans]))
    local = [p.on_subset(idx) for p in plans]
    n = ds.sizes["spectrum"]
    parts = [
        _features_from_plans(
            np.asarray(ds[var].isel(spectrum=slice(start, start + chunk_size), wavelength=idx).values), local
        )
        for start in range(0, n, chunk_size)
    ]
    table = pd.concat(parts, ignore_index=True) if parts else _features_from_plans(np.empty((0, idx.size)), local)
    if "spectrum" in ds.coords:
        table.index = pd.Index(ds["spectrum"].values, name="spectrum")
    return table
