"""Physics-matched augmentation: many virtual samples of a fitted instrument's matrix class.

Each virtual sample gets a matrix drawn from the recipe (log-uniform per element, as in
``compositions.draw_compositions``), an analyte drawn log-uniformly and independently of the matrix, a
plasma state drawn around the fitted per-sample states and a total intensity drawn from the measured
totals. libskit is called directly once per sample (lines + continuum, ~0.2 s on 8011 channels); linear
mixing of per-element bases is not used because libskit's 1 mm plasma is strongly self-absorbed (thin vs
1 mm spectra of the rock reference differ by up to 18x the peak, measured), so spectra are not linear
in composition. Shots of one sample share its plasma state; they differ by a lognormal intensity factor
(the measured shot-to-shot spread) and detector noise (Poisson photo-electrons, read noise, saturation).
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from libs_pipeline.physics import compositions as comp
from libs_pipeline.physics.detector import Detector
from libs_pipeline.physics.instrument_fit import (
    InstrumentFit,
    LibskitCounter,
    baseline,
    composition_fractions,
    highpass,
    masked_correlation,
    to_wt,
)
from libs_pipeline.spectra.dataset import make_spectra_dataset

GROUND_TRUTH_ROLE = "ground_truth"
NA_DOUBLET_NM = (817.8, 820.2)
_MATRIX, _ANALYTE, _PLASMA, _TOTAL, _SHOTS, _POISSON, _READ = range(7)
TRUNCATE_SD = 2.0


def _stream(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=tuple(int(k) for k in key)))


@dataclass(frozen=True)
class VirtualSample:
    """One virtual sample's drawn truth: matrix (wt%), analyte (fit units), plasma state, expected total."""

    index: int
    matrix_wt: dict[str, float]
    analyte_value: float
    temperature_K: float
    density_per_m3: float
    total_counts: float
    background_fraction: float


def _truncated(rng: np.random.Generator, mean: float, sd: float, lo: float, hi: float) -> float:
    """Normal draw truncated at +-TRUNCATE_SD sd and to [lo, hi]."""
    while True:
        z = rng.standard_normal()
        if abs(z) <= TRUNCATE_SD:
            return float(np.clip(mean + sd * z, lo, hi))


def robust_location_scale(values) -> tuple[float, float]:
    """Median and 1.4826 x MAD: fits clamped at a grid edge are bounds, not estimates, so they must not set the spread."""
    v = np.asarray(values, dtype=np.float64)
    centre = float(np.median(v))
    return centre, float(1.4826 * np.median(np.abs(v - centre)))


def draw_virtual_sample(fit: InstrumentFit, index: int, analyte_range: tuple[float, float], seed: int) -> VirtualSample:
    """Independent streams per quantity and sample index: the analyte never depends on the matrix draw."""
    recipe = comp.matrix_recipe(fit.matrix)
    rng_m = _stream(seed, _MATRIX, index)
    matrix_wt = {e: float(np.exp(rng_m.uniform(np.log(lo), np.log(hi))))
                 for e, (lo, hi) in sorted(recipe.ranges.items()) if e != fit.analyte}
    lo, hi = analyte_range
    analyte = float(np.exp(_stream(seed, _ANALYTE, index).uniform(np.log(lo), np.log(hi))))
    rng_p = _stream(seed, _PLASMA, index)
    t_centre, t_spread = robust_location_scale(fit.temperatures_K)
    n_centre, n_spread = robust_location_scale(np.log(fit.densities_per_m3))
    temperature = _truncated(rng_p, t_centre, t_spread, min(fit.grid_temperatures_K), max(fit.grid_temperatures_K))
    log_density = _truncated(rng_p, n_centre, n_spread,
                             float(np.log(min(fit.grid_densities_per_m3))), float(np.log(max(fit.grid_densities_per_m3))))
    log_total = np.log(fit.sample_totals)
    rng_total = _stream(seed, _TOTAL, index)
    total = float(np.exp(rng_total.normal(log_total.mean(), log_total.std())))
    bg = np.asarray(fit.sample_background_fractions)
    background = _truncated(rng_total, float(bg.mean()), float(bg.std()), 0.0, 0.95)
    return VirtualSample(index, matrix_wt, analyte, temperature, float(np.exp(log_density)), total, background)


