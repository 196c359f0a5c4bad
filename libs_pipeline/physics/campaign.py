"""A virtual LIBS campaign: N certified samples x M shots through plasma -> spectrometer -> detector.

Per sample, libskit is called only on a small (T, n_e) grid (``plasma.compute_emission_basis``); every
shot's plasma state is drawn around the nominal one and its spectrum interpolated from that grid.
Samples run in worker processes; each sample's random streams are keyed by (seed, sample index), so
the bytes do not depend on the number of workers. Ground truth (T, n_e, intensity factor) is kept per shot.
"""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import re
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import libskit
import numpy as np
import pandas as pd
import xarray as xr
import yaml

from libs_pipeline.config import CampaignConfig
from libs_pipeline.physics import compositions as comp
from libs_pipeline.physics.detector import Detector
from libs_pipeline.physics.plasma import (
    EmissionBasis,
    basis_nodes,
    check_elements,
    compute_emission_basis,
    emission_spectrum,
    known_elements,
    libskit_resolution,
)
from libs_pipeline.physics.scenarios import apply_scenario, base_config
from libs_pipeline.physics.spectrometer import GRID_DECIMALS, Spectrometer
from libs_pipeline.spectra.atomic import atomic_write_text
from libs_pipeline.spectra.dataset import make_spectra_dataset
from libs_pipeline.spectra.shot_columns import write_shot_columns_file

GROUND_TRUTH_ROLE = "ground_truth"
# independent random streams, keyed so that no stream depends on how many others were drawn
_STREAM_COMPOSITIONS, _STREAM_MATRIX, _STREAM_SHOTS = 0, 1, 2
_SHOT_PLASMA, _SHOT_POISSON, _SHOT_READ = 0, 1, 2


def _stream(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=tuple(int(k) for k in key)))


def default_workers() -> int:
    """Processes to use: the CPUs this process may run on (at most 8)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 8))


@dataclass(frozen=True)
class SampleTask:
    """Everything one worker needs to simulate all shots of one sample."""

    index: int
    sample_id: str
    fractions: dict[str, float]
    config: CampaignConfig  # effective (scenario applied)
    electrons_per_unit: float
    seed: int


@dataclass
class SampleResult:
    counts: np.ndarray  # (shots, channels) float32, dark-subtracted
    temperature_K: np.ndarray
    electron_density_per_m3: np.ndarray
    intensity_factor: np.ndarray
    n_saturated: np.ndarray
    cpu_seconds: float = 0.0


@dataclass
class VirtualCampaign:
    """Simulated spectra (canonical layout + ground-truth vars), certified sample table and per-shot truth."""

    spectra: xr.Dataset
    samples: pd.DataFrame
    shots: pd.DataFrame
    config: CampaignConfig
    effective_config: CampaignConfig
    seed: int
    timings: dict[str, float] = field(default_factory=dict)  # wall and CPU seconds (diagnostic only)

    @property
    def name(self) -> str:
        return str(self.spectra.attrs["name"])


def _truncated_normal(rng: np.random.Generator, n: int, limit: float) -> np.ndarray:
    z = rng.standard_normal(n)
    while True:
        bad = np.abs(z) > limit
        if not bad.any():
            return z
        z[bad] = rng.standard_normal(int(bad.sum()))


def plasma_nodes(config: CampaignConfig) -> tuple[np.ndarray, np.ndarray]:
    """Basis nodes spanning exactly the truncated ranges of the per-shot T and n_e draws."""
    temperatures = basis_nodes(
        config.temperature_K, config.truncate_sd * config.temperature_rel_sd, config.basis_temperatures, log_scale=False
    )
    densities = basis_nodes(
        config.electron_density_per_m3,
        config.truncate_sd * config.electron_density_log_sd,
        config.basis_densities,
        log_scale=True,
    )
    return temperatures, densities


def draw_plasma_states(config: CampaignConfig, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-shot (T_K, n_e, intensity factor): normal T, lognormal n_e (both truncated), lognormal intensity."""
    z_t = _truncated_normal(rng, n, config.truncate_sd)
    z_n = _truncated_normal(rng, n, config.truncate_sd)
    z_k = rng.standard_normal(n)
    temperature = config.temperature_K * (1.0 + config.temperature_rel_sd * z_t)
    density = config.electron_density_per_m3 * np.exp(config.electron_density_log_sd * z_n)
    factor = config.intensity_factor_median * np.exp(config.intensity_log_sd * z_k)
    return temperature, density, factor


