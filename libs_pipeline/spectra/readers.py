"""Readers for measured spectra files; each returns a SpectraBlock that remembers where every value came from.

Formats (INTERFACES.md): ``shot_columns`` (wavelength column then one column per shot, header optional),
``spectrum_rows`` (CSV, metadata columns then one column per channel headed by its wavelength in nm) and
``dataset`` (the project's own .zarr / .nc). Parse errors raise FileRejected naming file, line, column, rule.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from libs_pipeline.spectra.findings import FileRejected, Finding
from libs_pipeline.spectra.store import open_zarr_spectra

SHOT_COLUMNS = "shot_columns"
SPECTRUM_ROWS = "spectrum_rows"
DATASET = "dataset"
READERS = (SHOT_COLUMNS, SPECTRUM_ROWS, DATASET)
SAMPLE_COLUMNS = ("sample_id", "sample")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass
class SpectraBlock:
    """Spectra parsed from one source file, plus the line/column of each value (for error messages)."""

    intensity: np.ndarray  # (n_spectra, n_channels) float32
    wavelength: np.ndarray  # (n_channels,) float64, as written in the file
    reader: str
    sample_id: np.ndarray | None = None  # (n_spectra,) str when the file names its samples
    shot: np.ndarray | None = None  # (n_spectra,) int64 when the file numbers its shots
    spectrum_lines: np.ndarray | None = None  # spectrum_rows: 1-based line of each spectrum
    channel_lines: np.ndarray | None = None  # shot_columns: 1-based line of each channel
    first_value_column: int = 2  # 1-based column of the first shot (shot_columns) / channel (spectrum_rows)
    header_line: int | None = None  # spectrum_rows: line of the header (wavelengths)

    def locate(self, spectrum: int | None = None, channel: int | None = None) -> tuple[int | None, int | None]:
        """(line, column) in the source file of intensity[spectrum, channel] or of wavelength[channel]."""
        if self.reader == SHOT_COLUMNS and self.channel_lines is not None:
            line = int(self.channel_lines[channel]) if channel is not None else None
            column = self.first_value_column + spectrum if spectrum is not None else 1
            return line, column
        if self.reader == SPECTRUM_ROWS and self.spectrum_lines is not None:
            line = int(self.spectrum_lines[spectrum]) if spectrum is not None else self.header_line
            column = self.first_value_column + channel if channel is not None else None
            return line, column
        return None, None


def decode_text(data: bytes, file: str) -> str:
    """Bytes -> text (UTF-8, else Latin-1); NUL or other control characters mean a binary file."""
    if not data.strip():
        raise FileRejected([Finding(file, "empty_file", "file is empty (no bytes other than whitespace)")])
    nul = data.find(b"\x00")
    if nul >= 0:
        line = data.count(b"\n", 0, nul) + 1
        raise FileRejected([Finding(file, "binary_file", f"NUL byte at offset {nul}: not a text file", line=line)])
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    bad = _CONTROL.search(text)
    if bad:
        line = text.count("\n", 0, bad.start()) + 1
        raise FileRejected(
            [Finding(file, "binary_file", f"control character {bad.group()!r} at offset {bad.start()}: not a text file", line=line)]
        )
    return text


def _delimiter(line: str) -> str | None:
    for d in (",", "\t", ";"):
        if d in line:
            return d
    return None  # whitespace


def _split(line: str, delim: str | None) -> list[str]:
    return line.split(delim) if delim else line.split()


def _parse_float(cell: str) -> float:
    cell = cell.strip()
    if not cell or "_" in cell:
        raise ValueError(cell)
    return float(cell)


def read_shot_columns(data: bytes, file: str, max_findings: int = 20) -> SpectraBlock:
    """Format (a): column 1 wavelength (nm), then one column per shot; one optional header line; any line breaks."""
    text = decode_text(data, file)
    findings: list[Finding] = []
    rows: list[list[float]] = []
    lines_of_rows: list[int] = []
    delim: str | None = None
    n_cols: int | None = None
    header_seen = False
    for lineno, raw in enumerate(_LINE_BREAK.split(text), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if delim is None and n_cols is None:
            delim = _delimiter(line)
        cells = _split(line, delim)
        if n_cols is None and not header_seen:
            try:
                _parse_float(cells[0].strip())
            except ValueError:
                header_seen = True  # a header line: names of the columns, not data
                continue
        if n_cols is None:
            n_cols = len(cells)
        if len(cells) != n_cols:
            findings.append(
                Finding(file, "ragged_rows", f"{len(cells)} columns but the first data line has {n_cols}", line=lineno)
            )
            continue
        try:
            if "_" in line:
                raise ValueError(line)
            rows.append(list(map(float, cells)))  # fast path; the slow path below names the bad cell
            lines_of_rows.append(lineno)
        except ValueError:
            for col, cell in enumerate(cells, start=1):
                try:
                    _parse_float(cell)
                except ValueError:
                    cell = cell.strip()
                    what = "empty cell" if not cell else f"non-numeric cell {cell[:40]!r}"
                    findings.append(Finding(file, "non_numeric", what, line=lineno, column=col))
                    break
            else:
                findings.append(Finding(file, "non_numeric", "line is not all numbers", line=lineno))
        if len(findings) > 10 * max_findings:
            break
    if findings:
        raise FileRejected(findings)
    if not rows:
        raise FileRejected([Finding(file, "no_data_rows", "file has a header but no data lines")])
    table = np.asarray(rows, dtype=np.float64)
    if table.shape[1] < 2:
        raise FileRejected([Finding(file, "no_shot_columns", "only a wavelength column, no shot columns", line=lines_of_rows[0])])
    with np.errstate(over="ignore", invalid="ignore"):
        intensity = table[:, 1:].T.astype(np.float32)
    return SpectraBlock(
        intensity=np.ascontiguousarray(intensity),
        wavelength=table[:, 0].copy(),
        reader=SHOT_COLUMNS,
        channel_lines=np.asarray(lines_of_rows, dtype=np.int64),
        first_value_column=2,
    )


def read_spectrum_rows(data: bytes, file: str, max_findings: int = 20) -> SpectraBlock:
    """Format (b): CSV, header = metadata column names then wavelengths (nm); one spectrum per row."""
    text = decode_text(data, file)
    first_line = next((ln for ln in _LINE_BREAK.split(text) if ln.strip()), "")
    delim = _delimiter(first_line) or ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delim)
    findings: list[Finding] = []
    header: list[str] | None = None
    header_line = 0
    meta_names: list[str] = []
    wavelength: list[float] = []
    sample_col: int | None = None
    shot_col: int | None = None
    rows: list[list[float]] = []
    samples: list[str] = []
    shots: list[int] = []
    lines: list[int] = []
    try:
        for cells in reader:
            lineno = reader.line_num
            cells = [c.strip() for c in cells]
            if not any(cells):
                continue
            if header is None:
                header, header_line = cells, lineno
                for col, name in enumerate(cells, start=1):
                    try:
                        wl = _parse_float(name)
                    except ValueError:
                        if wavelength:
                            findings.append(
                                Finding(file, "bad_header", f"column {name!r} after the wavelength columns is not a wavelength",
                                        line=lineno, column=col)
                            )
                        elif not name:
                            findings.append(Finding(file, "bad_header", "empty column name", line=lineno, column=col))
                        elif name in meta_names:
                            findings.append(Finding(file, "bad_header", f"duplicate column {name!r}", line=lineno, column=col))
                        else:
                            meta_names.append(name)
                        continue
                    wavelength.append(wl)
                if not wavelength:
                    findings.append(Finding(file, "bad_header", "no column header is a wavelength in nm", line=lineno))
                lowered = [m.lower() for m in meta_names]
                sample_col = next((lowered.index(s) for s in SAMPLE_COLUMNS if s in lowered), None)
                shot_col = lowered.index("shot") if "shot" in lowered else None
                if findings:
                    break
                continue
            if len(cells) != len(header):
                findings.append(
                    Finding(file, "ragged_rows", f"{len(cells)} cells but the header has {len(header)}", line=lineno)
                )
                continue
            n_meta = len(meta_names)
            ok = True
            values: list[float] = []
            for col, cell in enumerate(cells[n_meta:], start=n_meta + 1):
                try:
                    values.append(_parse_float(cell))
                except ValueError:
                    what = "empty cell" if not cell else f"non-numeric cell {cell[:40]!r}"
                    findings.append(Finding(file, "non_numeric", what, line=lineno, column=col))
                    ok = False
                    break
            if sample_col is not None:
                sid = cells[sample_col]
                if not sid:
                    findings.append(Finding(file, "missing_sample_id", "empty sample id", line=lineno, column=sample_col + 1))
                    ok = False
                samples.append(sid)
            if shot_col is not None:
                try:
                    shots.append(int(cells[shot_col]))
                except ValueError:
                    findings.append(
                        Finding(file, "non_numeric", f"shot {cells[shot_col][:40]!r} is not an integer", line=lineno,
                                column=shot_col + 1)
                    )
                    ok = False
            if ok:
                rows.append(values)
                lines.append(lineno)
            if len(findings) > 10 * max_findings:
                break
    except csv.Error as exc:
        findings.append(Finding(file, "csv_syntax", str(exc), line=reader.line_num))
    if findings:
        raise FileRejected(findings)
    if header is None:
        raise FileRejected([Finding(file, "empty_file", "file has no lines")])
    if not rows:
        raise FileRejected([Finding(file, "no_data_rows", "file has a header but no data rows", line=header_line)])
    with np.errstate(over="ignore", invalid="ignore"):
        intensity = np.asarray(rows, dtype=np.float64).astype(np.float32)
    return SpectraBlock(
        intensity=intensity,
        wavelength=np.asarray(wavelength, dtype=np.float64),
        reader=SPECTRUM_ROWS,
        sample_id=np.asarray(samples, dtype=str) if sample_col is not None else None,
        shot=np.asarray(shots, dtype=np.int64) if shot_col is not None else None,
        spectrum_lines=np.asarray(lines, dtype=np.int64),
        first_value_column=len(meta_names) + 1,
        header_line=header_line,
    )


def read_dataset_file(path: Path, file: str) -> SpectraBlock:
    """Format (c): the project's own .zarr / .nc in the canonical layout (labels come from the manifest)."""
    try:
        ds = open_zarr_spectra(path) if path.is_dir() else xr.open_dataset(path)
        with ds:
            ds = ds.load()
    except Exception as exc:  # any failure to open means the bytes are not a dataset
        raise FileRejected([Finding(file, "unreadable_dataset", f"cannot open as zarr/netCDF: {type(exc).__name__}: {exc}")])
    missing = [v for v in ("intensity", "sample_id") if v not in ds.variables]
    if "wavelength" not in ds.coords:
        missing.append("wavelength (coordinate)")
    if missing:
        raise FileRejected([Finding(file, "dataset_layout", f"missing variables: {', '.join(missing)}")])
    if ds["intensity"].dims != ("spectrum", "wavelength"):
        raise FileRejected(
            [Finding(file, "dataset_layout", f"intensity dims {ds['intensity'].dims} != ('spectrum', 'wavelength')")]
        )
    if ds["sample_id"].dims != ("spectrum",):
        raise FileRejected([Finding(file, "dataset_layout", f"sample_id dims {ds['sample_id'].dims} != ('spectrum',)")])
    if not np.issubdtype(ds["intensity"].dtype, np.number):
        raise FileRejected([Finding(file, "dataset_layout", f"intensity dtype {ds['intensity'].dtype} is not numeric")])
    with np.errstate(over="ignore", invalid="ignore"):
        intensity = np.asarray(ds["intensity"].values, dtype=np.float32)
    shot = np.asarray(ds["shot"].values, dtype=np.int64) if "shot" in ds.variables else None
    return SpectraBlock(
        intensity=intensity,
        wavelength=np.asarray(ds["wavelength"].values, dtype=np.float64),
        reader=DATASET,
        sample_id=np.asarray([str(v) for v in np.asarray(ds["sample_id"].values).tolist()], dtype=str),
        shot=shot,
    )


def reader_for(path: str | Path) -> str:
    """Default reader for a file name: .zarr/.nc -> dataset, anything else -> shot_columns."""
    suffix = Path(path).suffix.lower()
    return DATASET if suffix in (".zarr", ".nc", ".nc4", ".h5") else SHOT_COLUMNS


def read_source(path: str | Path, reader: str, file: str | None = None, max_findings: int = 20) -> SpectraBlock:
    """Read one source file with the named reader; ``file`` is the name used in findings (default: the path)."""
    path = Path(path)
    file = file or str(path)
    if reader not in READERS:
        raise FileRejected([Finding(file, "unknown_reader", f"reader {reader!r} is not one of {', '.join(READERS)}")])
    if reader == DATASET:
        return read_dataset_file(path, file)
    data = path.read_bytes()
    if reader == SHOT_COLUMNS:
        return read_shot_columns(data, file, max_findings)
    return read_spectrum_rows(data, file, max_findings)
