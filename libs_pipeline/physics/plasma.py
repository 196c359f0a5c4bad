"""LTE plasma emission of one sample (libskit), seen through the instrument line shape.

libskit costs ~0.1-0.3 s per spectrum, so a campaign never calls it per shot: ``compute_emission_basis``
evaluates a small grid of (T, n_e) states once per sample and ``EmissionBasis.evaluate`` interpolates
every shot from it. Interpolation is on ln(intensity), polynomial (Lagrange) in 1/T and in ln(n_e):
Boltzmann factors make ln I linear in 1/T, and Saha balance / Stark widths make it a smooth power law
in n_e, so a cubic x quadratic grid reproduces direct libskit spectra to a few 1e-3 at the line peaks
(measured in ``benchmarks/virtual_campaign.py``); interpolating linear intensity is 3-6x worse.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import libskit
import numpy as np
import pandas as pd

LOG_FLOOR_FRACTION = 1e-12  # ln(I + floor): floor relative to the brightest channel of the basis


@contextmanager
def libskit_resolution(fine_samples_per_fwhm: float) -> Iterator[None]:
    """Temporarily set libskit's internal fine-grid density (a process-global setting), then restore it."""
    previous = libskit.get_fine_samples_per_fwhm()
    libskit.set_fine_samples_per_fwhm(float(fine_samples_per_fwhm))
    try:
        yield
    finally:
        libskit.set_fine_samples_per_fwhm(previous)


@functools.cache
def known_elements() -> frozenset[str]:
    """Element symbols of the active libskit atomic database (ionisation-energy table)."""
    path = libskit.Database.active().path / "ionization_energies_processed.csv"
    names = pd.read_csv(path).iloc[:, 0].astype(str)
    return frozenset(n.split()[0] for n in names)


def check_elements(fractions: Mapping[str, float], where: str) -> None:
    unknown = sorted(set(fractions) - known_elements())
    if unknown:
        raise ValueError(f"{where}: elements {unknown} are not in libskit's atomic database")


def air_to_vacuum(wavelength_air_nm: np.ndarray) -> np.ndarray:
    """libskit's atomic data are vacuum wavelengths; instruments report air wavelengths."""
    return np.asarray(libskit.air_to_vacuum(np.asarray(wavelength_air_nm, dtype=np.float64)), dtype=np.float64)


def _padded(wavelength: np.ndarray, pad_nm: float) -> tuple[np.ndarray, slice]:
    """Grid extended by ``pad_nm`` at both ends (same spacing) so convolution edges fall outside the channels."""
    step_lo = wavelength[1] - wavelength[0]
    step_hi = wavelength[-1] - wavelength[-2]
    n_lo = int(np.ceil(pad_nm / step_lo))
    n_hi = int(np.ceil(pad_nm / step_hi))
    lo = wavelength[0] - step_lo * np.arange(n_lo, 0, -1)
    hi = wavelength[-1] + step_hi * np.arange(1, n_hi + 1)
    return np.concatenate([lo, wavelength, hi]), slice(n_lo, n_lo + wavelength.size)


def _lte_model(
    fractions: Mapping[str, float], temperature_K: float, electron_density_per_m3: float, length_m: float
) -> libskit.LTEModel:
    """libskit's LTE plasma of one composition (mass fractions) and state."""
    return libskit.LTEModel(dict(fractions), float(temperature_K), float(electron_density_per_m3), float(length_m))


def emission_spectrum(
    fractions: Mapping[str, float],
    temperature_K: float,
    electron_density_per_m3: float,
    length_m: float,
    wavelength_vac_nm: np.ndarray,
    sigma_nm: float,
    gamma_nm: float,
    continuum_scale: float = 0.0,
) -> np.ndarray:
    """The direct (non-interpolated) noise-free plasma signal at the given vacuum wavelengths (libskit units):
    instrument-broadened lines plus ``continuum_scale`` x the optically thin free-free + free-bound continuum
    (0 = lines only)."""
    wavelength = np.asarray(wavelength_vac_nm, dtype=np.float64)
    if wavelength.ndim != 1 or wavelength.size < 2 or not np.all(np.diff(wavelength) > 0):
        raise ValueError("wavelength grid must be 1-D, strictly increasing, with at least 2 channels")
    model = _lte_model(fractions, temperature_K, electron_density_per_m3, length_m)
    grid, inner = _padded(wavelength, 10.0 * (sigma_nm + gamma_nm) + 0.5)
    spectrum = np.asarray(libskit.GenericSpectrometer(float(sigma_nm), float(gamma_nm)).calculate_spectrum(grid, model))
    spectrum = np.clip(spectrum[inner], 0.0, None)
    if continuum_scale > 0.0:
        ff, fb = model.calculate_continuum_emission(wavelength)
        spectrum = spectrum + continuum_scale * ((np.asarray(ff) + np.asarray(fb)) * float(length_m))
    return spectrum


