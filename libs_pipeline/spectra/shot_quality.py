"""Shots that carry no signal: dead (all zeros), flat (one constant value), fully saturated.

Policy (``IngestOptions.bad_shot_policy``): ``warn`` keeps them with a warning, ``drop`` leaves them out of the
version with a warning (the raw file, archived, still holds them), ``reject`` rejects the whole file.
"""

from __future__ import annotations

import numpy as np

SHOT_PROBLEMS = {
    "dead_shot": "every channel is 0 (a dead shot: the laser or detector did not fire)",
    "flat_shot": "every channel has the same value (a flat shot: no spectrum recorded)",
    "saturated_shot": "the detector is saturated on {fraction:.0%} or more of the channels",
}


def classify_shots(
    intensity: np.ndarray, saturation_level: float | None, saturated_fraction: float
) -> dict[str, np.ndarray]:
    """Rule -> indices of the shots it applies to (one rule per shot: dead, else saturated, else flat)."""
    x = np.asarray(intensity, dtype=np.float64)
    finite = np.all(np.isfinite(x), axis=1)
    dead = finite & np.all(x == 0, axis=1)
    saturated = np.zeros(x.shape[0], dtype=bool)
    if saturation_level is not None:
        saturated = ~dead & (np.mean(x >= saturation_level, axis=1) >= saturated_fraction)
    flat = finite & ~dead & ~saturated & (np.ptp(np.where(np.isfinite(x), x, 0), axis=1) == 0)
    out = {"dead_shot": np.flatnonzero(dead), "flat_shot": np.flatnonzero(flat), "saturated_shot": np.flatnonzero(saturated)}
    return {rule: idx for rule, idx in out.items() if idx.size}