def sample_basis(fractions: dict[str, float], config: CampaignConfig) -> EmissionBasis:
    """The (T, n_e) emission basis of one sample for ``config``'s plasma and spectrometer."""
    spectrometer = Spectrometer.from_config(config)
    temperatures, densities = plasma_nodes(config)
    with libskit_resolution(config.fine_samples_per_fwhm):
        return compute_emission_basis(
            fractions,
            temperatures,
            densities,
            config.plasma_length_m,
            spectrometer.true_wavelength_vac_nm,
            spectrometer.effective_sigma_nm,
            spectrometer.lorentzian_gamma_nm,
            config.continuum_scale,
        )


def direct_emission(fractions: dict[str, float], config: CampaignConfig, temperature_K: float,
                    electron_density_per_m3: float, fine_samples_per_fwhm: float | None = None) -> np.ndarray:
    """One direct libskit spectrum (no interpolation) on ``config``'s channels: the reference for accuracy checks."""
    spectrometer = Spectrometer.from_config(config)
    with libskit_resolution(fine_samples_per_fwhm or config.fine_samples_per_fwhm):
        return emission_spectrum(
            fractions,
            temperature_K,
            electron_density_per_m3,
            config.plasma_length_m,
            spectrometer.true_wavelength_vac_nm,
            spectrometer.effective_sigma_nm,
            spectrometer.lorentzian_gamma_nm,
            config.continuum_scale,
        )


def exposure(config: CampaignConfig) -> float:
    """Photo-electrons per libskit intensity unit such that the scenario-free matrix reference sample's
    strongest line at the nominal plasma state reaches ``reference_peak_fraction`` of the detector range."""
    base = base_config(config)
    reference = comp.reference_composition(base.matrix, base.analyte)
    total = sum(reference.values())
    fractions = {e: v / total for e, v in sorted(reference.items())}
    spectrometer = Spectrometer.from_config(base)
    signal = direct_emission(fractions, base, base.temperature_K, base.electron_density_per_m3)
    peak = float((signal * spectrometer.response()).max())
    if peak <= 0.0:
        raise ValueError(f"reference {base.matrix} sample emits nothing in {base.wavelength_start_nm}-{base.wavelength_stop_nm} nm")
    detector = Detector.from_config(base)
    return base.reference_peak_fraction * detector.saturation_counts / base.gain_counts_per_electron / peak


def simulate_sample(task: SampleTask) -> SampleResult:
    """All shots of one sample: basis (libskit), per-shot plasma draws, interpolation, detector noise."""
    started = time.process_time()
    config = task.config
    spectrometer = Spectrometer.from_config(config)
    detector = Detector.from_config(config)
    basis = sample_basis(task.fractions, config)
    temperature, density, factor = draw_plasma_states(
        config, _stream(task.seed, _STREAM_SHOTS, task.index, _SHOT_PLASMA), config.n_shots
    )
    emission = basis.evaluate(temperature, density)
    electrons = (factor * task.electrons_per_unit)[:, None] * spectrometer.response()[None, :] * emission
    counts, saturated = detector.read(
        electrons,
        _stream(task.seed, _STREAM_SHOTS, task.index, _SHOT_POISSON),
        _stream(task.seed, _STREAM_SHOTS, task.index, _SHOT_READ),
    )
    return SampleResult(counts, temperature, density, factor, saturated, time.process_time() - started)


def campaign_samples(config: CampaignConfig, seed: int, samples: pd.DataFrame | None = None) -> pd.DataFrame:
    """The certified sample table a campaign measures: given or drawn for the base matrix, then the
    scenario's matrix change (same ids and analyte contents) and interferent applied."""
    base = base_config(config)
    effective = apply_scenario(config)
    if samples is None:
        table = comp.draw_compositions(
            base.matrix, base.n_samples, base.analyte, base.analyte_range_wt, _stream(seed, _STREAM_COMPOSITIONS)
        )
    else:
        table = comp.check_samples(samples, base.analyte, set(known_elements()))
    if effective.matrix != base.matrix:
        table = comp.convert_matrix(table, effective.matrix, base.analyte, _stream(seed, _STREAM_MATRIX))
    if effective.interferent:
        check_elements(effective.interferent, "interferent")
        table = comp.add_interferent(table, effective.interferent)
    return table


