"""Univariate calibration: analyte line area -> concentration, by the usual inverse calibration.

Fit the calibration curve ``area = f(concentration)`` (polynomial of degree 1 or 2) by least squares,
then invert it to predict; for a quadratic, the root inside the calibrated range (widened by
``range_margin``) is taken, else the real root nearest to it; an area beyond the curve's extremum
(no real root) maps to the extremum's concentration, the least-squares inverse.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def group_means(values: np.ndarray, groups: Sequence[object]) -> tuple[np.ndarray, np.ndarray]:
    """(unique groups in order of first appearance, mean of ``values`` rows per group)."""
    values = np.asarray(values, dtype=np.float64)
    groups = np.asarray(groups)
    if groups.shape[0] != values.shape[0]:
        raise ValueError(f"groups: length {groups.shape[0]} does not match {values.shape[0]} rows")
    _, first, inverse = np.unique(groups, return_index=True, return_inverse=True)
    order = np.argsort(first)  # unique-sorted position -> appearance order
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    codes = rank[inverse.ravel()]
    counts = np.bincount(codes, minlength=order.size).astype(np.float64)
    flat = values.reshape(values.shape[0], -1)
    sums = np.zeros((order.size, flat.shape[1]))
    np.add.at(sums, codes, flat)
    means = (sums / counts[:, None]).reshape((order.size, *values.shape[1:]))
    return groups[first[order]], means


def _as_1d(name: str, values: np.ndarray) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array (one value per spectrum), got shape {np.shape(values)}")
    return arr


class UnivariateCalibration:
    """Line area -> concentration via an inverted polynomial calibration curve (degree 1 or 2)."""

    def __init__(self, degree: int = 1, range_margin: float = 0.5) -> None:
        if degree not in (1, 2):
            raise ValueError(f"degree must be 1 (linear) or 2 (quadratic), got {degree}")
        if range_margin < 0:
            raise ValueError(f"range_margin must be >= 0, got {range_margin}")
        self.degree = degree
        self.range_margin = range_margin
        self.coef_: np.ndarray | None = None  # highest power first (numpy.polyfit order)
        self.range_: tuple[float, float] | None = None

    def fit(self, area: np.ndarray, y: np.ndarray, groups: Sequence[object] | None = None) -> UnivariateCalibration:
        """Fit area = f(y); with ``groups`` (sample ids) area and y are first averaged per group (shot-averaged)."""
        area, y = _as_1d("area", area), _as_1d("y", y)
        if area.shape != y.shape:
            raise ValueError(f"area has {area.size} values but y has {y.size}")
        if groups is not None:
            _, area = group_means(area, groups)
            _, y = group_means(y, groups)
        finite = np.isfinite(area) & np.isfinite(y)
        if not np.all(finite):
            first = int(np.flatnonzero(~finite)[0])
            raise ValueError(f"area/y: {int((~finite).sum())} non-finite value(s), first at row {first}")
        n_levels = np.unique(y).size
        if n_levels < self.degree + 1:
            raise ValueError(
                f"degree-{self.degree} calibration needs at least {self.degree + 1} distinct concentrations, "
                f"got {n_levels}"
            )
        if not np.ptp(area) > 1e-12 * np.abs(area).max():
            raise ValueError("area does not vary with concentration: the calibration curve is flat")
        coef = np.polyfit(y, area, self.degree)
        self.coef_ = coef
        self.range_ = (float(y.min()), float(y.max()))
        return self

    def predict(self, area: np.ndarray) -> np.ndarray:
        """Concentration for each area (float64, same length)."""
        if self.coef_ is None or self.range_ is None:
            raise RuntimeError("UnivariateCalibration.predict called before fit")
        area = _as_1d("area", area)
        if self.degree == 1:
            b1, b0 = self.coef_
            return (area - b0) / b1
        return self._invert_quadratic(area)

    def _invert_quadratic(self, area: np.ndarray) -> np.ndarray:
        a, b, c0 = self.coef_
        lo, hi = self.range_
        pad = self.range_margin * (hi - lo)
        lo_m, hi_m = lo - pad, hi + pad
        mid = 0.5 * (lo + hi)
        if abs(a) < 1e-15 * max(abs(b), 1e-300):
            return (area - c0) / b
        disc = b * b - 4.0 * a * (c0 - area)
        vertex = -b / (2.0 * a)
        sq = np.sqrt(np.clip(disc, 0.0, None))
        r1 = (-b + sq) / (2.0 * a)
        r2 = (-b - sq) / (2.0 * a)
        in1 = (r1 >= lo_m) & (r1 <= hi_m)
        in2 = (r2 >= lo_m) & (r2 <= hi_m)
        # Prefer a root inside the (widened) range; if both or neither are, take the one nearer the range centre.
        nearer1 = np.abs(r1 - mid) <= np.abs(r2 - mid)
        pick1 = (in1 & ~in2) | (~(in1 ^ in2) & nearer1)
        out = np.where(pick1, r1, r2)
        out = np.where(disc < 0, vertex, out)
        return np.where(np.isfinite(area), out, np.nan)
