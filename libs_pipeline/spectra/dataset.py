"""The one spectra data model: an xarray.Dataset with dims (spectrum, wavelength).

See DESIGN.md "The spectra dataset". Label variables (certified concentrations) are
(spectrum,) float variables with attrs ``role="label"`` and ``units``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import xarray as xr

SCHEMA_VERSION = "1"
LABEL_ROLE = "label"
CONCENTRATION_UNITS = ("wt%", "ppm")


def make_spectra_dataset(
    intensity: np.ndarray,
    wavelength: np.ndarray,
    sample_id: Sequence[str],
    shot: Sequence[int],
    labels: Mapping[str, tuple[Sequence[float], str]] | None = None,
    spectrum: Sequence[int] | None = None,
    attrs: Mapping[str, object] | None = None,
) -> xr.Dataset:
    """Build a dataset in the canonical layout; ``labels`` maps analyte -> (values, units)."""
    intensity = np.asarray(intensity, dtype=np.float32)
    wavelength = np.asarray(wavelength, dtype=np.float64)
    n = intensity.shape[0]
    if intensity.ndim != 2 or intensity.shape[1] != wavelength.shape[0]:
        raise ValueError(
            f"intensity shape {intensity.shape} does not match wavelength length {wavelength.shape[0]}"
        )
    spectrum_ids = np.arange(n, dtype=np.int64) if spectrum is None else np.asarray(spectrum, dtype=np.int64)
    data_vars: dict[str, object] = {
        "intensity": (("spectrum", "wavelength"), intensity),
        "sample_id": ("spectrum", np.asarray(sample_id, dtype=str)),
        "shot": ("spectrum", np.asarray(shot, dtype=np.int64)),
    }
    ds = xr.Dataset(
        data_vars,
        coords={"spectrum": spectrum_ids, "wavelength": ("wavelength", wavelength, {"units": "nm"})},
        attrs={"schema_version": SCHEMA_VERSION, **(attrs or {})},
    )
    ds["intensity"].attrs["units"] = "counts"
    for name, (values, units) in (labels or {}).items():
        if units not in CONCENTRATION_UNITS:
            raise ValueError(f"label {name!r}: unit {units!r} is not one of {CONCENTRATION_UNITS}")
        ds[name] = ("spectrum", np.asarray(values, dtype=np.float64), {"units": units, "role": LABEL_ROLE})
    return ds


def label_names(ds: xr.Dataset) -> list[str]:
    """Names of the per-analyte label variables (attrs role == 'label')."""
    return [str(k) for k, v in ds.data_vars.items() if v.attrs.get("role") == LABEL_ROLE]


def resolve_analyte(ds: xr.Dataset, analyte: str | None, where: str) -> tuple[str, str]:
    """The analyte label (default: the first label variable) and its units; ``where`` names the data in errors."""
    labels = label_names(ds)
    if analyte is None:
        if not labels:
            raise ValueError(f"{where}: no label variable (attrs role='label') to take the analyte from")
        analyte = labels[0]
    if analyte not in ds:
        raise ValueError(f"{where}: no label variable {analyte!r} (labels: {labels})")
    return analyte, str(ds[analyte].attrs.get("units", ""))


def sample_ids(ds: xr.Dataset) -> list[str]:
    """Unique sample ids in order of first appearance."""
    values = ds["sample_id"].values
    _, first = np.unique(values, return_index=True)
    return [str(values[i]) for i in sorted(first)]


def spectrum_sample_ids(ds: xr.Dataset) -> np.ndarray:
    """The sample id of every spectrum (one per ``spectrum`` row), as a str array."""
    return np.asarray(ds["sample_id"].values).astype(str)


def select_samples(ds: xr.Dataset, samples: Sequence[str]) -> xr.Dataset:
    """All spectra of the given samples (splits are always by sample)."""
    mask = np.isin(ds["sample_id"].values, np.asarray(list(samples), dtype=str))
    return ds.isel(spectrum=np.flatnonzero(mask))


def sample_labels(ds: xr.Dataset, analyte: str) -> dict[str, float]:
    """Certified label of each sample (one value per sample)."""
    values = ds[analyte].values
    sids = ds["sample_id"].values
    return {s: float(values[np.flatnonzero(sids == s)[0]]) for s in sample_ids(ds)}