def _pool_context() -> multiprocessing.context.BaseContext:
    """Workers never fork the caller (forking a threaded parent such as Prefect or Dask is unsafe). A
    forkserver that has imported this module (and libskit, ~2-3 s) once forks them cheaply; else spawn."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__])
        return context
    return multiprocessing.get_context("spawn")  # pragma: no cover - Windows


def _run(tasks: list[SampleTask], workers: int) -> list[SampleResult]:
    if workers <= 1 or len(tasks) <= 1:
        return [simulate_sample(t) for t in tasks]
    with ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=_pool_context()) as pool:
        return list(pool.map(simulate_sample, tasks, chunksize=1))


def simulate_campaign(
    config: CampaignConfig | None = None,
    seed: int = 0,
    samples: pd.DataFrame | None = None,
    workers: int | None = None,
) -> VirtualCampaign:
    """Simulate a campaign; pass ``samples`` (e.g. a nominal campaign's ``.samples``) to re-measure them
    under ``config``'s scenario. Same config + seed + samples -> same bytes for any ``workers``."""
    wall_start, cpu_start = time.perf_counter(), time.process_time()
    config = config or CampaignConfig()
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    effective = apply_scenario(config)
    table = campaign_samples(config, seed, samples)
    electrons_per_unit = exposure(config)
    tasks = []
    for i, row in table.iterrows():
        fractions = comp.mass_fractions(row)
        check_elements(fractions, f"sample {row['sample_id']!r}")
        tasks.append(SampleTask(int(i), str(row["sample_id"]), fractions, effective, electrons_per_unit, int(seed)))
    n_workers = default_workers() if workers is None else int(workers)
    results = _run(tasks, n_workers)
    campaign = _assemble(config, effective, seed, table, results, electrons_per_unit)
    main_cpu = time.process_time() - cpu_start
    worker_cpu = sum(r.cpu_seconds for r in results) if n_workers > 1 and len(tasks) > 1 else 0.0
    campaign.timings = {
        "wall_seconds": time.perf_counter() - wall_start,
        "cpu_seconds": main_cpu + worker_cpu,  # this process + the sample work done in worker processes
        "sample_cpu_seconds": sum(r.cpu_seconds for r in results),
        "workers": float(min(n_workers, len(tasks))),
    }
    return campaign


def _assemble(config: CampaignConfig, effective: CampaignConfig, seed: int, table: pd.DataFrame,
              results: list[SampleResult], electrons_per_unit: float) -> VirtualCampaign:
    spectrometer = Spectrometer.from_config(effective)
    detector = Detector.from_config(effective)
    n_shots = effective.n_shots
    sample_ids = np.repeat(table["sample_id"].astype(str).to_numpy(), n_shots)
    shots = np.tile(np.arange(n_shots, dtype=np.int64), len(table))
    analyte = effective.analyte
    name = config.name if config.scenario == "nominal" else f"{config.name}-{config.scenario}-{config.severity}"
    attrs = {
        "name": name,
        "source": "libs_pipeline.physics.simulate_campaign",
        "instrument": f"{spectrometer.describe()}; {detector.describe()}",
        "matrix": effective.matrix,
        "analyte": analyte,
        "scenario": config.scenario,
        "severity": config.severity,
        "seed": int(seed),
        "saturation_counts": float(detector.saturation_counts),
        "electrons_per_unit": float(electrons_per_unit),
        "libskit_version": str(libskit.__version__),
        "campaign_config": config.model_dump_json(),
        "effective_config": effective.model_dump_json(),
    }
    ds = make_spectra_dataset(
        np.concatenate([r.counts for r in results]),
        spectrometer.wavelength_nm,
        sample_ids,
        shots,
        labels={analyte: (np.repeat(table[analyte].to_numpy(dtype=float), n_shots), "wt%")},
        attrs=attrs,
    )
    truth = {
        "T_K": (np.concatenate([r.temperature_K for r in results]), "K", "plasma temperature"),
        "n_e_per_m3": (np.concatenate([r.electron_density_per_m3 for r in results]), "m^-3", "electron density"),
        "intensity_factor": (np.concatenate([r.intensity_factor for r in results]), "1", "ablated mass x collection"),
    }
    for var, (values, units, what) in truth.items():
        ds[var] = ("spectrum", values.astype(np.float64), {"role": GROUND_TRUTH_ROLE, "units": units, "long_name": what})
    n_saturated = np.concatenate([r.n_saturated for r in results])
    ds["n_saturated_channels"] = ("spectrum", n_saturated, {"role": "diagnostic", "units": "channels"})
    shots_table = pd.DataFrame(
        {
            "spectrum": ds["spectrum"].values,
            "sample_id": sample_ids,
            "shot": shots,
            "T_K": ds["T_K"].values,
            "n_e_per_m3": ds["n_e_per_m3"].values,
            "intensity_factor": ds["intensity_factor"].values,
            "n_saturated_channels": n_saturated,
        }
    )
    return VirtualCampaign(ds, table, shots_table, config, effective, int(seed))


_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def _file_names(sample_ids: list[str]) -> list[str]:
    names, used = [], set()
    for sid in sample_ids:
        stem = _SAFE_NAME.sub("_", sid).strip("._") or "sample"
        name, k = f"{stem}.csv", 1
        while name.lower() in used:
            name, k = f"{stem}_{k}.csv", k + 1
        used.add(name.lower())
        names.append(name)
    return names


def shot_columns_text(wavelength: np.ndarray, counts: np.ndarray) -> str:
    """Format (a) text: wavelength with 6 decimals (the grid's definition), counts with 9 significant digits
    (float32 round-trips exactly)."""
    buffer = io.StringIO()
    fmt = [f"%.{GRID_DECIMALS}f"] + ["%.9g"] * counts.shape[0]
    write_shot_columns_file(buffer, wavelength, counts, fmt=fmt)
    return buffer.getvalue()


def write_campaign_files(campaign: VirtualCampaign, out_dir: str | Path) -> Path:
    """Write one format-(a) file per sample, ground-truth tables, campaign.json and (last) manifest.yaml;
    every file atomically. Returns the manifest path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ds = campaign.spectra
    analyte = str(ds.attrs["analyte"])
    wavelength = ds["wavelength"].values
    intensity = ds["intensity"].values
    spectrum_sample = ds["sample_id"].values
    sample_ids = campaign.samples["sample_id"].astype(str).tolist()
    entries = []
    for sid, fname in zip(sample_ids, _file_names(sample_ids)):
        rows = np.flatnonzero(spectrum_sample == sid)
        atomic_write_text(out / "spectra" / fname, shot_columns_text(wavelength, intensity[rows]))
        row = campaign.samples.loc[campaign.samples["sample_id"] == sid].iloc[0]
        entries.append(
            {
                "sample_id": sid,
                "file": f"spectra/{fname}",
                "labels": {analyte: float(row[analyte])},
                "units": "wt%",
                "matrix": str(row["matrix"]),
            }
        )
    atomic_write_text(out / "ground_truth_shots.csv", campaign.shots.to_csv(index=False))
    atomic_write_text(out / "ground_truth_samples.csv", campaign.samples.to_csv(index=False))
    info = {
        "name": campaign.name,
        "seed": campaign.seed,
        "scenario": campaign.config.scenario,
        "severity": campaign.config.severity,
        "saturation_counts": ds.attrs["saturation_counts"],
        "electrons_per_unit": ds.attrs["electrons_per_unit"],
        "libskit_version": ds.attrs["libskit_version"],
        "config": campaign.config.model_dump(mode="json"),
        "effective_config": campaign.effective_config.model_dump(mode="json"),
    }
    atomic_write_text(out / "campaign.json", json.dumps(info, indent=2, sort_keys=True) + "\n")
    manifest = {
        "name": campaign.name,
        "matrix": str(ds.attrs["matrix"]),
        "reader": "shot_columns",
        "samples": entries,
    }
    manifest_path = out / "manifest.yaml"
    atomic_write_text(manifest_path, yaml.safe_dump(manifest, sort_keys=False))
    return manifest_path
