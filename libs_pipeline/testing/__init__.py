"""Tiny deterministic datasets for tests (no libskit; milliseconds to build).

A toy "Cu in Al" campaign: Gaussian emission lines on a smooth baseline, Cu line heights
proportional to the Cu label, a per-shot gain factor, Poisson counting noise (in photo-electrons,
``gain`` counts per photo-electron) and Gaussian read noise.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from libs_pipeline.spectra.dataset import make_spectra_dataset
from libs_pipeline.spectra.shot_columns import write_shot_columns_file  # noqa: F401  (fixtures use it from here)

CU_LINES_NM = (324.75, 327.40)
MATRIX_LINES_NM = (308.22, 309.27, 394.40, 396.15)


def toy_wavelength(n_channels: int = 512, start_nm: float = 300.0, stop_nm: float = 400.0) -> np.ndarray:
    return np.linspace(start_nm, stop_nm, n_channels)


def toy_mean_spectrum(wavelength: np.ndarray, cu_wt: float, fwhm_nm: float = 0.25) -> np.ndarray:
    """Noise-free expected counts for a sample with ``cu_wt`` wt% Cu."""
    sigma = fwhm_nm / 2.3548
    spec = 200.0 + 100.0 * np.exp(-((wavelength - wavelength.mean()) / 60.0) ** 2)
    for center, height in zip(MATRIX_LINES_NM, (8000.0, 12000.0, 9000.0, 15000.0)):
        spec = spec + height * np.exp(-0.5 * ((wavelength - center) / sigma) ** 2)
    for center, height in zip(CU_LINES_NM, (2500.0, 1800.0)):
        spec = spec + height * cu_wt * np.exp(-0.5 * ((wavelength - center) / sigma) ** 2)
    return spec


def toy_campaign(
    n_samples: int = 6,
    n_shots: int = 10,
    n_channels: int = 512,
    seed: int = 0,
    gain: float = 2.0,
    read_noise: float = 5.0,
    shot_sigma: float = 0.08,
    cu_range: tuple[float, float] = (0.1, 5.0),
) -> xr.Dataset:
    """A small labelled campaign in the canonical dataset layout (label ``Cu`` in wt%)."""
    rng = np.random.default_rng(seed)
    wl = toy_wavelength(n_channels)
    cu = np.round(np.linspace(cu_range[0], cu_range[1], n_samples), 3)
    rows, sids, shots, labels = [], [], [], []
    for i, c in enumerate(cu):
        mean = toy_mean_spectrum(wl, float(c))
        for k in range(n_shots):
            factor = rng.normal(1.0, shot_sigma)
            electrons = rng.poisson(np.clip(mean * factor / gain, 0, None))
            rows.append(electrons * gain + rng.normal(0.0, read_noise, size=wl.shape))
            sids.append(f"S{i:02d}")
            shots.append(k)
            labels.append(c)
    return make_spectra_dataset(
        np.asarray(rows),
        wl,
        sids,
        shots,
        labels={"Cu": (labels, "wt%")},
        attrs={"instrument": "toy", "source": "libs_pipeline.testing.toy_campaign", "seed": seed},
    )
