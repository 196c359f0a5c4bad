"""Pandera schemas: the per-sample table (pandera.pandas) and the spectra dataset (pandera.xarray).

Validation is lazy (all failures collected) and failures come back as plain records with positions, so that
ingest can name the file, line and column of each bad value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pandera.xarray as pax
import xarray as xr
from pandera.config import ValidationDepth, config_context
from pandera.errors import SchemaError, SchemaErrors

from libs_pipeline.spectra.dataset import CONCENTRATION_UNITS, LABEL_ROLE
from libs_pipeline.spectra.findings import number, quoted

SAFE_ID_PATTERN = r"^(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$"
"""Sample ids and dataset names: no slashes, no '..', no leading dot or dash (safe as a path component)."""
LABEL_NAME_PATTERN = r"^[A-Z][A-Za-z0-9]{0,15}$"
"""Label (analyte) names: element or oxide symbols such as Na, Cu, Fe2O3; never clash with layout names."""
UNIT_MAX = {"ppm": 1e6, "wt%": 100.0}
WAVELENGTH_RANGE_NM = (100.0, 3000.0)
"""Plausible LIBS wavelengths in nm; values outside usually mean the file is in Angstrom or micrometre."""
LABEL_COLUMN = re.compile(r"^(?P<element>[A-Z][A-Za-z0-9]{0,15})_(?P<unit>.+)$")


def is_safe_id(value: str) -> bool:
    return isinstance(value, str) and re.fullmatch(SAFE_ID_PATTERN, value) is not None


def label_column(element: str, unit: str) -> str:
    """Column name of a label in the sample table, e.g. ('Na', 'ppm') -> 'Na_ppm'."""
    return f"{element}_{unit}"


def label_columns(df: pd.DataFrame) -> dict[str, tuple[str, str]]:
    """Sample-table label columns -> (element, unit) for the known units."""
    out = {}
    for col in df.columns:
        m = LABEL_COLUMN.match(str(col))
        if m and m["unit"] in CONCENTRATION_UNITS:
            out[str(col)] = (m["element"], m["unit"])
    return out


def _label_column_specs() -> dict[str, pa.Column]:
    return {
        rf"^[A-Z][A-Za-z0-9]{{0,15}}_{re.escape(unit)}$": pa.Column(
            float,
            pa.Check.in_range(0.0, UNIT_MAX[unit], error=f"concentration must be within 0..{UNIT_MAX[unit]:g} {unit}"),
            nullable=True,
            regex=True,
            required=False,
        )
        for unit in CONCENTRATION_UNITS
    }


def _has_label(df: pd.DataFrame) -> pd.Series:
    cols = list(label_columns(df))
    if not cols:
        return pd.Series(False, index=df.index)
    return df[cols].notna().any(axis=1)


def manifest_entries_schema(require_label: bool = False) -> pa.DataFrameSchema:
    """One row per manifest entry (sample x file): safe ids, a file, labels in range.

    Labels may be omitted (an unknown sample, to be predicted); ``require_label`` makes at least one mandatory.
    """
    return pa.DataFrameSchema(
        {
            "sample_id": pa.Column(str, pa.Check.str_matches(SAFE_ID_PATTERN, error="unsafe sample id"), nullable=False),
            "file": pa.Column(str, pa.Check.str_length(min_value=1), nullable=False),
            "matrix": pa.Column(str, nullable=True, required=False),
            **_label_column_specs(),
        },
        checks=[pa.Check(_has_label, name="has_label", error="sample has no certified label")] if require_label else [],
        unique=["sample_id", "file"],
        report_duplicates="all",
        name="campaign manifest",
    )


def sample_table_schema() -> pa.DataFrameSchema:
    """The stored per-sample table: unique sample ids, files, optional matrix, spectra counts, labels + units.

    ``certified`` (bool) is False for unknown samples (no label given: NaN in every label column).
    """
    return pa.DataFrameSchema(
        {
            "sample_id": pa.Column(
                str, pa.Check.str_matches(SAFE_ID_PATTERN), unique=True, report_duplicates="all", nullable=False
            ),
            "file": pa.Column(str, nullable=False),
            "matrix": pa.Column(str, nullable=True, required=False),
            "n_spectra": pa.Column(int, pa.Check.ge(0), required=False),
            "certified": pa.Column(bool, required=False),
            **_label_column_specs(),
        },
        name="sample table",
    )


@dataclass(frozen=True)
class TableFailure:
    """A failed rule on the sample/manifest table; ``index`` is the row label (None = whole table)."""

    index: object | None
    column: str | None
    rule: str
    reason: str


_TABLE_RULES = {
    "multiple_fields_uniqueness": "duplicate_entry",
    "field_uniqueness": "duplicate_sample",
    "str_matches": "unsafe_sample_id",
    "in_range": "label_range",
    "has_label": "missing_label",
    "column_in_dataframe": "missing_column",
}


def _table_reason(rule: str, column: str | None, value: object, check: object) -> str:
    if rule == "duplicate_entry":
        return "the same sample_id and file are listed more than once"
    if rule == "duplicate_sample":
        return f"sample id {quoted(value)} appears more than once"
    if rule == "unsafe_sample_id":
        return f"sample id {quoted(value)} is not a safe id (letters, digits, . _ + -; no '/', no '..')"
    if rule == "label_range":
        return f"{column} = {value}: {getattr(check, 'error', check)}"
    if rule == "missing_label":
        return "no certified concentration given for this sample"
    return f"{column or 'table'}: {getattr(check, 'error', None) or check} failed for {quoted(value)}"


def validate_table(df: pd.DataFrame, schema: pa.DataFrameSchema) -> list[TableFailure]:
    """Lazy pandera validation of a table -> one TableFailure per failing (row, rule)."""
    try:
        schema.validate(df, lazy=True)
    except SchemaErrors as exc:
        out: list[TableFailure] = []
        seen: set[tuple] = set()
        for err in exc.schema_errors:
            check = err.check
            name = getattr(check, "name", None) or str(check)
            rule = _TABLE_RULES.get(name, name)
            column = getattr(err.schema, "name", None) if isinstance(err.schema, pa.Column) else None
            cases = err.failure_cases
            records = cases.to_dict("records") if isinstance(cases, pd.DataFrame) else [{"index": None, "failure_case": cases}]
            for rec in records:
                index = rec.get("index")
                if isinstance(index, float) and np.isnan(index):
                    index = None
                key = (index, rule, column)
                if key in seen:
                    continue
                seen.add(key)
                value = rec.get("failure_case")
                out.append(TableFailure(index, column, rule, _table_reason(rule, column, value, check)))
        return out
    return []


# --- spectra dataset -------------------------------------------------------------------------------------


def _strictly_increasing(da: xr.DataArray) -> xr.DataArray:
    v = np.asarray(da.values, dtype=np.float64)
    ok = np.ones(v.shape, dtype=bool)
    ok[1:] = ~(np.diff(v) < 0)
    return xr.DataArray(ok, dims=da.dims, coords=da.coords)


def _no_duplicate_neighbour(da: xr.DataArray) -> xr.DataArray:
    v = np.asarray(da.values, dtype=np.float64)
    ok = np.ones(v.shape, dtype=bool)
    ok[1:] = np.diff(v) != 0
    return xr.DataArray(ok, dims=da.dims, coords=da.coords)


def _unique_values(da: xr.DataArray) -> xr.DataArray:
    v = np.asarray(da.values)
    _, first = np.unique(v, return_index=True)
    ok = np.zeros(v.shape, dtype=bool)
    ok[first] = True
    return xr.DataArray(ok, dims=da.dims, coords=da.coords)


def _finite(da: xr.DataArray) -> xr.DataArray:
    return xr.DataArray(np.isfinite(np.asarray(da.values)), dims=da.dims, coords=da.coords)


def _label_in_unit_range(da: xr.DataArray) -> xr.DataArray:
    top = UNIT_MAX.get(str(da.attrs.get("units")), np.inf)
    v = np.asarray(da.values, dtype=np.float64)
    return xr.DataArray(np.isnan(v) | ((v >= 0) & (v <= top)), dims=da.dims, coords=da.coords)


SPECTRA_RULES = {
    "finite": "value is NaN or infinite",
    "dark_noise_tolerance": "intensity is more negative than the dark-noise tolerance",
    "non_monotonic_wavelength": "wavelength decreases (must be strictly increasing)",
    "duplicate_wavelength": "wavelength repeats the previous channel (must be strictly increasing)",
    "wavelength_range_nm": f"wavelength outside {WAVELENGTH_RANGE_NM[0]:g}..{WAVELENGTH_RANGE_NM[1]:g} nm",
    "unique_spectrum_id": "spectrum id is not unique",
    "label_range": "label outside 0..100 wt% / 0..1e6 ppm or negative",
}


def spectra_schema(dark_tolerance: float = 100.0) -> pax.DatasetSchema:
    """The canonical spectra dataset (DESIGN.md): dims, dtypes, finite intensities, increasing nm grid, labels."""
    return pax.DatasetSchema(
        data_vars={
            "intensity": pax.DataVar(
                dtype=np.float32,
                dims=("spectrum", "wavelength"),
                nullable=True,  # NaN is reported by the `finite` check with its position
                checks=[
                    pax.Check(_finite, name="finite", ignore_na=False),
                    pax.Check.ge(-float(dark_tolerance), name="dark_noise_tolerance", ignore_na=True),
                ],
            ),
            "sample_id": pax.DataVar(dims=("spectrum",), dtype=str),
            "shot": pax.DataVar(dtype=np.int64, dims=("spectrum",)),
            LABEL_NAME_PATTERN: pax.DataVar(
                regex=True,
                dtype=np.float64,
                dims=("spectrum",),
                nullable=True,
                attrs={"role": LABEL_ROLE, "units": lambda u: u in CONCENTRATION_UNITS},
                checks=[pax.Check(_label_in_unit_range, name="label_range", ignore_na=False)],
            ),
        },
        coords={
            "wavelength": pax.Coordinate(
                dtype=np.float64,
                dimension=True,
                nullable=True,
                checks=[
                    pax.Check(_finite, name="finite", ignore_na=False),
                    pax.Check(_strictly_increasing, name="non_monotonic_wavelength"),
                    pax.Check(_no_duplicate_neighbour, name="duplicate_wavelength"),
                    pax.Check.in_range(*WAVELENGTH_RANGE_NM, name="wavelength_range_nm"),
                ],
            ),
            "spectrum": pax.Coordinate(
                dtype=np.int64, dimension=True, checks=[pax.Check(_unique_values, name="unique_spectrum_id")]
            ),
        },
        dims=("spectrum", "wavelength"),
        ordered_dims=False,
        name="spectra",
    )


@dataclass(frozen=True)
class SpectraFailure:
    """A failed rule on the spectra dataset; ``position`` = integer indices along ``dims`` (None = structural)."""

    variable: str
    rule: str
    reason: str
    dims: tuple[str, ...] = ()
    position: tuple[int, ...] | None = None
    value: float | None = None
    count: int = 1  # > 1: a summary of that many further failures; ``position`` is the last one


def _failures_of(err: SchemaError, dark_tolerance: float, limit: int) -> list[SpectraFailure]:
    variable = str(getattr(err.schema, "name", None) or "dataset")
    check = err.check
    rule = getattr(check, "name", None) or str(check)
    mask = err.check_output
    if isinstance(mask, xr.DataArray) and mask.dtype == bool and mask.ndim >= 1:
        bad = np.argwhere(~np.asarray(mask.values))
        data = err.failure_cases if isinstance(err.failure_cases, xr.DataArray) else None
        out = []
        for pos in bad[:limit]:
            value = float(np.asarray(data.values)[tuple(pos)]) if data is not None else None
            reason = SPECTRA_RULES.get(rule, f"check {rule} failed")
            if rule == "dark_noise_tolerance":
                reason = f"intensity {value:g} is below -{dark_tolerance:g} counts (dark-noise tolerance)"
            elif value is not None:
                reason = f"{reason}: {number(value)}"
            out.append(SpectraFailure(variable, rule, reason, tuple(mask.dims), tuple(int(i) for i in pos), value))
        if len(bad) > limit:
            out.append(SpectraFailure(variable, rule, f"{len(bad) - limit} more failures of rule {rule}", tuple(mask.dims),
                                      tuple(int(i) for i in bad[-1]), None, count=len(bad) - limit))
        return out
    return [SpectraFailure(variable, str(err.reason_code.name).lower() if err.reason_code else "schema", str(err))]


def validate_spectra(ds: xr.Dataset, dark_tolerance: float = 100.0, limit: int = 1000) -> list[SpectraFailure]:
    """Lazy pandera.xarray validation (data checks forced even for dask-backed data) -> failures with positions."""
    with config_context(validation_depth=ValidationDepth.SCHEMA_AND_DATA):
        try:
            spectra_schema(dark_tolerance).validate(ds, lazy=True)
        except SchemaErrors as exc:
            out: list[SpectraFailure] = []
            for err in exc.schema_errors:
                out.extend(_failures_of(err, dark_tolerance, limit))
            return out
        except SchemaError as err:
            return _failures_of(err, dark_tolerance, limit)
    return []


def saturated_channels(intensity: np.ndarray, level: float, margin: float = 0.01) -> np.ndarray:
    """Per spectrum: number of channels at or above ``level * (1 - margin)`` (near detector saturation)."""
    threshold = float(level) * (1.0 - float(margin))
    return np.count_nonzero(np.asarray(intensity) >= threshold, axis=-1)