def expected_counts(fit: InstrumentFit, counter: LibskitCounter, fractions: dict[str, float], temperature_K: float,
                    density_per_m3: float, total_counts: float, background_fraction: float) -> np.ndarray:
    """Noise-free mean counts: response x lines plus the fitted background, summing to ``total_counts`` on the
    unsaturated channels, ``background_fraction`` of it background."""
    lines = np.asarray(fit.response) * counter.lines(fractions, temperature_K, density_per_m3)
    mask = np.asarray(fit.unsaturated, dtype=bool)
    line_part = lines * ((1.0 - background_fraction) * total_counts / lines[mask].sum())
    return line_part + background_fraction * total_counts * np.asarray(fit.background)


def detector_of(fit: InstrumentFit) -> Detector:
    """The fitted detector: no dark offset (data are dark-subtracted and clipped at 0), full scale = saturation."""
    return Detector(fit.gain_counts_per_electron, fit.read_noise_counts, 0.0, fit.saturation_counts)


@dataclass(frozen=True)
class ChunkTask:
    fit_json: str
    indices: tuple[int, ...]
    n_shots: int
    analyte_range: tuple[float, float]
    seed: int


@dataclass
class ChunkResult:
    samples: list[VirtualSample]
    counts: np.ndarray  # (len(samples) * n_shots, channels) float32
    factors: np.ndarray
    libskit_calls: int
    libskit_seconds: float


def simulate_chunk(task: ChunkTask) -> ChunkResult:
    """All shots of a run of virtual samples (one worker's share)."""
    fit = InstrumentFit.from_json(task.fit_json)
    counter = LibskitCounter(fit.wavelength, fit.gaussian_sigma_nm, fit.plasma_length_m)
    detector = detector_of(fit)
    samples, counts, factors = [], [], []
    for index in task.indices:
        s = draw_virtual_sample(fit, index, task.analyte_range, task.seed)
        fractions = composition_fractions(fit.matrix, fit.analyte, to_wt(s.analyte_value, fit.analyte_units), s.matrix_wt)
        mean = expected_counts(fit, counter, fractions, s.temperature_K, s.density_per_m3, s.total_counts,
                               s.background_fraction)
        factor = np.exp(_stream(task.seed, _SHOTS, index).normal(0.0, fit.shot_log_sd, task.n_shots))
        electrons = factor[:, None] * mean[None, :] / fit.gain_counts_per_electron
        c, _ = detector.read(electrons, _stream(task.seed, _POISSON, index), _stream(task.seed, _READ, index))
        samples.append(s)
        counts.append(c)
        factors.append(factor)
    return ChunkResult(samples, np.concatenate(counts), np.concatenate(factors), counter.calls, counter.seconds)


