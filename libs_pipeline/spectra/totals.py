"""The total intensity of a spectrum: the one definition the network input, the trust measurements and the
model's line-area scaling share (mean of the non-negative counts, accumulated in float64)."""

from __future__ import annotations

import numpy as np


def spectrum_totals(intensity: np.ndarray) -> np.ndarray:
    """Mean of the non-negative counts of each spectrum (n,), float64; ``intensity`` must be (spectra, channels)."""
    x = np.asarray(intensity, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"intensity must be 2-D (spectra, channels), got shape {x.shape}")
    return np.clip(x, 0.0, None).mean(axis=1, dtype=np.float64)


__all__ = ["spectrum_totals"]
