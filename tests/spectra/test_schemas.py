"""Pandera schemas: spectra dataset (pandera.xarray) and sample/manifest tables (pandera.pandas)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from libs_pipeline.spectra.schemas import (
    is_safe_id,
    manifest_entries_schema,
    sample_table_schema,
    saturated_channels,
    validate_spectra,
    validate_table,
)
from libs_pipeline.testing import toy_campaign


@pytest.fixture
def small():
    return toy_campaign(n_samples=2, n_shots=3, n_channels=12)


def test_canonical_toy_dataset_is_valid(small):
    assert validate_spectra(small) == []


def test_value_failures_come_with_positions(small):
    ds = small.copy(deep=True)
    ds["intensity"][1, 2] = np.nan
    ds["intensity"][4, 5] = np.inf
    ds["intensity"][2, 3] = -150.0
    ds["intensity"][3, 3] = -50.0  # within the tolerance of 100 counts
    failures = {(f.variable, f.rule, f.position) for f in validate_spectra(ds, dark_tolerance=100.0)}
    assert failures == {
        ("intensity", "finite", (1, 2)),
        ("intensity", "finite", (4, 5)),
        ("intensity", "dark_noise_tolerance", (2, 3)),
    }
    strict = {(f.rule, f.position) for f in validate_spectra(ds, dark_tolerance=10.0)}
    assert ("dark_noise_tolerance", (3, 3)) in strict


def test_wavelength_rules(small):
    wl = small["wavelength"].values.copy()
    wl[4] = wl[3]  # duplicate
    wl[7] = wl[2]  # decreasing
    ds = small.assign_coords(wavelength=("wavelength", wl, {"units": "nm"}))
    got = {(f.rule, f.position) for f in validate_spectra(ds)}
    assert ("duplicate_wavelength", (4,)) in got
    assert ("non_monotonic_wavelength", (7,)) in got
    micrometres = small.assign_coords(wavelength=("wavelength", small["wavelength"].values / 1000, {"units": "nm"}))
    assert {f.rule for f in validate_spectra(micrometres)} == {"wavelength_range_nm"}


def test_structure_and_dtype_failures(small):
    ds = small.copy()
    ds["intensity"] = ds["intensity"].astype("float64")
    ds["Cu"].attrs["units"] = "mg/kg"
    ds = ds.drop_vars("shot")
    got = {(f.variable, f.rule) for f in validate_spectra(ds)}
    assert ("intensity", "wrong_datatype") in got
    assert any(v == "Cu" for v, _ in got)
    assert any("shot" in f.reason for f in validate_spectra(ds))


def test_label_range_per_unit(small):
    ds = small.copy(deep=True)
    ds["Cu"][0] = 150.0  # wt% cannot exceed 100
    assert [(f.rule, f.position) for f in validate_spectra(ds)] == [("label_range", (0,))]
    ds["Cu"].attrs["units"] = "ppm"  # 150 ppm is fine
    assert validate_spectra(ds) == []


def test_failures_are_capped(small):
    ds = small.copy(deep=True)
    ds["intensity"][:] = np.nan
    failures = validate_spectra(ds, limit=5)
    assert len(failures) == 6 and "more" in failures[-1].reason


def test_saturation_count_per_spectrum():
    x = np.array([[0, 37000, 38000, 39000], [10, 20, 30, 40]], dtype=np.float32)
    np.testing.assert_array_equal(saturated_channels(x, 38000, 0.01), [2, 0])
    np.testing.assert_array_equal(saturated_channels(x, 38000, 0.03), [3, 0])


@pytest.mark.parametrize("value", ["../x", "/abs", "a/b", "a\\b", "..", ".hidden", "-x", "", "a b", "x" * 200])
def test_unsafe_ids(value):
    assert not is_safe_id(value)


@pytest.mark.parametrize("value", ["OREAS45e", "S-01", "a.b_c+d", "9"])
def test_safe_ids(value):
    assert is_safe_id(value)


def test_manifest_table_rules():
    df = pd.DataFrame(
        {
            "sample_id": ["A", "B", "B", "../x", "E", "F"],
            "file": ["a", "b", "b", "d", "e", "f"],
            "Na_ppm": [1.0, 2.0, 2.0, 3.0, np.nan, 2e6],
            "Cu_wt%": [np.nan, np.nan, np.nan, np.nan, np.nan, 101.0],
        },
        index=[10, 11, 12, 13, 14, 15],
    )
    got = {(f.index, f.rule) for f in validate_table(df, manifest_entries_schema(require_label=True))}
    assert got == {
        (11, "duplicate_entry"),
        (12, "duplicate_entry"),
        (13, "unsafe_sample_id"),
        (14, "missing_label"),
        (15, "label_range"),
    }
    # by default a sample without labels is an unknown sample, not an error
    default = {(f.index, f.rule) for f in validate_table(df, manifest_entries_schema())}
    assert default == got - {(14, "missing_label")}


def test_sample_table_requires_unique_ids():
    df = pd.DataFrame({"sample_id": ["A", "A"], "file": ["a", "b"], "n_spectra": [1, 2], "Na_ppm": [1.0, 1.0]})
    failures = validate_table(df, sample_table_schema())
    assert {f.rule for f in failures} == {"duplicate_sample"} and {f.index for f in failures} == {0, 1}
    assert validate_table(df.iloc[:1], sample_table_schema()) == []
