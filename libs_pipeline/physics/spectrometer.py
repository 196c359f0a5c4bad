"""The spectrometer: reported wavelength grid (air nm), line shape, calibration shift and spectral response."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from libs_pipeline.config import CampaignConfig
from libs_pipeline.physics.plasma import air_to_vacuum

GRID_DECIMALS = 6  # the grid is defined by its decimal text, so files written with %.6f read back bit-exact


def instrument_grid(start_nm: float, stop_nm: float, n_channels: int) -> np.ndarray:
    """``n_channels`` evenly spaced air wavelengths, each the float of its 6-decimal text."""
    grid = np.linspace(float(start_nm), float(stop_nm), int(n_channels))
    grid = np.array([float(f"{x:.{GRID_DECIMALS}f}") for x in grid], dtype=np.float64)
    if not np.all(np.diff(grid) > 0):
        raise ValueError(f"{n_channels} channels over {start_nm}-{stop_nm} nm are closer than 1e-{GRID_DECIMALS} nm")
    return grid


@dataclass(frozen=True)
class Spectrometer:
    """What the instrument reports (``wavelength_nm``) and what light each channel really sees.

    A calibration error ``shift_nm`` means channel i, labelled wavelength_nm[i], receives light of
    wavelength_nm[i] - shift_nm: every feature appears ``shift_nm`` to the right of its true position.
    Each pixel integrates a box of one channel width; its variance (width^2/12) is added to the Gaussian.
    """

    wavelength_nm: np.ndarray
    shift_nm: float
    gaussian_sigma_nm: float
    lorentzian_gamma_nm: float
    response_center_nm: float
    response_width_nm: float

    @classmethod
    def from_config(cls, config: CampaignConfig) -> Spectrometer:
        return cls(
            wavelength_nm=instrument_grid(config.wavelength_start_nm, config.wavelength_stop_nm, config.n_channels),
            shift_nm=config.wavelength_shift_nm,
            gaussian_sigma_nm=config.gaussian_sigma_nm,
            lorentzian_gamma_nm=config.lorentzian_gamma_nm,
            response_center_nm=config.response_center_nm,
            response_width_nm=config.response_width_nm,
        )

    @property
    def channel_width_nm(self) -> float:
        return float((self.wavelength_nm[-1] - self.wavelength_nm[0]) / (self.wavelength_nm.size - 1))

    @property
    def effective_sigma_nm(self) -> float:
        """Gaussian sd including the pixel box (what libskit's GenericSpectrometer is given)."""
        return float(np.sqrt(self.gaussian_sigma_nm**2 + self.channel_width_nm**2 / 12.0))

    @property
    def true_wavelength_air_nm(self) -> np.ndarray:
        return self.wavelength_nm - self.shift_nm

    @property
    def true_wavelength_vac_nm(self) -> np.ndarray:
        return air_to_vacuum(self.true_wavelength_air_nm)

    def response(self) -> np.ndarray:
        """Relative efficiency (grating x detector QE) of each channel, a smooth bell with peak 1."""
        x = (self.true_wavelength_air_nm - self.response_center_nm) / self.response_width_nm
        return np.exp(-0.5 * x * x)

    def describe(self) -> str:
        return (
            f"virtual spectrometer: {self.wavelength_nm.size} channels {self.wavelength_nm[0]:.3f}-"
            f"{self.wavelength_nm[-1]:.3f} nm (air), Voigt sigma {self.effective_sigma_nm:.4f} nm "
            f"gamma {self.lorentzian_gamma_nm:.4f} nm, calibration shift {self.shift_nm:+.3f} nm"
        )
