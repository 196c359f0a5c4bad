"""Synthetic spectra drawn in memory, for small campaigns where a store and a Dask cluster would be overhead.

Same noise model, plan and per-chunk seeds as the stored path (``synthetic_store.chunk_values``), so the
values equal those of a store written with the same (model, per_sample, seed, chunk_size).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import xarray as xr

from libs_pipeline.synth.noise_model import NoiseModel, fit_noise_model
from libs_pipeline.synth.plan import SynthesisPlan
from libs_pipeline.synth.synthetic_store import chunk_values

IN_MEMORY_CHUNK = 1024


def draw_synthetic(model: NoiseModel, per_sample: int, seed: int = 0, chunk_size: int = IN_MEMORY_CHUNK) -> xr.Dataset:
    """``per_sample`` synthetic spectra of every sample of ``model`` as one dataset (``synthetic`` = True)."""
    plan = SynthesisPlan(tuple(model.sample_ids), int(per_sample), int(chunk_size), int(seed))
    parts = [chunk_values(model, plan, i) for i in range(plan.n_chunks)]
    values = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    spectrum = values.pop("spectrum")
    intensity = values.pop("intensity")
    data_vars = {"intensity": (("spectrum", "wavelength"), intensity)}
    data_vars.update({k: ("spectrum", v) for k, v in values.items()})
    ds = xr.Dataset(data_vars, coords={"spectrum": spectrum, "wavelength": np.asarray(model.wavelength)})
    for label, units in model.label_units.items():
        ds[label].attrs["units"] = units
    ds["wavelength"].attrs["units"] = "nm"
    return ds


def synthesize_in_memory(
    ds: xr.Dataset,
    per_sample: int,
    seed: int = 0,
    *,
    saturation: float | Literal["auto"] | None = "auto",
    max_shape_modes: int | None = None,
) -> xr.Dataset:
    """Fit the noise model on the measured spectra ``ds`` (its samples only) and draw ``per_sample`` each."""
    model = fit_noise_model(ds, saturation=saturation, max_shape_modes=max_shape_modes)
    return draw_synthetic(model, per_sample, seed)


__all__ = ["draw_synthetic", "synthesize_in_memory"]
