"""Readers: formats (a) shot_columns, (b) spectrum_rows, (c) dataset; parse errors name file, line, column, rule."""

from __future__ import annotations

import numpy as np
import pytest

from libs_pipeline.spectra.findings import FileRejected
from libs_pipeline.spectra.readers import (
    DATASET,
    SHOT_COLUMNS,
    SPECTRUM_ROWS,
    read_shot_columns,
    read_source,
    read_spectrum_rows,
    reader_for,
)
from libs_pipeline.testing import toy_campaign

ROWS = ["300.0,10,20,30", "300.5,11,21,31", "301.0,12,22,32"]
EXPECTED = np.array([[10, 11, 12], [20, 21, 22], [30, 31, 32]], dtype=np.float32)


def _rejected(fn, *args) -> list:
    with pytest.raises(FileRejected) as info:
        fn(*args)
    return info.value.findings


@pytest.mark.parametrize(
    "text",
    [
        "\n".join(ROWS) + "\n",
        "\n".join(ROWS),  # no trailing newline
        "\r\n".join(ROWS) + "\r\n",
        ROWS[0] + "\r" + "\r\n".join(ROWS[1:]) + "\r\n",  # mixed CR / CRLF, as OREAS601_7.txt
        "wavelength,a,b,c\n" + "\n".join(ROWS),  # optional header
        "\n".join(r.replace(",", "\t") for r in ROWS),
        "\n".join(r.replace(",", "   ") for r in ROWS),
        "\ufeff" + "\n\n".join(ROWS),  # BOM + blank lines
    ],
)
def test_shot_columns_parses_every_line_ending_and_delimiter(text):
    block = read_shot_columns(text.encode("utf-8"), "f.txt")
    np.testing.assert_array_equal(block.wavelength, [300.0, 300.5, 301.0])
    np.testing.assert_array_equal(block.intensity, EXPECTED)
    assert block.intensity.dtype == np.float32 and block.reader == SHOT_COLUMNS
    assert block.sample_id is None


def test_shot_columns_remembers_lines_for_error_messages():
    block = read_shot_columns(("# comment\nwl,a,b,c\n" + "\n".join(ROWS)).encode(), "f.txt")
    assert block.channel_lines.tolist() == [3, 4, 5]
    assert block.locate(spectrum=1, channel=2) == (5, 3)  # shot 1 is column 3, channel 2 on line 5
    assert block.locate(None, 0) == (3, 1)


@pytest.mark.parametrize(
    ("data", "rule", "line", "column"),
    [
        (b"", "empty_file", None, None),
        (b"  \n\n", "empty_file", None, None),
        (b"wavelength,shot1,shot2\n", "no_data_rows", None, None),
        (b"300,1,2\n301,1,x\n", "non_numeric", 2, 3),
        (b"300,1,2\n301,1,\n", "non_numeric", 2, 3),
        (b"300,1,2\n301,1_0,2\n", "non_numeric", 2, 2),
        (b"300,1,2\n301,1,2,3\n302,1,2\n", "ragged_rows", 2, None),
        (b"300,1,2\n301,1\n", "ragged_rows", 2, None),
        (b"300\n301\n", "no_shot_columns", 1, None),
        (b"300,1,2\n\x00\x01\x02garbage", "binary_file", 2, None),
        (bytes(range(256)) * 4, "binary_file", 1, None),
        (b"300,1,2\n301,1,2\x07\n", "binary_file", 2, None),
    ],
)
def test_shot_columns_rejections_name_rule_line_and_column(data, rule, line, column):
    findings = _rejected(read_shot_columns, data, "bad.txt")
    f = findings[0]
    assert (f.file, f.rule, f.line, f.column) == ("bad.txt", rule, line, column)
    assert str(f).startswith("bad.txt")


