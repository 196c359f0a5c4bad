"""Writing the shot-columns text format (format (a) of ``readers``): a wavelength column followed by one column
per shot, comma-separated. Used by the virtual instrument's campaign files and by test fixtures."""

from __future__ import annotations

import numpy as np


def write_shot_columns_file(path, wavelength: np.ndarray, intensity: np.ndarray, fmt: str = "%.4f") -> None:
    """Write format (a): a wavelength column followed by one column per shot, comma-separated."""
    table = np.column_stack([wavelength, np.asarray(intensity).T])
    np.savetxt(path, table, delimiter=",", fmt=fmt)


__all__ = ["write_shot_columns_file"]
