"""SpectraStore on a local root and an S3 root: immutable content-addressed zarr 3 versions, LATEST, manifests
(written last), URLs, crash safety."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
import zarr

import libs_pipeline.spectra.store as store_module
from libs_pipeline.spectra.location import open_location
from libs_pipeline.spectra.store import (
    ParentMovedError,
    SpectraStore,
    VersionNotFoundError,
    content_hash,
    open_spectra,
)
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


def _dataset_dir(store_root, name="toy"):
    return open_location(store_root) / "spectra" / name


def test_write_and_open_round_trip_exactly(store_root, ds):
    store = SpectraStore(store_root)
    version = store.write_version("toy", ds, SOURCES, reader="shot_columns", extra={"note": "x"}, chunk_spectra=5)
    assert len(version) == 16 and version == content_hash(ds)
    assert store.latest("toy") == version and store.versions("toy") == [version] and store.names() == ["toy"]
    out = store.open("toy")
    assert out["intensity"].chunks == ((5, 5, 2), (32,))  # lazy, chunked along spectrum
    assert out["sample_id"].dtype.kind == "U"
    _assert_same(ds, out)
    assert out.attrs["name"] == "toy" and out.attrs["version"] == version
    group = zarr.open_group(store.location("toy", version).zarr_store(read_only=True), mode="r")
    assert group.metadata.zarr_format == 3
    assert group["intensity"].chunks == (5, 32)
    m = store.manifest("toy", version)
    assert m["sources"] == SOURCES and m["reader"] == "shot_columns" and m["note"] == "x"
    assert m["counts"] == {"n_spectra": 12, "n_samples": 3, "n_channels": 32, "n_sources": 1}
    assert m["parent"] is None and m["zarr"] == f"{version}.zarr"
    assert (_dataset_dir(store_root) / "LATEST").read_text() == version + "\n"


def test_same_content_is_a_no_op_and_versions_stay_readable(store_root, ds):
    store = SpectraStore(store_root)
    v1 = store.write_version("toy", ds, SOURCES, "shot_columns")
    manifest = _dataset_dir(store_root) / f"{v1}.manifest.json"
    first_bytes = manifest.read_bytes()
    assert store.write_version("toy", ds.copy(deep=True), SOURCES, "shot_columns") == v1
    assert manifest.read_bytes() == first_bytes  # not rewritten (its "created" would have changed)
    changed = ds.copy(deep=True)
    changed["intensity"][0, 0] += 1
    v2 = store.write_version("toy", changed, SOURCES, "shot_columns")
    assert v2 != v1 and store.latest("toy") == v2 and store.versions("toy") == [v1, v2]
    assert store.manifest("toy", v2)["parent"] == v1
    _assert_same(ds, store.open("toy", v1))
    _assert_same(changed, store.open("toy"))
    # writing the old content again points LATEST back at the old version, writing no data
    assert store.write_version("toy", ds, SOURCES, "shot_columns") == v1 and store.latest("toy") == v1
    assert manifest.read_bytes() == first_bytes


def test_uris_are_urls_and_open(store_root, ds):
    store = SpectraStore(store_root)
    v = store.write_version("toy", ds, SOURCES, "shot_columns")
    root = open_location(store_root).url
    assert store.uri("toy") == f"{root}/spectra/toy/{v}.zarr" and store.ref("toy") == f"{root}#toy@{v}"
    for uri in (store.uri("toy"), f"{store_root}#toy", f"{store_root}#toy@LATEST", f"{store_root}#toy@{v}",
                store.ref("toy")):
        _assert_same(ds, open_spectra(uri))
    with pytest.raises(ValueError, match="cannot open spectra"):
        open_spectra(f"{root}/toy.csv")
    with pytest.raises(FileNotFoundError, match="no such file"):
        open_spectra(f"{root}/spectra/toy/0123456789abcdef.zarr")


def test_netcdf_is_local_only(tmp_path, s3_root, ds):
    ds.to_netcdf(tmp_path / "toy.nc")
    _assert_same(ds, open_spectra(tmp_path / "toy.nc"))
    _assert_same(ds, open_spectra(f"file://{tmp_path}/toy.nc"))
    with pytest.raises(ValueError, match=rf"{s3_root}/toy.nc.*netCDF files are read from the local disk only"):
        open_spectra(f"{s3_root}/toy.nc")


def test_missing_versions_and_bad_names(store_root, ds):
    store = SpectraStore(store_root)
    assert store.latest("toy") is None and store.versions("toy") == [] and store.names() == []
    with pytest.raises(VersionNotFoundError, match="no versions"):
        store.open("toy")
    store.write_version("toy", ds, SOURCES, "shot_columns")
    with pytest.raises(VersionNotFoundError, match=f"no version '0123456789abcdef' in {open_location(store_root).url}"):
        store.open("toy", "0123456789abcdef")
    with pytest.raises(VersionNotFoundError, match="not a version id"):
        store.manifest("toy", "../../etc")
    with pytest.raises(ValueError, match="not a safe id"):
        store.write_version("../evil", ds, SOURCES, "shot_columns")


def test_invalid_dataset_is_refused(store_root, ds):
    bad = ds.copy(deep=True)
    bad["intensity"][0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        SpectraStore(store_root).write_version("toy", bad, SOURCES, "shot_columns")
    with pytest.raises(ValueError, match="sample table invalid"):
        SpectraStore(store_root).write_version("toy", ds, SOURCES, "shot_columns", extra={"samples": [{"sample_id": "A"}]})
    assert SpectraStore(store_root).latest("toy") is None
    assert open_location(store_root).children() == []  # nothing written


def test_crash_during_zarr_write_leaves_an_invisible_partial_that_a_rerun_overwrites(store_root, ds, monkeypatch):
    store = SpectraStore(store_root)
    v1 = store.write_version("toy", ds, SOURCES, "shot_columns")
    changed = ds.copy(deep=True)
    changed["intensity"] += 1
    v2 = content_hash(changed)
    real_write = store_module._write_zarr

    def explode(data, target, chunk):
        data[["intensity"]].isel(spectrum=slice(0, 2)).to_zarr(target.zarr_store(), zarr_format=3, consolidated=False)
        raise OSError("disk full")

    monkeypatch.setattr(store_module, "_write_zarr", explode)
    with pytest.raises(OSError, match="disk full"):
        store.write_version("toy", changed, SOURCES, "shot_columns")
    assert store.latest("toy") == v1 and store.versions("toy") == [v1]
    left = set(_dataset_dir(store_root).children()) - {".lock"}  # the lock file stays locally; the S3 lease goes
    assert left == {"LATEST", f"{v1}.manifest.json", f"{v1}.zarr", f"{v2}.zarr"}
    with pytest.raises(VersionNotFoundError, match=f"no version '{v2}'"):
        store.open("toy", v2)
    monkeypatch.setattr(store_module, "_write_zarr", real_write)
    assert store.write_version("toy", changed, SOURCES, "shot_columns") == v2  # overwrites the partial zarr
    assert store.versions("toy") == [v1, v2]
    _assert_same(changed, store.open("toy").load())


def test_crash_before_manifest_hides_the_version_until_completed(store_root, ds, monkeypatch):
    store = SpectraStore(store_root)
    v1 = store.write_version("toy", ds, SOURCES, "shot_columns")
    changed = ds.copy(deep=True)
    changed["intensity"] += 1

    def explode(location, manifest):
        raise OSError("power cut")

    monkeypatch.setattr(store_module, "_write_manifest", explode)
    with pytest.raises(OSError, match="power cut"):
        store.write_version("toy", changed, SOURCES, "shot_columns")
    assert store.latest("toy") == v1 and store.versions("toy") == [v1]
    assert (_dataset_dir(store_root) / f"{content_hash(changed)}.zarr" / "zarr.json").is_file()  # data is there
    monkeypatch.undo()
    v2 = store.write_version("toy", changed, SOURCES, "shot_columns")  # completes the orphaned zarr
    assert store.versions("toy") == [v1, v2] and store.latest("toy") == v2
    _assert_same(changed, store.open("toy"))


def test_a_stale_parent_commits_nothing(store_root, ds):
    store = SpectraStore(store_root)
    v1 = store.write_version("toy", ds, SOURCES, "shot_columns")
    changed = ds.copy(deep=True)
    changed["intensity"] += 1
    with pytest.raises(ParentMovedError, match=f"LATEST moved from None to {v1}"):
        store.write_version("toy", changed, SOURCES, "shot_columns", expected_parent=None)
    assert store.versions("toy") == [v1] and store.latest("toy") == v1
    assert not (_dataset_dir(store_root) / f"{content_hash(changed)}.zarr").exists()  # refused before writing data
    assert store.write_version("toy", changed, SOURCES, "shot_columns", expected_parent=v1) != v1


def test_samples_table_round_trip(store_root, ds):
    store = SpectraStore(store_root)
    records = [{"sample_id": "A", "file": "a.txt", "matrix": None, "n_spectra": 4, "Cu_wt%": 1.5}]
    store.write_version("toy", ds, SOURCES, "shot_columns", extra={"samples": records})
    table = store.samples("toy")
    assert list(table.columns) == ["sample_id", "file", "matrix", "n_spectra", "Cu_wt%"]
    assert table.iloc[0]["Cu_wt%"] == 1.5
    assert (_dataset_dir(store_root) / f"{store.latest('toy')}.manifest.json").read_json()["samples"] == records


def test_rewriting_a_committed_version_never_exposes_a_gap(store_root, ds):
    """A second writer of the same content (a crash rerun, or two identical ingests at once) overwrites the
    committed zarr object by object with identical bytes; readers see the whole version the entire time."""
    import threading

    from libs_pipeline.testing.stores import tree_bytes

    big = toy_campaign(n_samples=8, n_shots=16, n_channels=64)
    store = SpectraStore(store_root)
    version = store.write_version("toy", big, SOURCES, "shot_columns", chunk_spectra=4)
    target = store.location("toy", version)
    before = tree_bytes(target)
    expected = big["intensity"].values
    done = threading.Event()

    def rewrite():
        try:
            for _ in range(3):
                store_module._write_zarr(big.assign_attrs(name="toy", version=version), target, 4)
        finally:
            done.set()

    writer = threading.Thread(target=rewrite)
    writer.start()
    reads = 0
    while not done.is_set() or reads == 0:
        np.testing.assert_array_equal(store.open("toy", version)["intensity"].values, expected)
        reads += 1
    writer.join(60)
    assert tree_bytes(target) == before and len(before) > 32  # 32 intensity chunks + the other arrays