def _pool_context() -> multiprocessing.context.BaseContext:
    """Never fork the caller; a forkserver that imported this module (and libskit) forks workers cheaply."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__])
        return context
    return multiprocessing.get_context("spawn")  # pragma: no cover - Windows


def default_analyte_range(fit: InstrumentFit) -> tuple[float, float]:
    """0.5 x the lowest to 2 x the highest certified value of the measured campaign."""
    return 0.5 * min(fit.sample_labels), 2.0 * max(fit.sample_labels)


def simulate_matched_campaign(
    fit: InstrumentFit,
    n_samples: int = 1000,
    n_shots: int = 4,
    analyte_range: tuple[float, float] | None = None,
    seed: int = 0,
    workers: int | None = None,
    chunk_samples: int = 25,
) -> xr.Dataset:
    """``n_samples`` x ``n_shots`` virtual spectra on the measured grid (canonical layout, analyte in the fit's
    units, ground-truth T_K / n_e_per_m3 / matrix wt% per spectrum). Same fit + seed -> same bytes, any workers."""
    if n_samples < 1 or n_shots < 1:
        raise ValueError(f"n_samples and n_shots must be >= 1, got {n_samples}, {n_shots}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    lo, hi = default_analyte_range(fit) if analyte_range is None else (float(analyte_range[0]), float(analyte_range[1]))
    if not 0.0 < lo < hi:
        raise ValueError(f"analyte_range must satisfy 0 < low < high, got {(lo, hi)}")
    started = time.perf_counter()
    fit_json = fit.to_json()
    tasks = [ChunkTask(fit_json, tuple(range(i, min(i + chunk_samples, n_samples))), n_shots, (lo, hi), int(seed))
             for i in range(0, n_samples, chunk_samples)]
    n_workers = min(2, os.cpu_count() or 1) if workers is None else int(workers)
    if n_workers <= 1 or len(tasks) == 1:
        results = [simulate_chunk(t) for t in tasks]
    else:
        with ProcessPoolExecutor(max_workers=min(n_workers, len(tasks)), mp_context=_pool_context()) as pool:
            results = list(pool.map(simulate_chunk, tasks, chunksize=1))
    samples = [s for r in results for s in r.samples]
    ids = np.repeat([f"VS{s.index:05d}" for s in samples], n_shots)
    shots = np.tile(np.arange(n_shots, dtype=np.int64), len(samples))
    rep = lambda values: np.repeat(np.asarray(values, dtype=np.float64), n_shots)  # noqa: E731
    attrs = {
        "name": f"matched-{fit.matrix}-{fit.analyte}",
        "source": "libs_pipeline.physics.simulate_matched_campaign",
        "instrument": (f"fitted: Gaussian sigma {fit.gaussian_sigma_nm:.4f} nm, background {np.mean(fit.sample_background_fractions):.2f} of total, "
                       f"gain {fit.gain_counts_per_electron:.3g} counts/e-, read noise {fit.read_noise_counts:.3g}, "
                       f"saturation {fit.saturation_counts:g}"),
        "matrix": fit.matrix,
        "analyte": fit.analyte,
        "analyte_range": [lo, hi],
        "seed": int(seed),
        "libskit_calls": int(sum(r.libskit_calls for r in results)),
        "libskit_seconds": float(sum(r.libskit_seconds for r in results)),
        "wall_seconds": float(time.perf_counter() - started),
        "workers": int(min(n_workers, len(tasks))),
    }
    ds = make_spectra_dataset(
        np.concatenate([r.counts for r in results]), fit.wavelength, ids, shots,
        labels={fit.analyte: (rep([s.analyte_value for s in samples]), fit.analyte_units)}, attrs=attrs,
    )
    truth = {
        "background_fraction": (rep([s.background_fraction for s in samples]), "1", "background share of the total"),
        "T_K": (rep([s.temperature_K for s in samples]), "K", "plasma temperature"),
        "n_e_per_m3": (rep([s.density_per_m3 for s in samples]), "m^-3", "electron density"),
        "intensity_factor": (np.concatenate([r.factors for r in results]), "1", "shot-to-shot intensity factor"),
    }
    for element in sorted(samples[0].matrix_wt):
        truth[f"{element}_wt"] = (rep([s.matrix_wt[element] for s in samples]), "wt%", f"{element} content (matrix draw)")
    for var, (values, units, what) in truth.items():
        ds[var] = ("spectrum", values, {"role": GROUND_TRUTH_ROLE, "units": units, "long_name": what})
    return ds


def write_matched_zarr(ds: xr.Dataset, path: str | Path, chunk_spectra: int = 256) -> Path:
    """Write a simulated dataset as a zarr 3 spectra store (``open_spectra`` reads it); temp name, then rename."""
    target = Path(path)
    if target.suffix != ".zarr":
        raise ValueError(f"write_matched_zarr: path must end in .zarr, got {str(target)!r}")
    if target.exists():
        raise FileExistsError(f"write_matched_zarr: {target} already exists")
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    out = ds.copy()
    for var in out.variables.values():
        var.encoding = {}
    for name, var in list(out.data_vars.items()):
        if var.dtype.kind == "U":
            out[name] = var.astype(object)
    for key, value in list(out.attrs.items()):
        if isinstance(value, (list, tuple)):
            out.attrs[key] = [float(v) for v in value]
    n, m = out.sizes["spectrum"], out.sizes["wavelength"]
    encoding = {"intensity": {"chunks": (max(1, min(chunk_spectra, n)), m)}}
    target.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
        out.to_zarr(tmp, zarr_format=3, mode="w-", consolidated=True, encoding=encoding)
    os.replace(tmp, target)
    return target


# ---------------------------------------------------------------- sim-to-real gap


def line_area(wavelength: np.ndarray, spectrum: np.ndarray, window: tuple[float, float] = NA_DOUBLET_NM) -> float:
    """Area of ``window`` above the straight line joining the mean of 3 channels at each edge (counts x nm)."""
    sel = np.flatnonzero((wavelength >= window[0]) & (wavelength <= window[1]))
    if sel.size < 8:
        raise ValueError(f"line_area: window {window} nm holds only {sel.size} channels")
    x, y = wavelength[sel], np.asarray(spectrum, dtype=np.float64)[sel]
    x0, x1 = x[:3].mean(), x[-3:].mean()
    y0, y1 = y[:3].mean(), y[-3:].mean()
    base = y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return float(np.trapezoid(y - base, x))


def simulate_measured_samples(fit: InstrumentFit) -> np.ndarray:
    """(samples, channels) noise-free mean spectra of the measured samples: fitted T/n_e, certified analyte,
    assumed matrix, each scaled to its measured total."""
    counter = LibskitCounter(fit.wavelength, fit.gaussian_sigma_nm, fit.plasma_length_m)
    rows = []
    for k, label in enumerate(fit.sample_labels):
        rows.append(expected_counts(fit, counter, fit.fractions(label), fit.temperatures_K[k], fit.densities_per_m3[k],
                                    fit.sample_totals[k], fit.sample_background_fractions[k]))
    return np.stack(rows)


def sim_to_real_gap(fit: InstrumentFit, ds: xr.Dataset) -> dict[str, object]:
    """Per measured sample: correlation of high-passed simulated vs measured mean spectra (unsaturated channels),
    simulated/measured Na-doublet area ratio; and the slopes of area vs certified concentration."""
    wavelength = fit.wavelength
    if not np.array_equal(wavelength, ds["wavelength"].values):
        raise ValueError("sim_to_real_gap: ds is not on the fitted wavelength grid")
    simulated = simulate_measured_samples(fit)
    mask = np.asarray(fit.unsaturated, dtype=bool)
    intensity = np.asarray(ds["intensity"].values, dtype=np.float64)
    spectrum_sample = ds["sample_id"].values
    per_sample, area_m, area_s = [], [], []
    for k, sid in enumerate(fit.sample_ids):
        measured = intensity[spectrum_sample == sid].mean(axis=0)
        am, asim = line_area(wavelength, measured), line_area(wavelength, simulated[k])
        area_m.append(am)
        area_s.append(asim)
        per_sample.append({
            "sample_id": sid,
            fit.analyte: fit.sample_labels[k],
            "highpass_correlation": masked_correlation(highpass(measured), highpass(simulated[k]), mask),
            "baseline_correlation": masked_correlation(baseline(measured), baseline(simulated[k]), mask),
            "na_area_measured": am,
            "na_area_simulated": asim,
            "na_area_ratio_sim_over_meas": asim / am if am > 0 else float("nan"),
        })
    labels = np.asarray(fit.sample_labels)
    slope_m = float(np.polyfit(labels, area_m, 1)[0])
    slope_s = float(np.polyfit(labels, area_s, 1)[0])
    return {
        "per_sample": per_sample,
        "median_highpass_correlation": float(np.median([p["highpass_correlation"] for p in per_sample])),
        "median_na_area_ratio": float(np.median([p["na_area_ratio_sim_over_meas"] for p in per_sample])),
        "na_slope_measured": slope_m,
        "na_slope_simulated": slope_s,
        "na_slope_ratio_sim_over_meas": slope_s / slope_m,
        "na_area_window_nm": list(NA_DOUBLET_NM),
    }
