"""Campaign manifests (YAML or CSV): which file holds which sample, and its certified concentrations.

Labels are optional: a sample without one is an unknown sample (ingested, then predicted). Entries with
problems (unsafe id or path, bad unit, out-of-range value, duplicate) are kept with their findings so that
ingest can reject just their files; a manifest that cannot be read at all raises
ManifestError.
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from libs_pipeline.spectra.dataset import CONCENTRATION_UNITS
from libs_pipeline.spectra.findings import FileRejected, Finding, quoted
from libs_pipeline.spectra.readers import READERS, decode_text, reader_for
from libs_pipeline.spectra.schemas import (
    LABEL_COLUMN,
    LABEL_NAME_PATTERN,
    label_column,
    manifest_entries_schema,
    validate_table,
)

KNOWN_CSV_COLUMNS = ("file", "sample", "sample_id", "matrix", "reader")


class ManifestError(ValueError):
    """The manifest as a whole is unusable (unreadable, wrong structure); ``finding`` says where and why."""

    def __init__(self, finding: Finding):
        self.finding = finding
        super().__init__(str(finding))


@dataclass
class ManifestEntry:
    """One (sample, file) row of a manifest; ``findings`` non-empty means the entry (and its file) is rejected."""

    row: int
    line: int | None
    sample_id: str
    file: str
    path: Path | None
    reader: str
    labels: dict[str, tuple[float, str]] = field(default_factory=dict)
    matrix: str | None = None
    findings: list[Finding] = field(default_factory=list)
    samples_from_file: bool = False
    """True for raw files given without a manifest: a file with a sample column names its own (unknown) samples."""

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def certified(self) -> bool:
        """False for an unknown sample (no certified concentration given)."""
        return any(not math.isnan(v) for v, _ in self.labels.values())

    def where(self, manifest_name: str) -> str:
        return f"{manifest_name} line {self.line}" if self.line else f"{manifest_name} samples[{self.row}]"

    def reject(self, manifest_name: str, rule: str, reason: str) -> None:
        self.findings.append(
            Finding(self.file or manifest_name, rule, reason, coordinate=f"{self.where(manifest_name)}, sample {quoted(self.sample_id)}")
        )


@dataclass
class CampaignManifest:
    """A parsed manifest: its name (if it has one), format and entries (valid and rejected)."""

    path: Path
    name: str | None
    format: str
    entries: list[ManifestEntry]
    ignored_columns: list[str] = field(default_factory=list)

    @property
    def valid_entries(self) -> list[ManifestEntry]:
        return [e for e in self.entries if e.ok]

    def entry_table(self) -> pd.DataFrame:
        """One row per entry: sample_id, file, matrix, reader and one column per label (``<El>_<unit>``)."""
        rows = []
        for e in self.entries:
            row = {"sample_id": e.sample_id, "file": e.file, "matrix": e.matrix, "reader": e.reader}
            for el, (value, unit) in e.labels.items():
                row[label_column(el, unit)] = value
            rows.append(row)
        df = pd.DataFrame(rows, index=[e.row for e in self.entries])
        for col in df.columns:
            if LABEL_COLUMN.match(str(col)):
                df[col] = df[col].astype("float64")
        return df


def _resolve_inside(base: Path, file: str) -> tuple[Path | None, str | None]:
    """(resolved path, None) when ``file`` lies inside ``base``; else (None, reason)."""
    if not file:
        return None, "no file given"
    if "\x00" in file:
        return None, "file name contains a NUL character"
    p = Path(file)
    if p.is_absolute():
        return None, f"absolute path {quoted(file)} (files must be relative to the manifest's folder)"
    resolved = (base / p).resolve()
    if not resolved.is_relative_to(base.resolve()):
        return None, f"path {quoted(file)} escapes the manifest's folder"
    return resolved, None


def _number(value) -> float:
    if value is None:
        return math.nan
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    if not text or text.lower() in ("na", "nan", "n/a"):
        return math.nan
    if "_" in text:
        raise ValueError(text)
    return float(text)


def _add_label(entry: ManifestEntry, mname: str, element: str, raw, unit) -> None:
    if not re.fullmatch(LABEL_NAME_PATTERN, str(element)):
        entry.reject(mname, "bad_label_name", f"label name {quoted(element)} is not an element/oxide symbol like 'Na' or 'Fe2O3'")
        return
    if unit is None:
        entry.reject(mname, "label_unit", f"no unit given for label {element} (add units: wt% or ppm)")
        return
    if unit not in CONCENTRATION_UNITS:
        entry.reject(mname, "label_unit", f"unit {quoted(unit)} of label {element} is not one of {', '.join(CONCENTRATION_UNITS)}")
        return
    try:
        value = _number(raw)
    except (TypeError, ValueError):
        entry.reject(mname, "non_numeric_label", f"label {element} = {quoted(raw)} is not a number")
        return
    if math.isinf(value):
        entry.reject(mname, "label_range", f"label {element} = {quoted(raw)} is not finite")
        return
    entry.labels[str(element)] = (value, str(unit))


def _yaml_lines(text: str) -> list[int | None]:
    """1-based line of each item of the top-level ``samples`` list (None where unknown)."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return []
    if not isinstance(node, yaml.MappingNode):
        return []
    for key, value in node.value:
        if getattr(key, "value", None) == "samples" and isinstance(value, yaml.SequenceNode):
            return [item.start_mark.line + 1 for item in value.value]
    return []