def emission_lines(
    fractions: Mapping[str, float],
    temperature_K: float,
    electron_density_per_m3: float,
    length_m: float,
    wavelength_air_nm: tuple[float, float],
) -> pd.DataFrame:
    """libskit's line list in an air-wavelength range: ion, element, wavelength_air_nm, peak, fwhm_nm (strongest first)."""
    lo, hi = air_to_vacuum(np.asarray(wavelength_air_nm, dtype=np.float64))
    model = _lte_model(fractions, temperature_K, electron_density_per_m3, length_m)
    lines = model.get_lines(np.linspace(lo, hi, 64))
    table = pd.DataFrame(lines, columns=["ion", "wavelength_vac_nm", "peak", "fwhm_nm", "accuracy"])
    table = table[(table["wavelength_vac_nm"] >= lo) & (table["wavelength_vac_nm"] <= hi)]
    table.insert(1, "element", table["ion"].str.split().str[0])
    table.insert(2, "wavelength_air_nm", np.asarray(libskit.vacuum_to_air(table["wavelength_vac_nm"].to_numpy())))
    return table.drop(columns=["wavelength_vac_nm"]).sort_values("peak", ascending=False).reset_index(drop=True)


def lagrange_weights(x: np.ndarray, nodes: np.ndarray) -> np.ndarray:
    """(len(x), len(nodes)) weights of the interpolating polynomial through ``nodes`` evaluated at ``x``."""
    x = np.atleast_1d(np.asarray(x, dtype=np.float64))
    nodes = np.asarray(nodes, dtype=np.float64)
    weights = np.ones((x.size, nodes.size))
    for i in range(nodes.size):
        for j in range(nodes.size):
            if i != j:
                weights[:, i] *= (x - nodes[j]) / (nodes[i] - nodes[j])
    return weights


def basis_nodes(center: float, spread: float, count: int, log_scale: bool) -> np.ndarray:
    """``count`` evenly spaced nodes covering center*(1 +- spread) (or center*exp(+-spread) on a log scale)."""
    if count == 1 or spread == 0.0:
        return np.array([float(center)])
    offsets = np.linspace(-spread, spread, count)
    return center * np.exp(offsets) if log_scale else center * (1.0 + offsets)


@dataclass(frozen=True)
class EmissionBasis:
    """ln(emission + floor) of one sample on a (temperature, electron density) grid; interpolated per shot."""

    temperatures_K: np.ndarray  # (nT,)
    densities_per_m3: np.ndarray  # (nN,)
    log_spectra: np.ndarray  # (nT, nN, channels)
    floor: float

    def evaluate(self, temperature_K: Sequence[float] | np.ndarray, electron_density_per_m3: Sequence[float] | np.ndarray) -> np.ndarray:
        """(shots, channels) emission at each shot's (T, n_e); states must lie inside the node ranges."""
        t = np.atleast_1d(np.asarray(temperature_K, dtype=np.float64))
        n = np.atleast_1d(np.asarray(electron_density_per_m3, dtype=np.float64))
        if t.shape != n.shape:
            raise ValueError(f"temperature ({t.shape}) and electron density ({n.shape}) must have the same shape")
        self._check_inside(t, self.temperatures_K, "temperature_K")
        self._check_inside(n, self.densities_per_m3, "electron_density_per_m3")
        w_t = lagrange_weights(1.0 / t, 1.0 / self.temperatures_K)
        w_n = lagrange_weights(np.log(n), np.log(self.densities_per_m3))
        acc = np.zeros((t.size, self.log_spectra.shape[-1]))
        # explicit, fixed-order accumulation (no BLAS): bit-identical in any process
        for i in range(self.temperatures_K.size):
            for j in range(self.densities_per_m3.size):
                acc += (w_t[:, i] * w_n[:, j])[:, None] * self.log_spectra[i, j][None, :]
        return np.clip(np.exp(acc) - self.floor, 0.0, None)

    @staticmethod
    def _check_inside(values: np.ndarray, nodes: np.ndarray, name: str) -> None:
        lo, hi = nodes.min(), nodes.max()
        tol = 1e-9 * max(abs(lo), abs(hi))
        if values.min() < lo - tol or values.max() > hi + tol:
            raise ValueError(
                f"{name} {values.min():.6g}..{values.max():.6g} lies outside the basis range {lo:.6g}..{hi:.6g} "
                "(extrapolation is not allowed)"
            )


def compute_emission_basis(
    fractions: Mapping[str, float],
    temperatures_K: np.ndarray,
    densities_per_m3: np.ndarray,
    length_m: float,
    wavelength_vac_nm: np.ndarray,
    sigma_nm: float,
    gamma_nm: float,
    continuum_scale: float,
) -> EmissionBasis:
    """One direct libskit spectrum per (T, n_e) node: len(temperatures) x len(densities) calls."""
    temperatures = np.asarray(temperatures_K, dtype=np.float64)
    densities = np.asarray(densities_per_m3, dtype=np.float64)
    spectra = np.stack(
        [
            np.stack(
                [
                    emission_spectrum(fractions, t, n, length_m, wavelength_vac_nm, sigma_nm, gamma_nm, continuum_scale)
                    for n in densities
                ]
            )
            for t in temperatures
        ]
    )
    floor = LOG_FLOOR_FRACTION * float(spectra.max()) if spectra.max() > 0 else 1e-300
    return EmissionBasis(temperatures, densities, np.log(spectra + floor), floor)
