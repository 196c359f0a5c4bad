"""Fit the virtual instrument (libskit LTE plasma -> response -> detector) to a measured campaign.

Steps (each documented where it is done): instrument Gaussian width such that libskit reproduces the
measured widths of isolated lines of the mean spectrum (per density node); per-sample plasma state by matching simulated to measured high-passed line patterns over a
T x n_e grid; smooth spectral response as the heavily smoothed ratio of measured to simulated line flux;
continuum as an empirical smooth background (measured baseline minus the simulated lines' wings: libskit's
free-free + free-bound continuum times the response anti-correlated with the measured OREAS baselines,
r = -0.13..-0.26, measured) with a per-sample level; detector gain / read noise / shot-to-shot intensity spread
from the replicates. The matrix is not certified: a "reference" composition of the chosen recipe
(``compositions.MATRICES``) with the sample's certified analyte is assumed for every sample.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import xarray as xr
from scipy.ndimage import gaussian_filter1d, percentile_filter
from scipy.optimize import OptimizeWarning, curve_fit
from scipy.signal import find_peaks

from libs_pipeline.physics import compositions as comp
from libs_pipeline.physics.plasma import air_to_vacuum, emission_spectrum, libskit_resolution
from libs_pipeline.spectra.dataset import resolve_analyte, sample_ids

PPM_PER_WT = 1e4
FINE_SAMPLES_PER_FWHM = 2.0
BASELINE_WINDOW = 61  # channels (~4-6 nm on the OREAS grid): rolling 10th percentile = spectral baseline
RESPONSE_SMOOTH = 150.0  # channels (Gaussian sd, ~10-16 nm): smoothing of line flux before the ratio
SATURATION_MARGIN = 0.99
SATURATION_DILATE = 3  # channels either side of a saturated channel that are also excluded
WIDTH_CANDIDATES = (0.45, 0.6, 0.75, 0.9, 1.05)  # x the median measured line sigma, tried by ``calibrate_sigma``


@dataclass
class InstrumentFit:
    """A virtual instrument matched to one measured campaign (JSON-able: lists, floats, strings)."""

    analyte: str
    analyte_units: str
    matrix: str
    reference_wt: dict[str, float]  # assumed matrix (wt%, analyte excluded, balance omitted)
    wavelength_nm: list[float]
    gaussian_sigma_nm: float  # instrument Gaussian sd given to libskit (at the mean fitted density)
    sigma_by_density_nm: list[float]  # the width calibrated at each density node (grid_densities_per_m3)
    line_fits: list[dict[str, float]]  # the isolated lines the width came from
    response: list[float]  # counts per libskit intensity unit, per channel (smooth)
    background: list[float]  # smooth background shape (continuum + unresolved emission), sums to 1 on ``unsaturated``
    plasma_length_m: float
    sample_ids: list[str]
    sample_labels: list[float]  # certified analyte per sample (analyte_units)
    temperatures_K: list[float]  # fitted per sample
    densities_per_m3: list[float]  # fitted per sample
    sample_totals: list[float]  # measured mean-spectrum total over the ``unsaturated`` channels, per sample
    sample_scales: list[float]  # fitted multiplier of response x lines per sample (at the fitted state)
    sample_background_fractions: list[float]  # background share of the unsaturated total, per sample
    match_correlations: list[float]  # best high-passed correlation per sample at the fitted state
    shot_log_sd: float  # pooled within-sample sd of ln(total intensity)
    gain_counts_per_electron: float
    read_noise_counts: float
    saturation_counts: float
    unsaturated: list[bool]  # channels unsaturated in every measured shot (totals and scales use these)
    grid_temperatures_K: list[float] = field(default_factory=list)
    grid_densities_per_m3: list[float] = field(default_factory=list)
    libskit_calls: int = 0
    libskit_seconds: float = 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> InstrumentFit:
        return cls(**json.loads(text))

    @property
    def wavelength(self) -> np.ndarray:
        return np.asarray(self.wavelength_nm, dtype=np.float64)

    def fractions(self, analyte_value: float, matrix_wt: Mapping[str, float] | None = None) -> dict[str, float]:
        """libskit mass fractions of the assumed matrix (or ``matrix_wt``) with the analyte at ``analyte_value``."""
        return composition_fractions(self.matrix, self.analyte, to_wt(analyte_value, self.analyte_units),
                                     self.reference_wt if matrix_wt is None else matrix_wt)


def to_wt(value: float, units: str) -> float:
    """A concentration in wt% (``units`` is 'wt%' or 'ppm')."""
    if units == "ppm":
        return float(value) / PPM_PER_WT
    if units == "wt%":
        return float(value)
    raise ValueError(f"analyte units {units!r} not supported (use 'wt%' or 'ppm')")


def reference_matrix_wt(matrix: str, analyte: str) -> dict[str, float]:
    """The recipe's typical composition (wt%) without the analyte, the balance and elements outside its ranges."""
    recipe = comp.matrix_recipe(matrix)
    return {e: float(v) for e, v in recipe.reference.items() if e in recipe.ranges and e != analyte}


