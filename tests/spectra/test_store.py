"""SpectraStore: immutable content-addressed zarr 3 versions, LATEST, manifests, URIs, crash safety."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr
import zarr

import libs_pipeline.spectra.store as store_module
from libs_pipeline.spectra.store import SpectraStore, VersionNotFoundError, content_hash, open_spectra
from libs_pipeline.testing import toy_campaign

SOURCES = [{"file": "a.txt", "sha256": "0" * 64}]


@pytest.fixture
def ds():
    d = toy_campaign(n_samples=3, n_shots=4, n_channels=32)
    d["sample_id"] = ("spectrum", np.repeat(np.array(["Äl-1", "S 2 ", "x" * 40]), 4))  # unicode, spaces, long
    return d


def _assert_same(a: xr.Dataset, b: xr.Dataset) -> None:
    np.testing.assert_array_equal(a["intensity"].values, b["intensity"].values)
    np.testing.assert_array_equal(a["wavelength"].values, b["wavelength"].values)
    np.testing.assert_array_equal(a["spectrum"].values, b["spectrum"].values)
    assert a["sample_id"].values.tolist() == b["sample_id"].values.tolist()
    np.testing.assert_array_equal(a["shot"].values, b["shot"].values)
    np.testing.assert_array_equal(a["Cu"].values, b["Cu"].values)
    assert b["Cu"].attrs == {"units": "wt%", "role": "label"}
    assert b["wavelength"].attrs["units"] == "nm"


def test_write_and_open_round_trip_exactly(tmp_path, ds):
    store = SpectraStore(tmp_path)
    version = store.write_version("toy", ds, SOURCES, reader="shot_columns", extra={"note": "x"}, chunk_spectra=5)
    assert len(version) == 16 and version == content_hash(ds)
    assert store.latest("toy") == version and store.versions("toy") == [version]
    out = store.open("toy")
    assert out["intensity"].chunks == ((5, 5, 2), (32,))  # lazy, chunked along spectrum
    assert out["sample_id"].dtype.kind == "U"
    _assert_same(ds, out)
    assert out.attrs["name"] == "toy" and out.attrs["version"] == version
    group = zarr.open_group(store.uri("toy", version), mode="r")
    assert group.metadata.zarr_format == 3
    assert group["intensity"].chunks == (5, 32)
    m = store.manifest("toy", version)
    assert m["sources"] == SOURCES and m["reader"] == "shot_columns" and m["note"] == "x"
    assert m["counts"] == {"n_spectra": 12, "n_samples": 3, "n_channels": 32, "n_sources": 1}
    assert m["parent"] is None and m["zarr"] == f"{version}.zarr"


def test_same_content_is_a_no_op_and_versions_stay_readable(tmp_path, ds):
    store = SpectraStore(tmp_path)
    v1 = store.write_version("toy", ds, SOURCES, "shot_columns")
    mtime = (tmp_path / "spectra" / "toy" / f"{v1}.manifest.json").stat().st_mtime_ns
    assert store.write_version("toy", ds.copy(deep=True), SOURCES, "shot_columns") == v1
    assert (tmp_path / "spectra" / "toy" / f"{v1}.manifest.json").stat().st_mtime_ns == mtime
    changed = ds.copy(deep=True)
    changed["intensity"][0, 0] += 1
    v2 = store.write_version("toy", changed, SOURCES, "shot_columns")
    assert v2 != v1 and store.latest("toy") == v2 and store.versions("toy") == [v1, v2]
    assert store.manifest("toy", v2)["parent"] == v1
    _assert_same(ds, store.open("toy", v1))
    _assert_same(changed, store.open("toy"))
    # writing the old content again points LATEST back at the old version, writing no data
    assert store.write_version("toy", ds, SOURCES, "shot_columns") == v1 and store.latest("toy") == v1


def test_uris(tmp_path, ds):
    store = SpectraStore(tmp_path)
    v = store.write_version("toy", ds, SOURCES, "shot_columns")
    for uri in (store.uri("toy"), f"{tmp_path}#toy", f"{tmp_path}#toy@LATEST", f"{tmp_path}#toy@{v}", store.ref("toy")):
        _assert_same(ds, open_spectra(uri))
    ds.to_netcdf(tmp_path / "toy.nc")
    _assert_same(ds, open_spectra(tmp_path / "toy.nc"))
    with pytest.raises(ValueError, match="cannot open spectra"):
        open_spectra(tmp_path / "toy.csv")


def test_missing_versions_and_bad_names(tmp_path, ds):
    store = SpectraStore(tmp_path)
    assert store.latest("toy") is None and store.versions("toy") == []
    with pytest.raises(VersionNotFoundError, match="no versions"):
        store.open("toy")
    store.write_version("toy", ds, SOURCES, "shot_columns")
    with pytest.raises(VersionNotFoundError, match="no version"):
        store.open("toy", "0123456789abcdef")
    with pytest.raises(VersionNotFoundError, match="not a version id"):
        store.manifest("toy", "../../etc")
    with pytest.raises(ValueError, match="not a safe id"):
        store.write_version("../evil", ds, SOURCES, "shot_columns")


def test_invalid_dataset_is_refused(tmp_path, ds):
    bad = ds.copy(deep=True)
    bad["intensity"][0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        SpectraStore(tmp_path).write_version("toy", bad, SOURCES, "shot_columns")
    with pytest.raises(ValueError, match="sample table invalid"):
        SpectraStore(tmp_path).write_version("toy", ds, SOURCES, "shot_columns", extra={"samples": [{"sample_id": "A"}]})
    assert SpectraStore(tmp_path).latest("toy") is None


def test_crash_during_zarr_write_leaves_nothing(tmp_path, ds, monkeypatch):
    store = SpectraStore(tmp_path)
    v1 = store.write_version("toy", ds, SOURCES, "shot_columns")
    changed = ds.copy(deep=True)
    changed["intensity"] += 1

    def explode(data, path, chunk):
        data[["intensity"]].isel(spectrum=slice(0, 2)).to_zarr(path, zarr_format=3, consolidated=False)  # partial
        raise OSError("disk full")

    monkeypatch.setattr(store_module, "_write_zarr", explode)
    with pytest.raises(OSError, match="disk full"):
        store.write_version("toy", changed, SOURCES, "shot_columns")
    assert store.latest("toy") == v1 and store.versions("toy") == [v1]
    left = sorted(p.name for p in (tmp_path / "spectra" / "toy").iterdir())
    assert left == ["LATEST", f"{v1}.manifest.json", f"{v1}.zarr"]  # no temporary directory left behind


def test_crash_before_manifest_hides_the_version_until_completed(tmp_path, ds, monkeypatch):
    store = SpectraStore(tmp_path)
    v1 = store.write_version("toy", ds, SOURCES, "shot_columns")
    changed = ds.copy(deep=True)
    changed["intensity"] += 1

    def explode(path, obj):
        raise OSError("power cut")

    monkeypatch.setattr(store_module, "atomic_write_json", explode)
    with pytest.raises(OSError, match="power cut"):
        store.write_version("toy", changed, SOURCES, "shot_columns")
    assert store.latest("toy") == v1 and store.versions("toy") == [v1]
    monkeypatch.undo()
    v2 = store.write_version("toy", changed, SOURCES, "shot_columns")  # completes the orphaned zarr
    assert store.versions("toy") == [v1, v2] and store.latest("toy") == v2
    _assert_same(changed, store.open("toy"))


def test_samples_table_round_trip(tmp_path, ds):
    store = SpectraStore(tmp_path)
    records = [{"sample_id": "A", "file": "a.txt", "matrix": None, "n_spectra": 4, "Cu_wt%": 1.5}]
    store.write_version("toy", ds, SOURCES, "shot_columns", extra={"samples": records})
    table = store.samples("toy")
    assert list(table.columns) == ["sample_id", "file", "matrix", "n_spectra", "Cu_wt%"]
    assert table.iloc[0]["Cu_wt%"] == 1.5
    assert json.loads((tmp_path / "spectra" / "toy" / f"{store.latest('toy')}.manifest.json").read_text())["samples"] == records
