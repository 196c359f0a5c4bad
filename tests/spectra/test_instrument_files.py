"""Files as instrument software writes them: layout detection, locales, encodings, gzip, channel order, bad shots.

Each file is generated here (see instrument_files.py); each test checks the values that land, the policy
recorded in the version manifest and the plain-words findings.
"""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
import yaml

from libs_pipeline.config import IngestOptions
from libs_pipeline.spectra.ingest import ingest_campaign
from libs_pipeline.spectra.store import SpectraStore

from libs_pipeline.testing.instrument_files import shot_columns_text, spectrum_rows_text, toy_shots, write


def _manifest(folder, entries, labels=True):
    samples = [{"sample_id": sid, "file": file, **({"labels": {"Cu": 1.0}} if labels else {})} for sid, file in entries]
    path = folder / "manifest.yaml"
    path.write_text(yaml.safe_dump({"name": "lab", "units": "wt%", "samples": samples}, sort_keys=False))
    return path


def _ingest_one(tmp_path, name, data: bytes, options=None, sample="S1"):
    folder = tmp_path / "lab"
    folder.mkdir(exist_ok=True)
    (folder / name).write_bytes(data)
    return ingest_campaign(_manifest(folder, [(sample, name)]), tmp_path / "store", options=options)


def _landed(tmp_path):
    store = SpectraStore(tmp_path / "store")
    return store.open("lab").load(), store.manifest("lab")["sources"]


WL, X = toy_shots()


@pytest.mark.parametrize(
    ("name", "text", "encoding", "compress", "expect"),
    [
        ("de.txt", shot_columns_text(WL, X, ";", ","), "utf-8", False,
         {"number_format": "semicolon-separated, decimal comma", "encoding": "UTF-8"}),
        ("tab.txt", shot_columns_text(WL, X, "\t", ","), "utf-8", False, {"number_format": "tab-separated, decimal comma"}),
        ("u16.txt", shot_columns_text(WL, X), "utf-16", False, {"encoding": "UTF-16 little-endian (BOM)"}),
        ("u16be.txt", shot_columns_text(WL, X), "utf-16-be", False, {"encoding": "UTF-16-BE without BOM"}),
        ("bom.txt", shot_columns_text(WL, X), "utf-8-sig", False, {"encoding": "UTF-8 with BOM"}),
        ("latin.txt", shot_columns_text(WL, X).replace("Wavelength", "Wellenlänge"), "latin-1", False,
         {"encoding": "Latin-1 (not valid UTF-8)"}),
        ("shots.txt.gz", shot_columns_text(WL, X), "utf-8", True, {"compression": "gzip"}),
    ],
)
def test_locale_encoding_and_gzip_variants_land_with_the_same_values(tmp_path, name, text, encoding, compress, expect):
    data = text.encode(encoding)
    raw = gzip.compress(data, mtime=0) if compress else data
    result = _ingest_one(tmp_path, name, raw)
    assert result.status == "created", [str(r) for r in result.rejected]
    ds, sources = _landed(tmp_path)
    np.testing.assert_allclose(ds["wavelength"].values, WL)
    np.testing.assert_allclose(ds["intensity"].values, X, atol=1e-2)
    assert {k: sources[0][k] for k in expect} == expect
    assert sources[0]["layout"] == "shot_columns" and "detected from the content" in sources[0]["layout_source"]
    # the archive keeps the original bytes (compressed, encoded) under their own sha256
    assert (tmp_path / "store" / "raw" / sources[0]["sha256"]).read_bytes() == raw


def test_gzip_size_limit_applies_to_the_decompressed_bytes(tmp_path):
    bomb = gzip.compress(shot_columns_text(WL, X).encode() + b"#" * 3_000_000, mtime=0)
    assert len(bomb) < 100_000
    result = _ingest_one(tmp_path, "bomb.txt.gz", bomb, IngestOptions(max_file_mb=1))
    assert result.status == "rejected"
    (f,) = result.rejected
    assert f.rule == "file_too_large" and "decompressed" in f.reason and "1.000 MB" in f.reason


def test_binary_file_message_names_what_was_tried(tmp_path):
    result = _ingest_one(tmp_path, "x.spc", b"SPC\x00\x01\x02" * 10)
    (f,) = result.rejected
    assert f.rule == "binary_file" and "UTF-16" in f.reason and "gzip" in f.reason