def composition_fractions(matrix: str, analyte: str, analyte_wt: float, matrix_wt: Mapping[str, float]) -> dict[str, float]:
    """Mass fractions: ``matrix_wt`` + analyte, the recipe's balance element filling up to 100 wt%."""
    recipe = comp.matrix_recipe(matrix)
    row = {e: float(v) for e, v in matrix_wt.items() if e != analyte}
    row[analyte] = float(analyte_wt)
    row = comp._with_balance(row, recipe.balance)
    total = sum(row.values())
    return {e: v / total for e, v in sorted(row.items()) if v > 0.0}


class LibskitCounter:
    """Calls libskit for line spectra on one grid, counting calls and wall time (cost figures)."""

    def __init__(self, wavelength_nm: np.ndarray, sigma_nm: float, length_m: float):
        import time

        self._time = time.perf_counter
        self.wavelength_vac = air_to_vacuum(np.asarray(wavelength_nm, dtype=np.float64))
        self.sigma_nm = float(sigma_nm)
        self.length_m = float(length_m)
        self.calls = 0
        self.seconds = 0.0

    def lines(self, fractions: Mapping[str, float], temperature_K: float, density_per_m3: float) -> np.ndarray:
        """Instrument-broadened LTE line emission (libskit units, self-absorption included, no continuum)."""
        start = self._time()
        with libskit_resolution(FINE_SAMPLES_PER_FWHM):
            spectrum = emission_spectrum(fractions, temperature_K, density_per_m3, self.length_m,
                                         self.wavelength_vac, self.sigma_nm, 0.0, 0.0)
        self.seconds += self._time() - start
        self.calls += 1
        return spectrum


# ---------------------------------------------------------------- spectral helpers


def baseline(spectrum: np.ndarray, window: int = BASELINE_WINDOW) -> np.ndarray:
    """Smooth lower envelope: rolling 10th percentile, then Gaussian-smoothed over the same scale."""
    low = percentile_filter(np.asarray(spectrum, dtype=np.float64), 10, size=window, mode="nearest")
    return gaussian_filter1d(low, window / 4.0, mode="nearest")


def highpass(spectrum: np.ndarray) -> np.ndarray:
    """Spectrum minus its baseline (lines only)."""
    return np.asarray(spectrum, dtype=np.float64) - baseline(spectrum)


def masked_correlation(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """Pearson correlation of ``a`` and ``b`` over the channels where ``mask`` is True."""
    x, y = a[mask], b[mask]
    x, y = x - x.mean(), y - y.mean()
    denom = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / denom) if denom > 0 else 0.0


def _dilate(flags: np.ndarray, channels: int) -> np.ndarray:
    """``flags`` widened by ``channels`` on each side."""
    out = flags.copy()
    for k in range(1, channels + 1):
        out[k:] |= flags[:-k]
        out[:-k] |= flags[k:]
    return out