def test_shot_columns_nan_and_inf_parse_so_the_schema_can_locate_them():
    block = read_shot_columns(b"300,1,nan\n301,inf,2\n302,1e40,2\n", "f.txt")
    assert np.isnan(block.intensity[1, 0])
    assert np.isinf(block.intensity[0, 1])
    assert np.isinf(block.intensity[0, 2])  # 1e40 overflows float32: caught by the finite rule later


def test_spectrum_rows_reads_metadata_and_channels():
    text = "sample_id,shot,note,300.0,300.5,301.0\nA,0,x,1,2,3\nA,1,y,4,5,6\n\nB,0,z,7,8,9\n"
    block = read_spectrum_rows(text.encode(), "rows.csv")
    assert block.reader == SPECTRUM_ROWS
    np.testing.assert_array_equal(block.wavelength, [300.0, 300.5, 301.0])
    np.testing.assert_array_equal(block.intensity, [[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    assert block.sample_id.tolist() == ["A", "A", "B"]
    assert block.shot.tolist() == [0, 1, 0]
    assert block.spectrum_lines.tolist() == [2, 3, 5]
    assert block.locate(2, 1) == (5, 5)  # row B, channel 300.5 is column 5
    assert block.locate(None, 0) == (1, 4)  # a wavelength lives in the header


def test_spectrum_rows_without_sample_column():
    block = read_spectrum_rows(b"300,301\n1,2\n3,4\n", "rows.csv")
    assert block.sample_id is None and block.shot is None
    assert block.intensity.shape == (2, 2)


@pytest.mark.parametrize(
    ("text", "rule", "line", "column"),
    [
        ("sample_id,300,301\nA,1,2\nB,1\n", "ragged_rows", 3, None),
        ("sample_id,300,301\nA,1,abc\n", "non_numeric", 2, 3),
        ("sample_id,300,note\nA,1,2\n", "bad_header", 1, 3),
        ("sample_id,note\nA,1\n", "bad_header", 1, None),
        ("sample_id,300,301\n,1,2\n", "missing_sample_id", 2, 1),
        ("sample_id,shot,300\nA,one,2\n", "non_numeric", 2, 2),
        ("sample_id,300,301\n", "no_data_rows", 1, None),
    ],
)
def test_spectrum_rows_rejections(text, rule, line, column):
    f = _rejected(read_spectrum_rows, text.encode(), "rows.csv")[0]
    assert (f.rule, f.line, f.column) == (rule, line, column)


@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_dataset_reader_reads_the_projects_own_files(tmp_path, suffix):
    ds = toy_campaign(n_samples=2, n_shots=3, n_channels=16)
    path = tmp_path / f"toy{suffix}"
    if suffix == ".nc":
        ds.to_netcdf(path)
    else:
        ds.assign(sample_id=ds["sample_id"].astype(object)).to_zarr(path, zarr_format=3, consolidated=False)
    assert reader_for(path) == DATASET
    block = read_source(path, DATASET, "toy")
    np.testing.assert_array_equal(block.intensity, ds["intensity"].values)
    np.testing.assert_array_equal(block.wavelength, ds["wavelength"].values)
    assert block.sample_id.tolist() == ds["sample_id"].values.tolist()
    assert block.shot.tolist() == ds["shot"].values.tolist()


def test_dataset_reader_rejects_garbage_and_wrong_layout(tmp_path):
    garbage = tmp_path / "x.nc"
    garbage.write_bytes(b"\x89HDF-not-really" * 10)
    assert _rejected(read_source, garbage, DATASET)[0].rule == "unreadable_dataset"
    ds = toy_campaign(n_samples=1, n_shots=2, n_channels=8).drop_vars("sample_id")
    ds.to_netcdf(tmp_path / "y.nc")
    f = _rejected(read_source, tmp_path / "y.nc", DATASET)[0]
    assert f.rule == "dataset_layout" and "sample_id" in f.reason


def test_unknown_reader_is_a_rejection(tmp_path):
    (tmp_path / "a.txt").write_text("300,1\n")
    assert _rejected(read_source, tmp_path / "a.txt", "excel")[0].rule == "unknown_reader"