def _read_yaml(path: Path, text: str) -> CampaignManifest:
    mname = path.name
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ManifestError(
            Finding(mname, "manifest_syntax", f"invalid YAML: {getattr(exc, 'problem', exc)}",
                    line=mark.line + 1 if mark else None)
        ) from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("samples"), list) or not doc["samples"]:
        raise ManifestError(Finding(mname, "manifest_structure", "expected a mapping with a non-empty 'samples' list"))
    lines = _yaml_lines(text)
    top_reader = doc.get("reader")
    top_units = doc.get("units")
    top_matrix = doc.get("matrix")
    name = doc.get("name")
    entries = []
    for i, item in enumerate(doc["samples"]):
        line = lines[i] if i < len(lines) else None
        if not isinstance(item, dict):
            e = ManifestEntry(i, line, "", "", None, top_reader or "")
            e.reject(mname, "manifest_structure", f"sample entry is a {type(item).__name__}, expected a mapping")
            entries.append(e)
            continue
        sid = item.get("sample_id", item.get("sample"))
        file = item.get("file")
        file = "" if file is None else str(file)
        e = ManifestEntry(i, line, sid if isinstance(sid, str) else str(sid or ""), file, None, "")
        if sid is None:
            e.reject(mname, "missing_sample_id", "no sample_id given")
        elif not isinstance(sid, str):
            e.reject(mname, "sample_id_type", f"sample_id {quoted(sid)} is a {type(sid).__name__}; quote it so it stays text")
        e.reader = str(item.get("reader") or top_reader or reader_for(file))
        matrix = item.get("matrix", top_matrix)
        e.matrix = None if matrix is None else str(matrix)
        labels = item.get("labels")
        if labels is None:
            labels = {}
        if not isinstance(labels, dict):
            e.reject(mname, "manifest_structure", f"labels must be a mapping like {{Cu: 1.2}}, got {labels!r}")
            labels = {}
        for element, raw in labels.items():
            unit = item.get("units", top_units)
            if isinstance(raw, dict):
                unit = raw.get("units", unit)
                raw = raw.get("value")
            _add_label(e, mname, str(element), raw, unit)
        entries.append(e)
    return CampaignManifest(path, None if name is None else str(name), "yaml", entries)