def saturation_mask(shots: np.ndarray, saturation_counts: float) -> np.ndarray:
    """True where no shot reaches saturation (with ``SATURATION_DILATE`` neighbouring channels excluded)."""
    return ~_dilate((np.asarray(shots) >= SATURATION_MARGIN * saturation_counts).any(axis=0), SATURATION_DILATE)


def _gauss(x, amplitude, center, sigma, offset, slope):
    return amplitude * np.exp(-0.5 * ((x - center) / sigma) ** 2) + offset + slope * (x - center)


def fit_gaussian_line(wavelength: np.ndarray, spectrum: np.ndarray, index: int, half_window: int = 7) -> dict[str, float] | None:
    """Gaussian + linear background fit of the line at channel ``index``; None if it fails or looks unlike a line."""
    lo, hi = index - half_window, index + half_window + 1
    if lo < 0 or hi > wavelength.size:
        return None
    x, y = wavelength[lo:hi], np.asarray(spectrum[lo:hi], dtype=np.float64)
    step = float(np.mean(np.diff(x)))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)
            p, _ = curve_fit(_gauss, x, y, p0=(y.max() - y.min(), wavelength[index], 1.2 * step, y.min(), 0.0), maxfev=4000)
    except RuntimeError:
        return None
    resid = y - _gauss(x, *p)
    r2 = 1.0 - float((resid**2).sum() / max(((y - y.mean()) ** 2).sum(), 1e-300))
    sigma = abs(float(p[2]))
    if not 0.3 * step < sigma < 6 * step or r2 < 0.98 or abs(p[1] - wavelength[index]) > 2 * step:
        return None
    return {"wavelength_nm": float(p[1]), "sigma_nm": sigma, "sigma_channels": sigma / step, "amplitude": float(p[0]), "r2": r2}


def fit_line_widths(wavelength: np.ndarray, spectrum: np.ndarray, mask: np.ndarray, n_lines: int = 16,
                    isolation_nm: float = 1.0, half_window: int = 7) -> list[dict[str, float]]:
    """Gaussian fits of the ``n_lines`` strongest isolated, unsaturated lines (no other peak above 3 % of
    this one within ``isolation_nm``); fits with sigma outside 0.3-6 channels or R^2 < 0.98 are dropped."""
    hp = highpass(spectrum)
    noise = float(np.median(np.abs(np.diff(hp)))) + 1e-12
    peaks, _ = find_peaks(hp, prominence=20 * noise)
    fits: list[dict[str, float]] = []
    for idx in peaks[np.argsort(hp[peaks])[::-1]]:
        if idx - half_window < 0 or idx + half_window >= wavelength.size or not mask[idx - half_window : idx + half_window + 1].all():
            continue
        near = (np.abs(wavelength[peaks] - wavelength[idx]) < isolation_nm) & (peaks != idx)
        if (hp[peaks[near]] > 0.03 * hp[idx]).any():
            continue
        fit = fit_gaussian_line(wavelength, spectrum, int(idx), half_window)
        if fit is not None:
            fits.append(fit)
        if len(fits) >= n_lines:
            break
    if not fits:
        raise ValueError("fit_line_widths: no isolated unsaturated line could be fitted")
    return fits


def simulated_width_ratio(wavelength: np.ndarray, line_fits: list[dict[str, float]], simulated: np.ndarray) -> float | None:
    """Median over the measured isolated lines of ln(simulated / measured Gaussian width); None if < 3 lines fit."""
    logs = []
    for line in line_fits:
        sim = fit_gaussian_line(wavelength, simulated, int(np.argmin(np.abs(wavelength - line["wavelength_nm"]))))
        if sim is not None:
            logs.append(np.log(sim["sigma_nm"] / line["sigma_nm"]))
    return float(np.median(logs)) if len(logs) >= 3 else None


