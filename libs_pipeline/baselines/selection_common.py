"""Pieces shared by the LOSO-selected baselines: input checks, saturation masks, per-sample RMSEP."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from libs_pipeline.features.line_features import line_channels, validate_wavelength
from libs_pipeline.features.lines import LineWindow, check_unique_names


def check_fit_inputs(
    intensity: np.ndarray, wavelength: np.ndarray, y: np.ndarray, groups: Sequence[object]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(intensity float64 (n, m), wavelength, y, groups) checked for shapes, finiteness and >= 3 samples."""
    wl = validate_wavelength(wavelength)
    X = np.asarray(intensity, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != wl.size:
        raise ValueError(f"intensity: expected (n_spectra, {wl.size}) to match the wavelength grid, got {X.shape}")
    y = np.asarray(y, dtype=np.float64).ravel()
    groups = np.asarray(groups)
    if y.shape[0] != X.shape[0] or groups.shape[0] != X.shape[0]:
        raise ValueError(f"intensity has {X.shape[0]} rows, y {y.shape[0]}, groups {groups.shape[0]}: must match")
    if not np.all(np.isfinite(y)):
        raise ValueError(f"y: non-finite label at row {int(np.flatnonzero(~np.isfinite(y))[0])}")
    if not np.all(np.isfinite(X)):
        raise ValueError(f"intensity: non-finite value in row {int(np.flatnonzero(~np.isfinite(X).all(1))[0])}")
    n_groups = np.unique(groups).size
    if n_groups < 3:
        raise ValueError(f"groups: inner leave-one-sample-out needs at least 3 samples, got {n_groups}")
    for g in np.unique(groups):
        if np.ptp(y[groups == g]) > 0:
            raise ValueError(f"y: sample {g!r} has more than one label; one label per sample is required")
    return X, wl, y, groups


def check_predict_input(intensity: np.ndarray, n_channels: int, who: str) -> np.ndarray:
    """intensity as float64 (n, m) on the fitted grid, else a ValueError naming the mismatch."""
    X = np.asarray(intensity, dtype=np.float64)
    if X.ndim == 1:
        X = X[None, :]
    if X.ndim != 2 or X.shape[1] != n_channels:
        raise ValueError(
            f"{who}.predict: intensity has shape {np.shape(intensity)} but the model was fitted on a grid of "
            f"{n_channels} channels (predict on the same wavelength grid)"
        )
    return X


def saturation_limit(saturation: float | None, margin: float) -> float | None:
    """Counts at or above which a channel counts as saturated (None = detect nothing)."""
    if not 0 <= margin < 1:
        raise ValueError(f"saturation_margin must be in [0, 1), got {margin}")
    if saturation is None:
        return None
    if not (np.isfinite(saturation) and saturation > 0):
        raise ValueError(f"saturation must be a positive number of counts or None, got {saturation}")
    return float(saturation) * (1.0 - margin)


def saturated_channels(X: np.ndarray, limit: float | None) -> np.ndarray:
    """Boolean (m,) mask: channels reaching ``limit`` in any row of X (all False when limit is None)."""
    if limit is None:
        return np.zeros(X.shape[1], dtype=bool)
    return np.any(X >= limit, axis=0)


def line_unusable(wl: np.ndarray, line: LineWindow, saturated: np.ndarray) -> str | None:
    """Why ``line`` cannot be used (off the grid, too few channels, or a window/background channel saturated),
    or None."""
    lo, hi = line.span_nm
    if lo < wl[0] or hi > wl[-1]:
        return f"outside the grid: {line.name!r} spans {lo}-{hi} nm, the grid {wl[0]:.2f}-{wl[-1]:.2f} nm"
    try:
        idx = line_channels(wl, [line])
    except ValueError as exc:  # a window narrower than the grid's channels
        return f"not measurable on this grid: {exc}"
    bad = idx[saturated[idx]]
    if bad.size == 0:
        return None
    return f"saturated: {bad.size} channel(s) of {line.name!r} ({wl[bad[0]]:.2f}-{wl[bad[-1]]:.2f} nm) reach the limit"


def group_codes(groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(unique groups in order of first appearance, code of each row into that list)."""
    _, first, inverse = np.unique(groups, return_index=True, return_inverse=True)
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return groups[np.sort(first)], rank[inverse.ravel()]


def sample_means(values: np.ndarray, codes: np.ndarray, n_groups: int) -> np.ndarray:
    """Mean over rows per group code, ignoring NaN (NaN when a group has no finite value); axis 0."""
    values = np.asarray(values, dtype=np.float64)
    flat = values.reshape(values.shape[0], -1)
    finite = np.isfinite(flat)
    sums = np.zeros((n_groups, flat.shape[1]))
    counts = np.zeros((n_groups, flat.shape[1]))
    np.add.at(sums, codes, np.where(finite, flat, 0.0))
    np.add.at(counts, codes, finite)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / counts
    return means.reshape((n_groups, *values.shape[1:]))


#: How candidates are picked from their inner-LOSO errors: the lowest RMSEP, or the simplest unless beaten clearly.
SELECTION_RULES = ("paired_se", "best")
TIE_RTOL = 1e-9  # mean squared errors this close are equal (floating-point noise)


def choose_candidate(errors: Sequence[np.ndarray | None], complexity: Sequence[tuple], rule: str) -> int:
    """Index of the chosen candidate from each candidate's per-sample inner-LOSO errors (None = failed).

    ``best``: lowest RMSEP. ``paired_se`` (a one-standard-error rule on paired differences): start from the
    simplest candidate (lowest ``complexity``); a more complex one may replace it only if its mean squared error
    is lower by more than one standard error of the per-sample paired difference; among those, the lowest RMSEP.
    With 5-10 training samples and dozens of candidates, the plain minimum chases noise (on OREAS it picked
    total normalisation in one fold by 784 vs 961 ppm, a difference well inside its standard error, and
    extrapolated 5 000 ppm wrong).
    """
    if rule not in SELECTION_RULES:
        raise ValueError(f"selection rule must be one of {SELECTION_RULES}, got {rule!r}")
    ok = [i for i, e in enumerate(errors) if e is not None and np.all(np.isfinite(e))]
    if not ok:
        raise ValueError("no candidate has finite inner errors")
    sq = {i: np.square(np.asarray(errors[i], dtype=np.float64)) for i in ok}
    if rule == "best":
        return min(ok, key=lambda i: (float(sq[i].mean()), tuple(complexity[i])))
    base = min(ok, key=lambda i: (tuple(complexity[i]), float(sq[i].mean())))
    eligible = []
    for i in ok:
        d = sq[i] - sq[base]
        se = float(d.std(ddof=1) / np.sqrt(d.size)) if d.size > 1 else np.inf
        gain = -float(d.mean())
        if gain > se and gain > TIE_RTOL * float(sq[base].mean()):  # equal up to rounding is no gain
            eligible.append(i)
    if not eligible:
        return base
    return min(eligible, key=lambda i: (float(sq[i].mean()), tuple(complexity[i])))


def check_common_options(lines: Sequence[LineWindow], selection: str) -> list[LineWindow]:
    """The analyte lines as a list, after the checks both selected baselines share (lines, selection rule)."""
    if selection not in SELECTION_RULES:
        raise ValueError(f"selection must be one of {SELECTION_RULES}, got {selection!r}")
    lines = list(lines)
    if not lines:
        raise ValueError("lines: need at least one analyte LineWindow")
    check_unique_names(lines)
    return lines
