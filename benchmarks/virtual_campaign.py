"""Virtual LIBS campaign: wall time of simulate_campaign and accuracy of the per-shot (T, n_e) interpolation.

Accuracy: for low-, mid- and high-Cu samples, the interpolated noise-free spectrum at off-grid plasma
states is compared with a direct libskit ``calculate_spectrum`` call at libskit's default resolution
(5 fine samples per FWHM) for the same state; the relative error is taken at the peak channels of the
10 strongest lines (local maxima of the direct spectrum). Prints one JSON object.

    .venv/bin/python benchmarks/virtual_campaign.py [--samples 30 --shots 20 --channels 4096 --workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np
from scipy.signal import find_peaks

from libs_pipeline.config import CampaignConfig
from libs_pipeline.physics import compositions as comp
from libs_pipeline.physics.campaign import (
    direct_emission,
    draw_plasma_states,
    sample_basis,
    simulate_campaign,
    write_campaign_files,
)

LIBSKIT_DEFAULT_FINE_SAMPLES = 5.0


def strongest_peak_channels(spectrum: np.ndarray, n: int = 10) -> np.ndarray:
    peaks, _ = find_peaks(spectrum)
    return peaks[np.argsort(spectrum[peaks])[::-1][:n]]


def peak_errors(campaign, states: list[tuple[float, float]]) -> dict:
    """Max relative error at the 10 strongest peaks, per reference resolution, over samples x states."""
    config = campaign.effective_config
    table = campaign.samples.sort_values(config.analyte)
    picks = table.iloc[[0, len(table) // 2, len(table) - 1]] if len(table) >= 3 else table
    worst_default, worst_same, per_state = 0.0, 0.0, []
    for _, row in picks.iterrows():
        fractions = comp.mass_fractions(row)
        basis = sample_basis(fractions, config)
        for t, n in states:
            interpolated = basis.evaluate([t], [n])[0]
            direct = direct_emission(fractions, config, t, n, fine_samples_per_fwhm=LIBSKIT_DEFAULT_FINE_SAMPLES)
            same = direct_emission(fractions, config, t, n)
            peaks = strongest_peak_channels(direct)
            err_default = float(np.max(np.abs(interpolated[peaks] / direct[peaks] - 1.0)))
            err_same = float(np.max(np.abs(interpolated[peaks] / same[peaks] - 1.0)))
            worst_default, worst_same = max(worst_default, err_default), max(worst_same, err_same)
            per_state.append({"sample_id": row["sample_id"], "T_K": round(t, 1), "n_e_per_m3": float(f"{n:.4g}"),
                              "rel_error": float(f"{err_default:.3g}")})
    return {"worst_vs_default_resolution": worst_default, "worst_vs_same_resolution": worst_same, "states": per_state}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--shots", type=int, default=20)
    parser.add_argument("--channels", type=int, default=4096)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--random-states", type=int, default=4, help="random in-range plasma states per sample")
    args = parser.parse_args()

    config = CampaignConfig(n_samples=args.samples, n_shots=args.shots, n_channels=args.channels)
    load_before = os.getloadavg()[0]  # other processes competing for the CPUs make `seconds` longer
    start = time.perf_counter()
    campaign = simulate_campaign(config, seed=args.seed, workers=args.workers)
    seconds = time.perf_counter() - start

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        write_campaign_files(campaign, tmp)
        write_seconds = time.perf_counter() - start

    # one fixed off-grid state (between basis nodes in both T and n_e) plus random in-range draws
    fixed = (config.temperature_K * 1.037, config.electron_density_per_m3 * 1.13)
    t, n, _ = draw_plasma_states(config, np.random.default_rng(12345), args.random_states)
    fixed_errors = peak_errors(campaign, [fixed])
    random_errors = peak_errors(campaign, list(zip(t.tolist(), n.tolist())))

    ds = campaign.spectra
    sat = float(ds.attrs["saturation_counts"])
    peak_fraction = ds["intensity"].values.max(axis=1) / sat
    result = {
        "n_samples": args.samples,
        "n_shots": args.shots,
        "n_channels": int(ds.sizes["wavelength"]),
        "wavelength_range_nm": [float(ds["wavelength"][0]), float(ds["wavelength"][-1])],
        "workers": args.workers,
        "cpus": os.cpu_count(),
        "seconds": round(seconds, 2),
        "cpu_seconds": round(campaign.timings["cpu_seconds"], 2),
        "sample_cpu_seconds": round(campaign.timings["sample_cpu_seconds"], 2),
        "load_average_1min_before": round(load_before, 2),
        "write_files_seconds": round(write_seconds, 2),
        "libskit_spectrum_calls": args.samples * config.basis_temperatures * config.basis_densities + 1,
        "basis_grid": [config.basis_temperatures, config.basis_densities],
        "off_grid_state": {"T_K": fixed[0], "n_e_per_m3": fixed[1]},
        "max_rel_error_strongest_lines": float(f"{fixed_errors['worst_vs_default_resolution']:.3g}"),
        "max_rel_error_strongest_lines_same_resolution": float(f"{fixed_errors['worst_vs_same_resolution']:.3g}"),
        "max_rel_error_strongest_lines_random_states": float(f"{random_errors['worst_vs_default_resolution']:.3g}"),
        "random_states_checked": len(random_errors["states"]),
        "peak_fraction_of_saturation_median": float(f"{np.median(peak_fraction):.3g}"),
        "peak_fraction_of_saturation_max": float(f"{peak_fraction.max():.3g}"),
        "saturated_shot_fraction": float(np.mean(ds["n_saturated_channels"].values > 0)),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