def calibrate_sigma(wavelength: np.ndarray, line_fits: list[dict[str, float]], simulate, candidates: Sequence[float]) -> float:
    """The instrument sigma at which the simulation's fitted widths of the measured lines match the measured ones
    (zero of the median log width ratio, linear between candidates, clamped to their range). ``simulate(sigma)``
    returns a simulated spectrum, so Stark broadening, self-absorption and sampling are accounted for."""
    sigmas, ratios = [], []
    for sigma in sorted(candidates):
        ratio = simulated_width_ratio(wavelength, line_fits, simulate(sigma))
        if ratio is not None:
            sigmas.append(sigma)
            ratios.append(ratio)
    if not sigmas:
        raise ValueError("calibrate_sigma: the simulation reproduces none of the measured isolated lines")
    if ratios[0] >= 0:
        return float(sigmas[0])
    if ratios[-1] <= 0:
        return float(sigmas[-1])
    k = int(np.flatnonzero(np.asarray(ratios) > 0)[0])
    s0, s1, r0, r1 = sigmas[k - 1], sigmas[k], ratios[k - 1], ratios[k]
    return float(s0 + (s1 - s0) * (-r0) / (r1 - r0))


def smooth_response(measured: np.ndarray, simulated_lines: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Counts per libskit unit: exp of the flux-weighted, heavily smoothed ln(measured / simulated line flux)."""
    flux_m = gaussian_filter1d(np.clip(highpass(measured), 0.0, None) * mask, RESPONSE_SMOOTH, mode="nearest")
    flux_s = gaussian_filter1d(np.clip(highpass(simulated_lines), 0.0, None) * mask, RESPONSE_SMOOTH, mode="nearest")
    valid = (flux_m > 0) & (flux_s > 1e-6 * flux_s.max())
    if valid.sum() < 10:
        raise ValueError("smooth_response: measured and simulated spectra share almost no line flux")
    log_ratio = np.where(valid, np.log(np.where(valid, flux_m, 1.0) / np.where(valid, flux_s, 1.0)), 0.0)
    weight = np.where(valid, flux_m, 0.0)
    num = gaussian_filter1d(weight * log_ratio, 2 * RESPONSE_SMOOTH, mode="nearest")
    den = gaussian_filter1d(weight, 2 * RESPONSE_SMOOTH, mode="nearest")
    fallback = float((weight * log_ratio).sum() / weight.sum())
    return np.exp(np.where(den > 1e-9 * den.max(), num / np.maximum(den, 1e-300), fallback))


# ---------------------------------------------------------------- detector and shots


def fit_detector_noise(shots_by_sample: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> tuple[float, float, float]:
    """(gain counts/e-, read noise counts, pooled sd of ln total) from replicate shots.

    Each shot is rescaled to its sample's mean total (removing the shot-to-shot intensity factor), then the
    per-channel variance across shots is fitted as gain * mean + b * mean^2 + read^2 over quantile bins.
    """
    means, variances, log_sd = [], [], []
    for shots, mask in zip(shots_by_sample, masks):
        shots = np.asarray(shots, dtype=np.float64)
        if shots.shape[0] < 3:
            continue
        totals = shots[:, mask].sum(axis=1)
        log_sd.append(np.log(totals).std(ddof=1))
        scaled = shots * (totals.mean() / totals)[:, None]
        means.append(scaled[:, mask].mean(axis=0))
        variances.append(scaled[:, mask].var(axis=0, ddof=1))
    if not means:
        raise ValueError("fit_detector_noise: needs at least one sample with >= 3 shots")
    m, v = np.concatenate(means), np.concatenate(variances)
    edges = np.quantile(m, np.linspace(0.0, 0.995, 41))
    bm, bv = [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (m >= lo) & (m < hi)
        if sel.sum() >= 20:
            bm.append(np.median(m[sel]))
            bv.append(np.median(v[sel]))
    bm, bv = np.asarray(bm), np.asarray(bv)
    design = np.stack([bm, bm**2, np.ones_like(bm)], axis=1)
    coef, *_ = np.linalg.lstsq(design / bv[:, None], np.ones_like(bv), rcond=None)  # relative residuals
    gain = float(max(coef[0], 1e-3))
    read = float(np.sqrt(max(coef[2], 0.0)))
    return gain, read, float(np.sqrt(np.mean(np.square(log_sd))))


# ---------------------------------------------------------------- the fit


def _refine_parabola(x: np.ndarray, y: np.ndarray, i: int) -> float:
    """Vertex of the parabola through the best grid point and its neighbours (clamped to the grid)."""
    if i == 0 or i == x.size - 1:
        return float(x[i])
    a, b, c = np.polyfit(x[i - 1 : i + 2], y[i - 1 : i + 2], 2)
    return float(np.clip(-b / (2 * a), x[i - 1], x[i + 1])) if a < 0 else float(x[i])


def fit_instrument(
    ds: xr.Dataset,
    analyte: str | None = None,
    matrix: str = "rock",
    temperatures_K: Sequence[float] = (6000.0, 7000.0, 8000.0, 9000.0, 10000.0, 11500.0, 13000.0, 15000.0),
    densities_per_m3: Sequence[float] = (1e22, 3e22, 1e23, 3e23),
    plasma_length_m: float = 1e-3,
    saturation_counts: float | None = None,
    n_width_lines: int = 16,
    width_temperature_K: float = 10000.0,
) -> InstrumentFit:
    """Fit the virtual instrument to measured spectra ``ds`` (canonical layout, certified ``analyte`` label).

    Plasma state per sample: the grid node (then parabolic refinement in 1/T) maximising the correlation
    of sqrt-transformed, high-passed, unsaturated measured vs simulated spectra. ``saturation_counts``
    defaults to the largest measured value.
    """
    analyte, units = resolve_analyte(ds, analyte, "fit_instrument")
    wavelength = ds["wavelength"].values.astype(np.float64)
    intensity = np.asarray(ds["intensity"].values, dtype=np.float64)
    sat = float(intensity.max()) if saturation_counts is None else float(saturation_counts)
    sids = sample_ids(ds)
    spectrum_sample = ds["sample_id"].values
    shots = [intensity[spectrum_sample == s] for s in sids]
    labels = [float(ds[analyte].values[spectrum_sample == s][0]) for s in sids]
    if any(not np.isfinite(v) or v <= 0 for v in labels):
        raise ValueError(f"fit_instrument: every sample needs a positive certified {analyte!r} label, got {labels}")
    masks = [saturation_mask(x, sat) for x in shots]
    means = np.stack([x.mean(axis=0) for x in shots])
    common = np.logical_and.reduce(masks)
    grand = means.mean(axis=0)

    # instrument width: measured isolated lines; for each density node, the instrument sigma at which libskit's
    # widths of those lines (Stark + self-absorption + sampling included) match the measured ones at width_temperature_K
    line_fits = fit_line_widths(wavelength, grand, common, n_width_lines)
    median_sigma = float(np.median([f["sigma_nm"] for f in line_fits]))
    counter = LibskitCounter(wavelength, median_sigma, plasma_length_m)
    reference = reference_matrix_wt(matrix, analyte)
    fractions = composition_fractions(matrix, analyte, to_wt(float(np.median(labels)), units), reference)
    dens = np.asarray(sorted(densities_per_m3), dtype=np.float64)
    sigma_by_density = []
    for n in dens:
        def simulate(candidate: float, n: float = float(n)) -> np.ndarray:
            counter.sigma_nm = candidate
            return counter.lines(fractions, width_temperature_K, n)

        sigma_by_density.append(calibrate_sigma(wavelength, line_fits, simulate, [f * median_sigma for f in WIDTH_CANDIDATES]))
    counter.sigma_nm = median_sigma
    # channels the analyte's own lines change (lowest vs highest certified content) are left out of the T fit,
    # so that the matrix lines, not the analyte level, decide the plasma state
    state = (width_temperature_K, float(np.exp(np.log(dens).mean())))
    low = counter.lines(composition_fractions(matrix, analyte, to_wt(min(labels), units), reference), *state)
    high = counter.lines(composition_fractions(matrix, analyte, to_wt(max(labels), units), reference), *state)
    analyte_free = ~_dilate(np.abs(high - low) > 0.05 * np.maximum(low, np.median(low)), 5)

    temps = np.asarray(sorted(temperatures_K), dtype=np.float64)
    scores = np.zeros((len(sids), temps.size, dens.size))
    measured_hp = [highpass(np.sqrt(np.clip(m, 0.0, None))) for m in means]
    for i, t in enumerate(temps):
        for j, n in enumerate(dens):
            counter.sigma_nm = sigma_by_density[j]
            lines = counter.lines(fractions, t, n)
            model = smooth_response(grand, lines, common) * lines
            model_hp = highpass(np.sqrt(model))
            for k in range(len(sids)):
                scores[k, i, j] = masked_correlation(measured_hp[k], model_hp, masks[k] & analyte_free)
    fitted_t, fitted_n = [], []
    for k in range(len(sids)):
        i, j = np.unravel_index(np.argmax(scores[k]), scores[k].shape)
        fitted_t.append(1.0 / _refine_parabola(1.0 / temps[::-1], scores[k, ::-1, j], temps.size - 1 - i))
        fitted_n.append(float(np.exp(_refine_parabola(np.log(dens), scores[k, i, :], j))))

    # response at the mean fitted state; background = measured baseline not explained by the lines' wings
    t_mean, n_mean = float(np.mean(fitted_t)), float(np.exp(np.mean(np.log(fitted_n))))
    counter.sigma_nm = sigma = float(np.interp(np.log(n_mean), np.log(dens), sigma_by_density))
    mean_lines = counter.lines(fractions, t_mean, n_mean)
    response = smooth_response(grand, mean_lines, common)
    background = np.clip(baseline(grand) - baseline(response * mean_lines), 0.0, None)
    if background[common].sum() <= 0:
        raise ValueError("fit_instrument: the measured baseline lies below the simulated line wings everywhere")
    background = background / background[common].sum()
    scales, fractions_bg, correlations = [], [], []
    for k in range(len(sids)):
        fr = composition_fractions(matrix, analyte, to_wt(labels[k], units), reference)
        model_lines = response * counter.lines(fr, fitted_t[k], fitted_n[k])
        # lines scaled to the measured line flux (positive high-passed part); the rest of the total is background
        a = float((np.clip(highpass(means[k]), 0, None)[common]).sum() / (np.clip(highpass(model_lines), 0, None)[common]).sum())
        total = float(means[k][common].sum())
        scales.append(a)
        fractions_bg.append(float(np.clip(1.0 - a * model_lines[common].sum() / total, 0.0, 0.95)))
        correlations.append(float(scores[k].max()))
    gain, read, shot_log_sd = fit_detector_noise(shots, masks)
    return InstrumentFit(
        analyte=analyte, analyte_units=units, matrix=matrix, reference_wt=reference,
        wavelength_nm=wavelength.tolist(), gaussian_sigma_nm=sigma, sigma_by_density_nm=sigma_by_density, line_fits=line_fits,
        response=response.tolist(), background=background.tolist(), plasma_length_m=float(plasma_length_m),
        sample_ids=sids, sample_labels=labels, temperatures_K=[float(t) for t in fitted_t],
        densities_per_m3=[float(n) for n in fitted_n], sample_scales=scales, sample_background_fractions=fractions_bg,
        sample_totals=[float(m[common].sum()) for m in means], unsaturated=common.tolist(), match_correlations=correlations,
        shot_log_sd=shot_log_sd, gain_counts_per_electron=gain, read_noise_counts=read, saturation_counts=sat,
        grid_temperatures_K=temps.tolist(), grid_densities_per_m3=dens.tolist(),
        libskit_calls=counter.calls, libskit_seconds=counter.seconds,
    )