def _read_csv(path: Path, text: str) -> CampaignManifest:
    mname = path.name
    first = next((ln for ln in text.splitlines() if ln.strip()), "")
    delim = ";" if ";" in first and "," not in first else ("\t" if "\t" in first and "," not in first else ",")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delim)
    header: list[str] | None = None
    entries: list[ManifestEntry] = []
    label_cols: dict[int, tuple[str, str]] = {}
    ignored: list[str] = []
    try:
        for cells in reader:
            cells = [c.strip() for c in cells]
            if not any(cells):
                continue
            if header is None:
                header = cells
                lowered = [h.lower() for h in header]
                if "file" not in lowered or not ({"sample", "sample_id"} & set(lowered)):
                    raise ManifestError(
                        Finding(mname, "missing_column", f"header {header} needs a 'file' and a 'sample' or 'sample_id' column",
                                line=reader.line_num)
                    )
                if len(set(lowered)) != len(lowered):
                    raise ManifestError(Finding(mname, "manifest_structure", f"duplicate column names in {header}", line=reader.line_num))
                for j, h in enumerate(header):
                    m = LABEL_COLUMN.match(h)
                    if m:
                        label_cols[j] = (m["element"], m["unit"])
                    elif h.lower() not in KNOWN_CSV_COLUMNS:
                        ignored.append(h)
                col = {h: j for j, h in enumerate(lowered)}
                continue
            line = reader.line_num
            row = len(entries)
            if len(cells) != len(header):
                e = ManifestEntry(row, line, "", cells[col["file"]] if col["file"] < len(cells) else "", None, "")
                e.reject(mname, "ragged_rows", f"{len(cells)} cells but the header has {len(header)}")
                entries.append(e)
                continue
            sid = cells[col["sample_id"]] if "sample_id" in col else cells[col["sample"]]
            file = cells[col["file"]]
            e = ManifestEntry(row, line, sid, file, None, "")
            if not sid:
                e.reject(mname, "missing_sample_id", "empty sample id")
            e.reader = (cells[col["reader"]] if "reader" in col and cells[col["reader"]] else reader_for(file))
            e.matrix = cells[col["matrix"]] or None if "matrix" in col else None
            for j, (element, unit) in label_cols.items():
                if cells[j] == "":
                    continue
                _add_label(e, mname, element, cells[j], unit)
            entries.append(e)
    except csv.Error as exc:
        raise ManifestError(Finding(mname, "manifest_syntax", f"invalid CSV: {exc}", line=reader.line_num)) from exc
    if header is None or not entries:
        raise ManifestError(Finding(mname, "manifest_structure", "manifest has no entries"))
    return CampaignManifest(path, None, "csv", entries, ignored_columns=ignored)


def _check_entries(manifest: CampaignManifest) -> None:
    """Paths, readers, pandera table rules, one unit per label, consistent labels per sample."""
    mname = manifest.path.name
    base = manifest.path.parent
    for e in manifest.entries:
        path, why = _resolve_inside(base, e.file)
        if why:
            e.reject(mname, "unsafe_path", why)
        e.path = path
        if e.reader not in READERS:
            e.reject(mname, "unknown_reader", f"reader {quoted(e.reader)} is not one of {', '.join(READERS)}")
    table = manifest.entry_table()
    by_row = {e.row: e for e in manifest.entries}
    for failure in validate_table(table, manifest_entries_schema()):
        targets = [by_row[failure.index]] if failure.index in by_row else manifest.entries
        for e in targets:
            e.reject(mname, failure.rule, failure.reason)
    units: dict[str, str] = {}
    for e in manifest.entries:
        for element, (_, unit) in e.labels.items():
            first = units.setdefault(element, unit)
            if unit != first:
                e.reject(mname, "unit_mismatch", f"label {element} in {unit} but earlier entries use {first}")
    per_sample: dict[str, list[ManifestEntry]] = {}
    for e in manifest.entries:
        per_sample.setdefault(e.sample_id, []).append(e)
    for sid, group in per_sample.items():
        variants = {tuple(sorted((k, v[0], v[1]) for k, v in e.labels.items())) for e in group}
        if len(variants) > 1 or len({e.matrix for e in group}) > 1:
            where = ", ".join(e.where(mname) for e in group)
            for e in group:
                e.reject(mname, "conflicting_labels", f"sample {quoted(sid)} is listed with different labels/matrix ({where})")


def read_campaign_manifest(path: str | Path) -> CampaignManifest:
    """Parse a YAML (.yaml/.yml) or CSV manifest and check every entry (see module docstring)."""
    path = Path(path)
    mname = path.name
    if not path.is_file():
        raise ManifestError(Finding(mname, "manifest_not_found", f"no such file: {path}"))
    try:
        text = decode_text(path.read_bytes(), mname)
    except FileRejected as exc:
        raise ManifestError(exc.findings[0]) from exc
    if path.suffix.lower() in (".yaml", ".yml"):
        manifest = _read_yaml(path, text)
    elif path.suffix.lower() in (".csv", ".tsv", ".txt"):
        manifest = _read_csv(path, text)
    else:
        raise ManifestError(Finding(mname, "manifest_format", f"unknown manifest type {quoted(path.suffix)} (use .yaml or .csv)"))
    _check_entries(manifest)
    return manifest
