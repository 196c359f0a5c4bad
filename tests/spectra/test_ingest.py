"""ingest_campaign end to end: versions, merge, de-duplication, every bad-input case, crash safety."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

import libs_pipeline.spectra.store as store_module
from libs_pipeline.config import IngestOptions
from libs_pipeline.spectra.ingest import ingest_campaign
from libs_pipeline.spectra.store import SpectraStore
from libs_pipeline.testing import toy_campaign, write_shot_columns_file
from libs_pipeline.testing.campaign_files import add_sample, shot_file_values, write_campaign


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_toy_campaign_ingests_and_round_trips(campaign, local_root):
    result = ingest_campaign(campaign, local_root)
    assert result.status == "created" and result.changed and result.name == "toy"
    assert result.accepted == ["S00.txt", "S01.txt", "S02.txt"] and result.rejected == []
    assert result.n_spectra == result.n_new_spectra == 12
    store = SpectraStore(local_root)
    assert store.latest("toy") == result.version and result.uri == store.uri("toy")
    ds = store.open("toy").load()
    for i, sid in enumerate(["S00", "S01", "S02"]):
        path = campaign.parent / f"{sid}.txt"
        wl, intensity = shot_file_values(path)
        sel = ds["sample_id"].values == sid
        np.testing.assert_array_equal(ds["intensity"].values[sel], intensity)
        np.testing.assert_array_equal(ds["wavelength"].values, wl)
        assert ds["shot"].values[sel].tolist() == [0, 1, 2, 3]
        assert set(ds["source_sha256"].values[sel]) == {_sha(path)}
        assert (local_root / "raw" / _sha(path)).read_bytes() == path.read_bytes()
    assert ds["spectrum"].values.tolist() == list(range(12))
    assert ds["Cu"].attrs == {"units": "wt%", "role": "label"}
    np.testing.assert_array_equal(np.unique(ds["Cu"].values), np.round(np.linspace(0.1, 5.0, 3), 3))
    samples = store.samples("toy")
    assert samples["sample_id"].tolist() == ["S00", "S01", "S02"]
    assert samples["matrix"].tolist() == ["Al"] * 3 and samples["n_spectra"].tolist() == [4] * 3
    assert samples["Cu_wt%"].tolist() == [0.1, 2.55, 5.0]
    m = store.manifest("toy")
    assert [s["sha256"] for s in m["sources"]] == [_sha(campaign.parent / f"S0{i}.txt") for i in range(3)]
    assert m["schema_version"] == "1" and m["counts"]["n_spectra"] == 12 and m["run"] == result.run_id
    assert (local_root / "raw" / m["sources"][0]["campaign_manifest"]["sha256"]).read_bytes() == campaign.read_bytes()
    report = json.loads(result.report_path.read_text())
    assert report["status"] == "created" and report["version"] == result.version
    assert result.quarantine_report is None and not (local_root / "quarantine").exists()


def test_reingest_is_a_no_op(campaign, local_root):
    first = ingest_campaign(campaign, local_root)
    again = ingest_campaign(campaign, local_root)
    assert again.status == "unchanged" and not again.changed
    assert again.version == first.version and again.n_spectra == 12 and again.n_new_spectra == 0
    assert again.skipped == ["S00.txt", "S01.txt", "S02.txt"] and again.accepted == []
    assert SpectraStore(local_root).versions("toy") == [first.version]


def test_new_files_merge_with_latest_and_old_versions_stay_readable(tmp_path, local_root):
    manifest = write_campaign(tmp_path / "c")
    v1 = ingest_campaign(manifest, local_root).version
    extra = toy_campaign(n_samples=2, n_shots=5, n_channels=64, seed=7)
    sel = extra["sample_id"].values == "S01"
    write_shot_columns_file(tmp_path / "c" / "N01.txt", extra["wavelength"].values, extra["intensity"].values[sel])
    write_shot_columns_file(tmp_path / "c" / "S00_more.txt", extra["wavelength"].values, extra["intensity"].values[~sel][:2])
    add_sample(manifest, "N01", "N01.txt", {"Cu": 3.3})
    add_sample(manifest, "S00", "S00_more.txt", {"Cu": 0.1})  # more shots of a known sample, same label
    result = ingest_campaign(manifest, local_root)
    assert result.status == "created" and result.parent == v1 and result.version != v1
    assert result.accepted == ["N01.txt", "S00_more.txt"] and result.skipped == ["S00.txt", "S01.txt", "S02.txt"]
    assert result.n_spectra == 12 + 5 + 2 and result.n_new_spectra == 7
    store = SpectraStore(local_root)
    assert store.versions("toy") == [v1, result.version]
    old, new = store.open("toy", v1).load(), store.open("toy").load()
    assert old.sizes["spectrum"] == 12
    np.testing.assert_array_equal(new["intensity"].values[:12], old["intensity"].values)  # old spectra unchanged
    assert new["spectrum"].values.tolist() == list(range(19))
    s00 = new["sample_id"].values == "S00"
    assert new["shot"].values[s00].tolist() == [0, 1, 2, 3, 4, 5]  # shots continue, stay unique per sample
    samples = store.samples("toy").set_index("sample_id")
    assert samples.loc["S00", "file"] == "S00.txt;S00_more.txt" and samples.loc["S00", "n_spectra"] == 6
    assert samples.loc["N01", "Cu_wt%"] == 3.3
    assert "shot_offset" not in store.manifest("toy")["sources"][3]
    assert store.manifest("toy")["sources"][4]["shot_offset"] == {"S00": 4}


# --- bad input: each case lands in quarantine while the valid file of the same batch still lands ------------


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def _set_cell(path: Path, line: int, column: int, value: str) -> None:
    lines = _lines(path)
    cells = lines[line - 1].split(",")
    cells[column - 1] = value
    lines[line - 1] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")


def _mutate(kind: str, path: Path) -> None:
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "header_only":
        path.write_text("wavelength,shot1,shot2\n")
    elif kind == "non_numeric":
        _set_cell(path, 5, 3, "12.x")
    elif kind == "nan":
        _set_cell(path, 7, 2, "nan")
    elif kind == "inf":
        _set_cell(path, 8, 4, "-inf")
    elif kind == "negative":
        _set_cell(path, 9, 2, "-500.0")
    elif kind == "non_monotonic":
        lines = _lines(path)
        lines[9], lines[10] = lines[10], lines[9]
        path.write_text("\n".join(lines) + "\n")
    elif kind == "duplicate_wavelength":
        _set_cell(path, 4, 1, _lines(path)[2].split(",")[0])
    elif kind == "ragged":
        lines = _lines(path)
        lines[5] = lines[5].rsplit(",", 1)[0]
        path.write_text("\n".join(lines) + "\n")
    elif kind == "other_grid":
        wl, intensity = shot_file_values(path)
        write_shot_columns_file(path, wl + 0.01, intensity)
    elif kind == "binary":
        path.write_bytes(hashlib.sha256(b"seed").digest() * 64 + b"\x00")
    elif kind == "too_large":
        path.write_bytes(path.read_bytes() + b"#" * 150_000)


BAD_FILES = [
    ("empty", "empty_file", None, None),
    ("header_only", "no_data_rows", None, None),
    ("non_numeric", "non_numeric", 5, 3),
    ("nan", "finite", 7, 2),
    ("inf", "finite", 8, 4),
    ("negative", "dark_noise_tolerance", 9, 2),
    ("non_monotonic", "non_monotonic_wavelength", 11, 1),
    ("duplicate_wavelength", "duplicate_wavelength", 4, 1),
    ("ragged", "ragged_rows", 6, None),
    ("other_grid", "grid_mismatch", 1, 1),
    ("binary", "binary_file", 1, None),
    ("too_large", "file_too_large", None, None),
]


@pytest.fixture
def baseline(tmp_path, local_root):
    """A store holding version 1 of 'toy' (3 samples) and a folder for a second batch."""
    manifest = write_campaign(tmp_path / "c")
    version = ingest_campaign(manifest, local_root).version
    return manifest, version


def _second_batch(manifest: Path, entries: list[dict]) -> Path:
    """A manifest for the second batch: one new valid file (G01) plus ``entries``."""
    folder = manifest.parent
    extra = toy_campaign(n_samples=2, n_shots=3, n_channels=64, seed=11)
    for i, sid in enumerate(["S00", "S01"]):
        sel = extra["sample_id"].values == sid
        name = "G01.txt" if i == 0 else "B01.txt"
        write_shot_columns_file(folder / name, extra["wavelength"].values, extra["intensity"].values[sel])
    doc = {"name": "toy", "units": "wt%", "samples": [{"sample_id": "G01", "file": "G01.txt", "labels": {"Cu": 0.7}}, *entries]}
    path = folder / "batch2.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _check_partial(result, local_root: Path, baseline_version: str, bad_file: str, rule: str, line, column, copied=True):
    assert result.status == "partial", [str(r) for r in result.rejected]
    assert result.accepted == ["G01.txt"] and result.rejected_files == [bad_file]
    first = next(r for r in result.rejected if r.rule == rule)
    assert (first.file, first.line, first.column) == (bad_file, line, column), str(first)
    store = SpectraStore(local_root)
    assert store.versions("toy") == [baseline_version, result.version]
    assert store.open("toy", baseline_version).sizes["spectrum"] == 12  # previous version intact
    latest = store.open("toy")
    assert latest.sizes["spectrum"] == 15 and "B01" not in set(latest["sample_id"].values)
    report = json.loads(result.quarantine_report.read_text())
    assert result.quarantine_report.parent.local_path == local_root / "quarantine" / result.run_id
    entry = next(e for e in report["rejections"] if e["rule"] == rule)
    assert (entry["file"], entry["line"]) == (bad_file, line) and entry["reason"]
    if copied:
        copy = result.quarantine_report.parent / entry["quarantined_as"]
        assert copy.read_bytes() == (Path(report["manifest"]).parent / bad_file).read_bytes()
    else:
        assert entry["quarantined_as"] is None


@pytest.mark.parametrize(("kind", "rule", "line", "column"), BAD_FILES)
def test_bad_file_is_quarantined_and_the_rest_lands(baseline, local_root, kind, rule, line, column):
    manifest, v1 = baseline
    batch = _second_batch(manifest, [{"sample_id": "B01", "file": "B01.txt", "labels": {"Cu": 1.1}}])
    _mutate(kind, manifest.parent / "B01.txt")
    options = IngestOptions(max_file_mb=0.1) if kind == "too_large" else None
    result = ingest_campaign(batch, local_root, options=options)
    _check_partial(result, local_root, v1, "B01.txt", rule, line, column)
    assert str(result.rejected[0]).startswith("B01.txt")


@pytest.mark.parametrize(
    ("entry", "rule", "copied"),
    [
        ({"sample_id": "B01", "file": "B01.txt", "labels": {"Cu": 150.0}}, "label_range", True),
        ({"sample_id": "B01", "file": "B01.txt", "labels": {"Cu": -1.0}}, "label_range", True),
        ({"sample_id": "B01", "file": "B01.txt", "labels": {"Cu": 1.0}, "units": "mg/kg"}, "label_unit", True),
        ({"sample_id": "B01", "file": "B01.txt", "labels": {"Cu": 900.0}, "units": "ppm"}, "unit_mismatch", True),
        ({"sample_id": "../x", "file": "B01.txt", "labels": {"Cu": 1.0}}, "unsafe_sample_id", True),
        ({"sample_id": "/etc/x", "file": "B01.txt", "labels": {"Cu": 1.0}}, "unsafe_sample_id", True),
        ({"sample_id": "a/b", "file": "B01.txt", "labels": {"Cu": 1.0}}, "unsafe_sample_id", True),
        ({"sample_id": "S00", "file": "B01.txt", "labels": {"Cu": 9.9}}, "label_conflict", True),
        ({"sample_id": "B01", "file": "B01.txt", "labels": {"Cu": 1.0}, "reader": "excel"}, "unknown_reader", True),
        ({"sample_id": "B01", "file": "missing.txt", "labels": {"Cu": 1.0}}, "file_not_found", False),
    ],
)
def test_bad_manifest_entries_are_quarantined(baseline, local_root, entry, rule, copied):
    manifest, v1 = baseline
    result = ingest_campaign(_second_batch(manifest, [entry]), local_root)
    _check_partial(result, local_root, v1, entry["file"], rule, None, None, copied=copied)
    assert "batch2.yaml" in (result.rejected[0].coordinate or "") or rule in ("file_not_found", "label_conflict", "unit_mismatch")


@pytest.mark.parametrize("file", ["../outside.txt", "/etc/hostname", "sub/../../outside.txt"])
def test_manifest_paths_escaping_the_folder_are_rejected_unread(baseline, local_root, tmp_path, file):
    manifest, v1 = baseline
    (tmp_path / "outside.txt").write_text("secret")
    result = ingest_campaign(_second_batch(manifest, [{"sample_id": "B01", "file": file, "labels": {"Cu": 1.0}}]), local_root)
    _check_partial(result, local_root, v1, file, "unsafe_path", None, None, copied=False)
    copies = result.quarantine_report.parent.children()
    assert not any("outside" in c or "hostname" in c for c in copies)
    assert _sha(tmp_path / "outside.txt") not in {p.name for p in (local_root / "raw").iterdir()}


def test_whole_batch_rejected_creates_no_version(baseline, local_root):
    manifest, v1 = baseline
    (manifest.parent / "bad.txt").write_text("")
    doc = {"units": "wt%", "samples": [{"sample_id": "B", "file": "bad.txt", "labels": {"Cu": 1}},
                                       {"sample_id": "C", "file": "nope.txt", "labels": {"Cu": 1}}]}
    batch = manifest.parent / "bad.yaml"
    batch.write_text(yaml.safe_dump(doc))
    result = ingest_campaign(batch, local_root, name="toy")
    assert result.status == "rejected" and not result.changed and result.version == v1 and result.parent == v1
    assert result.rejected_files == ["bad.txt", "nope.txt"] and result.accepted == []
    assert SpectraStore(local_root).versions("toy") == [v1]
    assert "rejected" in result.summary_markdown()
    fresh = ingest_campaign(batch, local_root, name="fresh")
    assert fresh.status == "rejected" and fresh.version is None and fresh.n_spectra == 0
    assert SpectraStore(local_root).versions("fresh") == []


def test_unusable_manifest_is_quarantined(tmp_path, local_root):
    bad = tmp_path / "broken.yaml"
    bad.write_text("samples: [\n  {sample_id: A")
    result = ingest_campaign(bad, local_root)
    assert result.status == "rejected" and result.version is None
    assert result.rejected[0].rule == "manifest_syntax" and result.rejected[0].file == "broken.yaml"
    report = json.loads(result.quarantine_report.read_text())
    assert (result.quarantine_report.parent / report["rejections"][0]["quarantined_as"]).read_bytes() == bad.read_bytes()


def test_unsafe_dataset_name_is_rejected(campaign, local_root):
    result = ingest_campaign(campaign, local_root, name="../evil")
    assert result.status == "rejected" and result.rejected[0].rule == "unsafe_name"
    assert not (local_root / "evil").exists() and not (local_root.parent / "evil").exists()


def test_resampling_onto_the_dataset_grid_is_opt_in_and_recorded(baseline, local_root):
    manifest, v1 = baseline
    folder = manifest.parent
    wl, _ = shot_file_values(folder / "S00.txt")
    fine = np.linspace(wl[0] - 1.0, wl[-1] + 1.0, 101)
    intensity = np.vstack([np.linspace(0.0, 100.0, fine.size), np.full(fine.size, 7.0)]).astype(np.float32)
    write_shot_columns_file(folder / "F01.txt", fine, intensity, fmt="%.6f")
    doc = {"units": "wt%", "samples": [{"sample_id": "F01", "file": "F01.txt", "labels": {"Cu": 2.0}}]}
    batch = folder / "fine.yaml"
    batch.write_text(yaml.safe_dump(doc))
    refused = ingest_campaign(batch, local_root, name="toy")
    assert refused.status == "rejected" and refused.rejected[0].rule == "grid_mismatch"
    assert "101 channels" in refused.rejected[0].reason and "64 channels" in refused.rejected[0].reason
    result = ingest_campaign(batch, local_root, name="toy", options=IngestOptions(resample=True))
    assert result.status == "created"
    ds = SpectraStore(local_root).open("toy").load()
    got = ds["intensity"].values[ds["sample_id"].values == "F01"]
    parsed_wl, parsed = shot_file_values(folder / "F01.txt")
    np.testing.assert_allclose(got[0], np.interp(wl, parsed_wl, parsed[0].astype(np.float64)), rtol=1e-6)
    np.testing.assert_array_equal(got[1], np.full(wl.size, 7.0, dtype=np.float32))
    src = SpectraStore(local_root).manifest("toy")["sources"][-1]
    assert src["resampled"] == {"method": "linear", "from_channels": 101, "from_range_nm": [fine[0], fine[-1]], "to_channels": 64}
    assert any(w.rule == "resampled" for w in result.warnings)


def test_resampling_never_extrapolates(baseline, local_root):
    manifest, _ = baseline
    wl, intensity = shot_file_values(manifest.parent / "S00.txt")
    write_shot_columns_file(manifest.parent / "short.txt", wl[5:] + 0.001, intensity[:, 5:])
    batch = manifest.parent / "short.yaml"
    batch.write_text(yaml.safe_dump({"units": "wt%", "samples": [{"sample_id": "Z", "file": "short.txt", "labels": {"Cu": 1}}]}))
    result = ingest_campaign(batch, local_root, name="toy", options=IngestOptions(resample=True))
    assert result.status == "rejected" and result.rejected[0].rule == "grid_coverage"


def test_crash_inside_the_write_leaves_the_old_latest(baseline, local_root, monkeypatch):
    manifest, v1 = baseline
    batch = _second_batch(manifest, [])

    def explode(ds, target, chunk):
        ds[["intensity"]].isel(spectrum=slice(0, 3)).to_zarr(target.zarr_store(), zarr_format=3, consolidated=False)
        raise RuntimeError("killed mid-write")

    monkeypatch.setattr(store_module, "_write_zarr", explode)
    with pytest.raises(RuntimeError, match="killed mid-write"):
        ingest_campaign(batch, local_root)
    store = SpectraStore(local_root)
    assert store.latest("toy") == v1 and store.versions("toy") == [v1]
    partial = {p.name for p in (local_root / "spectra" / "toy").iterdir()} - {".lock", "LATEST", f"{v1}.manifest.json", f"{v1}.zarr"}
    assert len(partial) == 1 and partial.pop().endswith(".zarr")  # the partial zarr, without a manifest: invisible
    monkeypatch.undo()
    result = ingest_campaign(batch, local_root)  # the same batch lands once the fault is gone
    assert result.status == "created" and result.n_spectra == 15


def test_saturation_is_reported_as_a_warning(campaign, local_root):
    peaks = np.concatenate([shot_file_values(campaign.parent / f"S0{i}.txt")[1].max(axis=1) for i in range(3)])
    level = float(np.median(peaks))  # about half of the spectra reach it
    result = ingest_campaign(campaign, local_root, options=IngestOptions(saturation_level=level, saturation_margin=0.0))
    assert result.status == "created"
    ds = SpectraStore(local_root).open("toy").load()
    counts = (ds["intensity"].values >= level).sum(axis=1)
    warned = [w for w in result.warnings if w.rule == "saturation"]
    # one finding per file (grouped), counting the saturated spectra of that file
    assert len({w.file for w in warned}) == len(warned)
    assert sum(w.count for w in warned) == int((counts > 0).sum()) > 0 and all(w.severity == "warning" for w in warned)
    assert warned[0].column is not None  # the shot's column in the file
    sources = SpectraStore(local_root).manifest("toy")["sources"]
    assert sum(sum(s["saturated_channels"]) for s in sources) == int(counts.sum())
    assert any(r["severity"] == "warning" for r in result.report_rows())


def _spectrum_rows_file(path: Path, sample_ids: list[str], n_channels: int = 16) -> np.ndarray:
    rng = np.random.default_rng(3)
    wl = np.linspace(300.0, 310.0, n_channels)
    values = rng.integers(0, 1000, size=(len(sample_ids), n_channels)).astype(np.float32)
    header = "sample_id,operator," + ",".join(f"{w:.4f}" for w in wl)
    rows = [f"{s},me," + ",".join(f"{v:.1f}" for v in row) for s, row in zip(sample_ids, values)]
    path.write_text("\n".join([header, *rows]) + "\n")
    return values


def test_spectrum_rows_campaign(tmp_path, local_root):
    folder = tmp_path / "rows"
    folder.mkdir()
    values = _spectrum_rows_file(folder / "all.csv", ["A", "B", "A", "B", "B"])
    (folder / "m.csv").write_text("file,sample_id,reader,Na_ppm\nall.csv,A,spectrum_rows,100\nall.csv,B,spectrum_rows,250\n")
    result = ingest_campaign(folder / "m.csv", local_root)
    assert result.status == "created" and result.name == "m" and result.accepted == ["all.csv"]
    ds = SpectraStore(local_root).open("m").load()
    assert ds["sample_id"].values.tolist() == ["A", "B", "A", "B", "B"]
    assert ds["shot"].values.tolist() == [0, 0, 1, 1, 2]
    assert ds["Na"].values.tolist() == [100.0, 250.0, 100.0, 250.0, 250.0] and ds["Na"].attrs["units"] == "ppm"
    np.testing.assert_array_equal(ds["intensity"].values, values)


def test_spectrum_rows_with_an_unknown_sample_is_rejected(tmp_path, local_root):
    folder = tmp_path / "rows"
    folder.mkdir()
    _spectrum_rows_file(folder / "all.csv", ["A", "A", "Q"])
    _spectrum_rows_file(folder / "ok.csv", ["C"])
    (folder / "m.csv").write_text(
        "file,sample_id,reader,Na_ppm\nall.csv,A,spectrum_rows,100\nok.csv,C,spectrum_rows,5\n"
    )
    result = ingest_campaign(folder / "m.csv", local_root)
    assert result.status == "partial" and result.accepted == ["ok.csv"]
    (r,) = result.rejected
    assert (r.file, r.rule, r.line) == ("all.csv", "unknown_sample", 4) and "'Q'" in r.reason


def test_dataset_reader_campaign_round_trips(tmp_path, local_root):
    folder = tmp_path / "own"
    folder.mkdir()
    ds = toy_campaign(n_samples=2, n_shots=3, n_channels=16)
    ds.to_netcdf(folder / "toy.nc")
    (folder / "m.yaml").write_text(yaml.safe_dump({"units": "wt%", "samples": [
        {"sample_id": "S00", "file": "toy.nc", "labels": {"Cu": float(ds["Cu"].values[0])}},
        {"sample_id": "S01", "file": "toy.nc", "labels": {"Cu": float(ds["Cu"].values[-1])}},
    ]}))
    result = ingest_campaign(folder / "m.yaml", local_root, name="own")
    assert result.status == "created", [str(r) for r in result.rejected]
    out = SpectraStore(local_root).open("own").load()
    np.testing.assert_array_equal(out["intensity"].values, ds["intensity"].values)
    assert out["sample_id"].values.tolist() == ds["sample_id"].values.tolist()
    np.testing.assert_array_equal(out["Cu"].values, ds["Cu"].values)
