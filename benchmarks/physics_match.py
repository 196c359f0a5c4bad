"""Physics-matched augmentation on the real OREAS campaign: fit cost, sim-to-real gap, simulation cost.

Fits the virtual instrument to the OREAS Na campaign, measures the sim-to-real gap per measured sample
(high-passed correlation, Na I 817.8-820.2 nm area ratio, slope of area vs certified Na), simulates
``--samples`` virtual samples (timed, libskit calls counted), writes them as zarr and reopens them with
``open_spectra``, and measures how non-linear libskit's 1 mm plasma is in composition (why no linear mixing).
Prints one JSON object.

    .venv/bin/python benchmarks/physics_match.py [--samples 1000 --shots 4 --workers 2 --data ../shared/data/oreas_na]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from libs_pipeline.config import IngestOptions
from libs_pipeline.physics.instrument_fit import LibskitCounter, fit_instrument
from libs_pipeline.physics.matched_campaign import (
    line_area,
    sim_to_real_gap,
    simulate_matched_campaign,
    write_matched_zarr,
)
from libs_pipeline.spectra.campaign_loading import load_campaign
from libs_pipeline.spectra.store import open_spectra


def self_absorption(fit) -> dict[str, float]:
    """Max |I(1 mm) - 1000 I(1 um)| / max I(1 mm) and the same in L2 norm, rock reference at the mean fitted state."""
    t, n = float(np.mean(fit.temperatures_K)), float(np.exp(np.mean(np.log(fit.densities_per_m3))))
    fractions = fit.fractions(float(np.median(fit.sample_labels)))
    thick = LibskitCounter(fit.wavelength, fit.gaussian_sigma_nm, fit.plasma_length_m).lines(fractions, t, n)
    thin = LibskitCounter(fit.wavelength, fit.gaussian_sigma_nm, fit.plasma_length_m / 1000.0).lines(fractions, t, n) * 1000.0
    return {
        "max_abs_diff_over_peak": float(np.abs(thin - thick).max() / thick.max()),
        "l2_rel_diff": float(np.linalg.norm(thin - thick) / np.linalg.norm(thick)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "oreas_na"))
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--shots", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    ds = load_campaign(Path(args.data) / "Na_ppm_from_tutorial.csv", options=IngestOptions(saturation_level=38000))
    ds = ds.load()
    started = time.perf_counter()
    fit = fit_instrument(ds, "Na", saturation_counts=38000.0)
    fit_seconds = time.perf_counter() - started
    started = time.perf_counter()
    gap = sim_to_real_gap(fit, ds)
    gap_seconds = time.perf_counter() - started

    started = time.perf_counter()
    virtual = simulate_matched_campaign(fit, n_samples=args.samples, n_shots=args.shots, seed=args.seed, workers=args.workers)
    sim_seconds = time.perf_counter() - started
    wavelength = virtual["wavelength"].values
    first = virtual.isel(spectrum=np.flatnonzero(virtual["shot"].values == 0))
    areas = np.array([line_area(wavelength, row) for row in first["intensity"].values])
    na = first["Na"].values
    matrix_vars = [v for v in virtual.data_vars if v.endswith("_wt")]
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        path = write_matched_zarr(virtual, Path(tmp) / "matched.zarr")
        write_seconds = time.perf_counter() - started
        reopened = open_spectra(path)
        reopen_ok = bool(np.array_equal(reopened["intensity"].values, virtual["intensity"].values)
                         and reopened["Na"].attrs.get("units") == "ppm")
        zarr_mb = sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) / 1e6

    result = {
        "data": str(args.data),
        "fit": {
            "seconds": fit_seconds,
            "libskit_calls": fit.libskit_calls,
            "libskit_seconds": fit.libskit_seconds,
            "gaussian_sigma_nm": fit.gaussian_sigma_nm,
            "line_width_sigmas_nm": [f["sigma_nm"] for f in fit.line_fits],
            "temperatures_K": dict(zip(fit.sample_ids, fit.temperatures_K)),
            "densities_per_m3": dict(zip(fit.sample_ids, fit.densities_per_m3)),
            "match_correlations": dict(zip(fit.sample_ids, fit.match_correlations)),
            "background_fractions": dict(zip(fit.sample_ids, fit.sample_background_fractions)),
            "gain_counts_per_electron": fit.gain_counts_per_electron,
            "read_noise_counts": fit.read_noise_counts,
            "shot_log_sd": fit.shot_log_sd,
        },
        "gap": {**gap, "seconds": gap_seconds},
        "simulation": {
            "n_samples": args.samples,
            "n_shots": args.shots,
            "workers": int(virtual.attrs["workers"]),
            "wall_seconds": sim_seconds,
            "libskit_calls": int(virtual.attrs["libskit_calls"]),
            "libskit_seconds_summed_over_workers": float(virtual.attrs["libskit_seconds"]),
            "seconds_per_sample_wall": sim_seconds / args.samples,
            "analyte_range_ppm": list(virtual.attrs["analyte_range"]),
            "na_slope_area_per_ppm_virtual": float(np.polyfit(na, areas, 1)[0]),
            "max_abs_corr_na_vs_matrix": float(max(abs(np.corrcoef(na, first[v].values)[0, 1]) for v in matrix_vars)),
            "saturated_fraction_of_channels": float((virtual["intensity"].values >= fit.saturation_counts).mean()),
            "zarr_write_seconds": write_seconds,
            "zarr_mb": zarr_mb,
            "open_spectra_roundtrip_ok": reopen_ok,
        },
        "self_absorption_thin_vs_1mm": self_absorption(fit),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
