"""The regression tasks of a model: the analyte concentration (primary) and its auxiliary quantities.

Auxiliary tasks are the analyte's baseline-corrected line areas (measurable on any spectrum, which is
what the trust check later compares against) and, where the data carry per-spectrum ground truth
(virtual instrument), the plasma temperature ``T_K`` and electron density ``n_e_per_m3``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from libs_pipeline.features.line_features import auxiliary_names, auxiliary_targets
from libs_pipeline.features.lines import LineWindow

PLASMA_VARS = ("T_K", "n_e_per_m3")


@dataclass(frozen=True)
class TaskSet:
    """Ordered task list: ``[analyte, <line>:area ..., plasma vars ...]``."""

    analyte: str
    lines: tuple[LineWindow, ...] = ()
    plasma: tuple[str, ...] = ()
    log_tasks: tuple[str, ...] = field(default=())
    areas_per_total: bool = True

    @property
    def per_total_tasks(self) -> list[str]:
        """Tasks modelled per unit total intensity (line areas, when the input is total-normalised)."""
        return auxiliary_names(self.lines) if self.areas_per_total else []

    @property
    def names(self) -> list[str]:
        return [self.analyte, *auxiliary_names(self.lines), *self.plasma]

    def targets(self, ds: xr.Dataset, rows: np.ndarray, intensity: np.ndarray, wavelength: np.ndarray) -> np.ndarray:
        """Raw-unit targets (len(rows), n_tasks) float64 for spectra ``rows`` of ``ds`` whose intensity is given."""
        n = len(rows)
        out = np.full((n, len(self.names)), np.nan)
        out[:, 0] = np.asarray(ds[self.analyte].values, dtype=np.float64)[rows]
        col = 1
        if self.lines:
            out[:, col : col + len(self.lines)] = auxiliary_targets(intensity, wavelength, list(self.lines))
            col += len(self.lines)
        for var in self.plasma:
            if var in ds:
                out[:, col] = np.asarray(ds[var].values, dtype=np.float64)[rows]
            col += 1
        return out


def build_taskset(
    analyte: str,
    lines: Sequence[LineWindow],
    multitask: bool,
    plasma: bool,
    datasets: Sequence[xr.Dataset],
    log_primary: bool = False,
    areas_per_total: bool = True,
) -> TaskSet:
    """Tasks for a training run: single-task -> analyte only; plasma heads only for vars present in the data."""
    log_tasks = (analyte,) if log_primary else ()
    if not multitask:
        return TaskSet(analyte, (), (), log_tasks, areas_per_total)
    found = tuple(v for v in PLASMA_VARS if plasma and any(v in ds for ds in datasets))
    return TaskSet(analyte, tuple(lines), found, log_tasks, areas_per_total)
