"""Toy campaigns for the LOSO-selected baselines: Gaussian lines on a flat continuum, 500-700 nm at 0.1 nm."""

from __future__ import annotations

import numpy as np

from libs_pipeline.features.lines import LineWindow

WL = np.round(np.arange(500.0, 700.0001, 0.1), 4)


def window(name: str, center: float, element: str = "X") -> LineWindow:
    """A line window of +-0.5 nm with backgrounds 1-2 nm away on both sides."""
    return LineWindow(name=name, element=element, center_nm=center, window_nm=(center - 0.5, center + 0.5),
                      background_nm=((center - 2.0, center - 1.0), (center + 1.0, center + 2.0)))


def gauss(center: float, width: float = 0.15) -> np.ndarray:
    return np.exp(-0.5 * ((WL - center) / width) ** 2)


def campaign(conc, response, *, n_shots=8, continuum=200.0, sample_gain=None, shot_gain_sd=0.0,
             line_factor=None, extra=None, noise=2.0, clip=None, seed=0):
    """(X, y, groups): per shot ``gain * (continuum + line_factor*response(c)*gauss(600) + extra)`` + noise.

    ``sample_gain[i]`` multiplies the whole spectrum of sample i (shot gain ~ N(1, shot_gain_sd) on top);
    ``line_factor[i]`` multiplies emission lines only (analyte and the internal standard at 550 nm), not
    the continuum; ``extra(i, rng)`` adds any other spectrum; ``clip`` saturates the detector.
    """
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    conc = np.asarray(conc, dtype=float)
    rows, y, groups = [], [], []
    for i, c in enumerate(conc):
        g_s = 1.0 if sample_gain is None else sample_gain[i]
        f_s = 1.0 if line_factor is None else line_factor[i]
        for _ in range(n_shots):
            gain = g_s * rng.normal(1.0, shot_gain_sd) if shot_gain_sd else g_s
            spec = continuum + f_s * (response(c) * gauss(600.0) + 3000.0 * gauss(550.0))
            if extra is not None:
                spec = spec + extra(i, rng)
            rows.append(gain * spec + rng.normal(0.0, noise, WL.size))
            y.append(c)
            groups.append(f"s{i}")
    X = np.asarray(rows)
    if clip is not None:
        X = np.minimum(X, clip)
    return X.astype(np.float32), np.asarray(y), np.asarray(groups)
