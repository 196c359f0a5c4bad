"""Readers for measured spectra files; each returns a SpectraBlock that remembers where every value came from.

Formats (INTERFACES.md): ``shot_columns`` (wavelength column then one column per shot, header optional),
``spectrum_rows`` (CSV, metadata columns then one column per channel headed by its wavelength in nm) and
``dataset`` (the project's own .zarr / .nc); ``auto`` (the default) picks between the two text layouts from
the content. Text is decoded by ``text_decoding`` (gzip, UTF-16, BOM, Latin-1) and split by ``number_format``
(delimiter and decimal comma detected). Parse errors raise FileRejected naming file, line, column, rule.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from libs_pipeline.spectra.findings import FileRejected, Finding, quoted
from libs_pipeline.spectra.layout_detection import SHOT_COLUMNS, SPECTRUM_ROWS, detect_layout
from libs_pipeline.spectra.number_format import NumberFormat, detect_number_format
from libs_pipeline.spectra.store import open_zarr_spectra
from libs_pipeline.spectra.text_decoding import DecodedText, decode_source

DATASET = "dataset"
AUTO = "auto"
READERS = (AUTO, SHOT_COLUMNS, SPECTRUM_ROWS, DATASET)
MAX_FINDINGS_READ = 1000
"""A reader stops collecting problems after this many (the count in the report is then 'at least')."""
SAMPLE_COLUMNS = ("sample_id", "sample")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


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
    channel_index: np.ndarray | None = None  # original channel of each channel (after reordering/merging)
    notes: dict | None = None  # how the file was decoded and read (recorded in the version manifest)

    def locate(self, spectrum: int | None = None, channel: int | None = None) -> tuple[int | None, int | None]:
        """(line, column) in the source file of intensity[spectrum, channel] or of wavelength[channel]."""
        if channel is not None and self.channel_index is not None:
            channel = int(self.channel_index[channel])
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
    """Bytes -> text (gzip, BOM, UTF-16, UTF-8, Latin-1; see text_decoding); binary data is rejected."""
    return decode_source(data, file).text


def _decoded_notes(decoded: DecodedText, fmt: NumberFormat) -> dict:
    notes = {"encoding": decoded.encoding, "number_format": fmt.describe()}
    if decoded.compression:
        notes["compression"] = decoded.compression
        notes["decompressed_bytes"] = decoded.decompressed_bytes
    return notes


def _parse_float(cell: str) -> float:
    cell = cell.strip()
    if not cell or "_" in cell:
        raise ValueError(cell)
    return float(cell)


def _cell_problem(cell: str, fmt: NumberFormat | None) -> str:
    """Plain-words reason for a cell that is not a number (names the locale when that is the likely cause)."""
    cell = cell.strip()
    if not cell:
        return "empty cell"
    hint = ""
    if fmt is not None and fmt.decimal == "." and ("," in cell or ";" in cell):
        hint = f" (a decimal comma or another delimiter? the file was read as {fmt.describe()})"
    return f"non-numeric cell {quoted(cell[:40])}{hint}"


def _as_text(data: bytes | DecodedText, file: str) -> DecodedText:
    return data if isinstance(data, DecodedText) else decode_source(data, file)


def read_shot_columns(data: bytes | DecodedText, file: str, max_findings: int = MAX_FINDINGS_READ) -> SpectraBlock:
    """Format (a): column 1 wavelength (nm), then one column per shot; one optional header line; any line breaks."""
    decoded = _as_text(data, file)
    findings: list[Finding] = []
    rows: list[list[float]] = []
    lines_of_rows: list[int] = []
    fmt: NumberFormat | None = None
    n_cols: int | None = None
    header_seen = False
    for lineno, raw in enumerate(_LINE_BREAK.split(decoded.text), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line_fmt = fmt or detect_number_format(line)
        cells = line_fmt.split(line)
        if n_cols is None and not header_seen:
            try:
                _parse_float(cells[0])
            except ValueError:
                header_seen = True  # a header line: names of the columns, not data
                continue
        fmt = line_fmt
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
                    findings.append(Finding(file, "non_numeric", _cell_problem(cell, fmt), line=lineno, column=col))
                    break
            else:
                findings.append(Finding(file, "non_numeric", "line is not all numbers", line=lineno))
        if len(findings) >= max_findings:
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
        notes=_decoded_notes(decoded, fmt),
    )


def _numbered_rows(text: str, fmt: NumberFormat):
    """(1-based line, cells) of a delimited text; quoted cells are honoured for real delimiters."""
    if fmt.delimiter is None:
        for lineno, line in enumerate(_LINE_BREAK.split(text), start=1):
            yield lineno, line.split()
        return
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=fmt.delimiter)
    for cells in reader:
        yield reader.line_num, cells


def read_spectrum_rows(data: bytes | DecodedText, file: str, max_findings: int = MAX_FINDINGS_READ) -> SpectraBlock:
    """Format (b): CSV, header = metadata column names then wavelengths (nm); one spectrum per row."""
    decoded = _as_text(data, file)
    text = decoded.text
    first_line = next((ln for ln in _LINE_BREAK.split(text) if ln.strip() and not ln.strip().startswith("#")), "")
    fmt = detect_number_format(first_line)

    def number(cell: str) -> float:
        return _parse_float(cell.replace(",", ".") if fmt.decimal == "," else cell)

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
        for lineno, cells in _numbered_rows(text, fmt):
            cells = [c.strip() for c in cells]
            if not any(cells) or cells[0].startswith("#"):
                continue
            if header is None:
                header, header_line = cells, lineno
                for col, name in enumerate(cells, start=1):
                    try:
                        wl = number(name)
                    except ValueError:
                        if wavelength:
                            findings.append(Finding(
                                file, "bad_header", f"column {quoted(name)} after the wavelength columns is not a wavelength",
                                line=lineno, column=col))
                        elif not name:
                            findings.append(Finding(file, "bad_header", "empty column name", line=lineno, column=col))
                        elif name in meta_names:
                            findings.append(Finding(file, "bad_header", f"duplicate column {quoted(name)}", line=lineno, column=col))
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
                    values.append(number(cell))
                except ValueError:
                    findings.append(Finding(file, "non_numeric", _cell_problem(cell, fmt), line=lineno, column=col))
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
                    findings.append(Finding(file, "non_numeric", f"shot {quoted(cells[shot_col][:40])} is not an integer",
                                            line=lineno, column=shot_col + 1))
                    ok = False
            if ok:
                rows.append(values)
                lines.append(lineno)
            if len(findings) >= max_findings:
                break
    except csv.Error as exc:
        findings.append(Finding(file, "csv_syntax", str(exc), line=header_line or None))
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
        notes=_decoded_notes(decoded, fmt),
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
    """Default reader for a file name: .zarr/.nc -> dataset, anything else -> auto (layout from the content)."""
    suffix = Path(path).suffix.lower()
    return DATASET if suffix in (".zarr", ".nc", ".nc4", ".h5") else AUTO


def read_source(
    path: str | Path, reader: str, file: str | None = None, max_findings: int = MAX_FINDINGS_READ,
    max_bytes: int | None = None,
) -> SpectraBlock:
    """Read one source file with the named reader (``auto``: detect the text layout); ``file`` names it in findings.

    ``max_bytes`` limits the decompressed size of a gzip file. The block's ``notes`` say how it was read.
    """
    path = Path(path)
    file = file or str(path)
    if reader not in READERS:
        raise FileRejected([Finding(file, "unknown_reader", f"reader {quoted(reader)} is not one of {', '.join(READERS)}")])
    if reader == DATASET:
        block = read_dataset_file(path, file)
        block.notes = {"layout": DATASET, "layout_source": "the project's own .zarr/.nc format"}
        return block
    decoded = decode_source(path.read_bytes(), file, max_bytes)
    layout_note = {"layout": reader, "layout_source": "named in the manifest"}
    if reader == AUTO:
        reader, why = detect_layout(decoded.text)
        layout_note = {"layout": reader, "layout_source": f"detected from the content: {why}"}
    if reader == SHOT_COLUMNS:
        block = read_shot_columns(decoded, file, max_findings)
    else:
        block = read_spectrum_rows(decoded, file, max_findings)
    block.notes = {**layout_note, **(block.notes or {})}
    return block