def test_an_unreadable_decimal_comma_is_named_in_the_message(tmp_path):
    # the first data line has no decimals, so the file is read with a decimal point; later lines have commas
    text = "Wavelength;Shot 1;Shot 2\n250;1;2\n250,5;1,5;2\n251;1;2\n"
    result = _ingest_one(tmp_path, "odd.txt", text.encode())
    (f,) = result.rejected
    assert (f.rule, f.line, f.column) == ("non_numeric", 3, 1)
    assert f.reason == ("non-numeric cell '250,5' (a decimal comma or another delimiter? the file was read as "
                        "semicolon-separated, decimal point)")


def test_descending_wavelengths_are_reversed_and_recorded(tmp_path):
    text = shot_columns_text(WL[::-1], X[:, ::-1], ";", ",")
    result = _ingest_one(tmp_path, "desc.txt", text.encode())
    assert result.status == "created"
    ds, sources = _landed(tmp_path)
    np.testing.assert_allclose(ds["wavelength"].values, WL)
    np.testing.assert_allclose(ds["intensity"].values, X, atol=1e-2)
    assert sources[0]["reordered"] == "descending wavelengths reversed to ascending"
    assert [w.rule for w in result.warnings] == ["reordered"]


def _two_segments():
    """Two spectrometer segments overlapping by 3 channels at the join (the second on its own grid)."""
    wl_a = np.array([300.0, 301.0, 302.0, 303.0, 304.0, 305.0])
    wl_b = np.array([303.5, 304.5, 305.5, 306.5, 307.5])
    a = np.array([[10.0, 11, 12, 13, 14, 15], [20, 21, 22, 23, 24, 25]])
    b = np.array([[113.5, 114.5, 115.5, 116.5, 117.5], [123.5, 124.5, 125.5, 126.5, 127.5]])
    return np.concatenate([wl_a, wl_b]), np.concatenate([a, b], axis=1)


@pytest.mark.parametrize(
    ("policy", "wl", "first_shot"),
    [
        ("average", [300, 301, 302, 303, 303.5, 304.5, 305.5, 306.5, 307.5],
         [10, 11, 12, 13, (113.5 + 13.5) / 2, (114.5 + 14.5) / 2, 115.5, 116.5, 117.5]),
        ("keep_first", [300, 301, 302, 303, 304, 305, 305.5, 306.5, 307.5], [10, 11, 12, 13, 14, 15, 115.5, 116.5, 117.5]),
        ("keep_second", [300, 301, 302, 303, 303.5, 304.5, 305.5, 306.5, 307.5],
         [10, 11, 12, 13, 113.5, 114.5, 115.5, 116.5, 117.5]),
    ],
)
def test_overlapping_segments_are_merged_by_the_policy(tmp_path, policy, wl, first_shot):
    wave, x = _two_segments()
    result = _ingest_one(tmp_path, "seg.txt", shot_columns_text(wave, x).encode(), IngestOptions(overlap_policy=policy))
    assert result.status == "created", [str(r) for r in result.rejected]
    ds, sources = _landed(tmp_path)
    np.testing.assert_allclose(ds["wavelength"].values, wl)
    np.testing.assert_allclose(ds["intensity"].values[0], first_shot, rtol=1e-6)
    merge = sources[0]["overlapping_segments"]
    assert merge["policy"] == policy and merge["segments"] == 2
    assert merge["joins"] == [{"from_nm": 303.5, "to_nm": 305.0, "channels_first": 2, "channels_second": 2}]


def test_descending_file_with_overlapping_segments_is_reversed_then_merged(tmp_path):
    wave, x = _two_segments()
    result = _ingest_one(tmp_path, "seg.txt", shot_columns_text(wave[::-1], x[:, ::-1]).encode())
    assert result.status == "created", [str(r) for r in result.rejected]
    ds, sources = _landed(tmp_path)
    np.testing.assert_allclose(ds["wavelength"].values, [300, 301, 302, 303, 303.5, 304.5, 305.5, 306.5, 307.5])
    assert sources[0]["reordered"] and sources[0]["overlapping_segments"]["segments"] == 2
    assert [w.rule for w in result.warnings] == ["reordered", "overlapping_segments"]


def test_overlapping_segments_rejected_by_policy_and_a_swapped_line_is_not_an_overlap(tmp_path):
    wave, x = _two_segments()
    result = _ingest_one(tmp_path, "seg.txt", shot_columns_text(wave, x).encode(), IngestOptions(overlap_policy="reject"))
    assert [f.rule for f in result.rejected] == ["overlapping_segments"]
    swapped = WL.copy()
    swapped[[9, 10]] = swapped[[10, 9]]
    result = _ingest_one(tmp_path, "swap.txt", shot_columns_text(swapped, X, header=False).encode(), sample="S2")
    (f,) = result.rejected
    assert (f.rule, f.line, f.column) == ("non_monotonic_wavelength", 11, 1)
    assert "steps back" in f.reason and "np." not in f.reason


def test_spectrum_rows_csv_with_a_sample_column_is_detected(tmp_path):
    folder = tmp_path / "lab"
    folder.mkdir()
    write(folder / "rows.csv", spectrum_rows_text(WL, X, ["S1", "S1", "S2", "S2"]))
    result = ingest_campaign(_manifest(folder, [("S1", "rows.csv"), ("S2", "rows.csv")]), tmp_path / "store")
    assert result.status == "created", [str(r) for r in result.rejected]
    ds, sources = _landed(tmp_path)
    assert ds["sample_id"].values.tolist() == ["S1", "S1", "S2", "S2"]
    np.testing.assert_allclose(ds["intensity"].values, X, atol=1e-3)
    assert sources[0]["layout"] == "spectrum_rows" and "Sample, Shot then 64 wavelengths" in sources[0]["layout_source"]
    assert "spectrum_rows" in result.summary_markdown()


def test_a_sample_missing_from_the_manifest_is_named_without_python_reprs(tmp_path):
    folder = tmp_path / "lab"
    folder.mkdir()
    write(folder / "rows.csv", spectrum_rows_text(WL, X, ["S1", "S1", "S9", "S9"]))
    result = ingest_campaign(_manifest(folder, [("S1", "rows.csv")]), tmp_path / "store")
    (f,) = result.rejected
    assert f.rule == "unknown_sample" and f.reason == "sample id 'S9' is not listed in the manifest for this file"
    assert (f.count, f.line, f.last_line) == (2, 4, 5)


def test_manifest_can_still_force_a_reader(tmp_path):
    folder = tmp_path / "lab"
    folder.mkdir()
    write(folder / "rows.csv", spectrum_rows_text(WL, X, ["S1"] * 4))
    (folder / "m.yaml").write_text(yaml.safe_dump({"name": "lab", "samples": [
        {"sample_id": "S1", "file": "rows.csv", "reader": "shot_columns"}]}))
    result = ingest_campaign(folder / "m.yaml", tmp_path / "store")
    (f,) = result.rejected
    assert f.rule == "non_numeric" and f.count == 4 and f.reason.startswith("non-numeric cell 'S1'")
    assert (f.line, f.column, f.last_line) == (2, 1, 5)


def test_one_finding_per_file_and_rule_with_count_and_first_and_last_position(tmp_path):
    text = shot_columns_text(WL, X, ";", ".").replace(f"{WL[3]:.4f}", "x").replace(f"{WL[40]:.4f}", "y")
    result = _ingest_one(tmp_path, "bad.txt", text.encode())
    (f,) = result.rejected
    assert (f.rule, f.count, f.line, f.column, f.last_line, f.last_column) == ("non_numeric", 2, 5, 1, 42, 1)
    assert str(f) == "bad.txt:5:1: [non_numeric] non-numeric cell 'x'; 2 times in this file, last at line 42 column 1"
    report = json.loads(result.report_path.read_text())
    assert len(report["rejections"]) == 1 and report["rejections"][0]["count"] == 2


def _bad_shots():
    x = X.copy()
    x[1] = 0.0  # dead
    x[2] = 7.0  # flat
    x[3] = 65535.0  # fully saturated
    return x


@pytest.mark.parametrize(
    ("policy", "status", "n_landed"),
    [("warn", "created", 4), ("drop", "created", 1), ("reject", "rejected", 0)],
)
def test_dead_flat_and_saturated_shots_follow_the_policy(tmp_path, policy, status, n_landed):
    options = IngestOptions(bad_shot_policy=policy, saturation_level=65535.0)
    result = _ingest_one(tmp_path, "shots.txt", shot_columns_text(WL, _bad_shots()).encode(), options)
    assert result.status == status
    findings = result.rejected if policy == "reject" else [w for w in result.warnings if w.rule.endswith("_shot")]
    assert [(f.rule, f.column) for f in findings] == [("dead_shot", 3), ("flat_shot", 4), ("saturated_shot", 5)]
    assert all(f"bad_shot_policy '{policy}'" in f.reason for f in findings)
    if n_landed:
        ds, sources = _landed(tmp_path)
        assert ds.sizes["spectrum"] == n_landed
        np.testing.assert_allclose(ds["intensity"].values[0], X[0], atol=1e-2)
        assert sources[0]["bad_shots"] == {"policy": policy, "dead_shot": [1], "flat_shot": [2], "saturated_shot": [3]}
