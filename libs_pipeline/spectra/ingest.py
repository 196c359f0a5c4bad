"""Ingest a campaign: read every file the manifest names, validate, archive, merge into a new store version.

A file is the unit of acceptance: a file with any error is copied to ``<root>/quarantine/<run>/`` (with
``report.json``) and the valid files of the batch still land. Files already in the dataset (same sha256)
are skipped, so re-ingesting is a no-op. Nothing here raises for bad input; an exception means a crash,
and a crash leaves the previous version and LATEST untouched (a version exists only once its manifest is written).

The store root is a URL (local, ``file://``, ``s3://``, ...): archive, quarantine, versions and reports all land
under it; the files being ingested are local. Concurrent ingests of one dataset build their version without a
lock and commit under the dataset lock on top of the LATEST they read; when another ingest committed first the
batch is checked again against the new LATEST and rebuilt, so no ingest's files are lost.

Samples without labels are unknown samples (to be predicted): they ingest like any other, with NaN labels
and ``certified: false`` in the sample table. Each file's layout, encoding, number format and any quirk
policy applied (reordering, segment merge, bad shots) is recorded in its ``sources`` entry.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import xarray as xr

from libs_pipeline.config import IngestConfig, IngestOptions
from libs_pipeline.spectra.archive import RawArchive, source_sha256, source_size
from libs_pipeline.spectra.campaign_manifest import (
    CampaignManifest,
    ManifestEntry,
    ManifestError,
    read_campaign_manifest,
)
from libs_pipeline.spectra.dataset import (
    SCHEMA_VERSION,
    label_names,
    make_spectra_dataset,
    spectrum_sample_ids,
)
from libs_pipeline.spectra.findings import (
    FileRejected,
    Finding,
    Rejection,
    grouped,
    number,
    quoted,
)
from libs_pipeline.spectra.location import Location
from libs_pipeline.spectra.quarantine import Quarantine
from libs_pipeline.spectra.readers import SHOT_COLUMNS, SpectraBlock, read_source
from libs_pipeline.spectra.schemas import (
    is_safe_id,
    label_column,
    saturated_channels,
    validate_spectra,
)
from libs_pipeline.spectra.shot_quality import SHOT_PROBLEMS, classify_shots
from libs_pipeline.spectra.store import (
    DatasetLockedError,
    ParentMovedError,
    SpectraStore,
)
from libs_pipeline.spectra.wavelength_order import normalise_channel_order

PROVENANCE_VAR = "source_sha256"
MAX_COMMIT_ATTEMPTS = 20
"""Rebuilds on a new LATEST when other ingests of the same dataset commit first (each rebuild is one more file set)."""
GRID_ATOL_NM = 1e-9
"""Two grids are the same grid when every channel agrees within this (absorbs float parsing noise only)."""


@dataclass
class IngestResult:
    """Outcome of one ingest run; ``version`` is the dataset's LATEST after the run (None: no version exists)."""

    version: str | None
    name: str
    n_spectra: int
    accepted: list[str]
    rejected: list[Rejection]
    report_path: Location | None
    changed: bool
    skipped: list[str] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)
    run_id: str = ""
    parent: str | None = None
    n_new_spectra: int = 0
    quarantine_report: Location | None = None
    uri: str | None = None
    files: list[dict] = field(default_factory=list)
    """Per accepted file: name, sha256, layout and how it was decided, encoding, number format, quirks handled."""
    batch_sha256: list[str] = field(default_factory=list)
    """sha256 of every file of this batch that is in the dataset now (accepted or already ingested)."""

    @property
    def status(self) -> str:
        """'created' (all files landed), 'unchanged' (all were already in), 'partial' (some rejected, the others
        landed now or before), 'rejected' (every file rejected)."""
        if self.rejected:
            return "partial" if self.changed or self.skipped else "rejected"
        return "created" if self.changed else "unchanged"

    @property
    def rejected_files(self) -> list[str]:
        return list(dict.fromkeys(r.file for r in self.rejected))

    def report_rows(self) -> list[dict]:
        """The validation report as table rows: one per (file, rule), with its count and first/last position."""
        keys = ("severity", "file", "rule", "count", "line", "column", "coordinate", "last_line", "last_column", "reason")
        rows = [{k: getattr(f, k) for k in keys} for f in [*self.rejected, *self.warnings]]
        return rows

    def to_dict(self) -> dict:
        return {
            "run": self.run_id,
            "name": self.name,
            "status": self.status,
            "version": self.version,
            "parent": self.parent,
            "changed": self.changed,
            "uri": self.uri,
            "n_spectra": self.n_spectra,
            "n_new_spectra": self.n_new_spectra,
            "accepted": self.accepted,
            "skipped": self.skipped,
            "rejected_files": self.rejected_files,
            "files": self.files,
            "batch_sha256": self.batch_sha256,
            "rejections": [r.to_dict() for r in self.rejected],
            "warnings": [w.to_dict() for w in self.warnings],
            "quarantine_report": str(self.quarantine_report) if self.quarantine_report else None,
        }

    def summary_markdown(self) -> str:
        lines = [
            f"# Ingest `{self.name}`: {self.status}",
            "",
            f"- run: `{self.run_id}`",
            f"- version: `{self.version}` (parent `{self.parent}`), changed: {self.changed}",
            f"- spectra in version: {self.n_spectra} ({self.n_new_spectra} new)",
            f"- files accepted: {len(self.accepted)}, skipped (already ingested): {len(self.skipped)}, "
            f"rejected: {len(self.rejected_files)}, warnings: {len(self.warnings)}",
        ]
        if self.files:
            lines += ["", "## Accepted files", ""]
            lines += [f"- {f['file']}: " + "; ".join(str(f[k]) for k in ("layout", "layout_source", "encoding",
                                                                          "number_format", "compression") if f.get(k))
                      for f in self.files]
        if self.rejected:
            lines += ["", "## Rejected", "", *[f"- {r}" for r in self.rejected]]
        if self.warnings:
            lines += ["", "## Warnings", "", *[f"- {w}" for w in self.warnings]]
        if self.quarantine_report:
            lines += ["", f"Quarantine report: `{self.quarantine_report}`"]
        return "\n".join(lines) + "\n"


@dataclass
class _Part:
    """Accepted new spectra of one source file, already on the dataset grid."""

    file: str
    path: Path
    sha256: str
    size: int
    reader: str
    intensity: np.ndarray
    sample_id: np.ndarray
    shot: np.ndarray
    labels: dict[str, np.ndarray]
    entries: list[ManifestEntry]
    info: dict


@dataclass
class _State:
    """What the dataset already holds (LATEST plus files accepted earlier in this run)."""

    grid: np.ndarray | None = None
    label_units: dict[str, str] = field(default_factory=dict)
    sample_labels: dict[str, dict[str, float]] = field(default_factory=dict)
    max_shot: dict[str, int] = field(default_factory=dict)
    known_sha: dict[str, str] = field(default_factory=dict)
    batch_sha: dict[str, str] = field(default_factory=dict)
    old: xr.Dataset | None = None
    old_manifest: dict = field(default_factory=dict)

    @classmethod
    def load(cls, store: SpectraStore, name: str, version: str | None) -> _State:
        state = cls()
        if version is None:
            return state
        old = store.open(name, version).load()
        state.old = old
        state.old_manifest = store.manifest(name, version)
        state.grid = np.asarray(old["wavelength"].values, dtype=np.float64)
        sids = spectrum_sample_ids(old)
        labels = label_names(old)
        state.label_units = {k: str(old[k].attrs["units"]) for k in labels}
        for sid in np.unique(sids):
            idx = np.flatnonzero(sids == sid)
            state.sample_labels[str(sid)] = {k: float(old[k].values[idx[0]]) for k in labels}
            state.max_shot[str(sid)] = int(np.max(old["shot"].values[idx]))
        for src in state.old_manifest.get("sources", []):
            state.known_sha[src["sha256"]] = src.get("file", "")
        if PROVENANCE_VAR in old:
            for sha in np.unique(np.asarray(old[PROVENANCE_VAR].values).astype(str)):
                state.known_sha.setdefault(str(sha), "")
        return state


def _new_run_id() -> str:
    return f"ingest-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"


def default_dataset_name(manifest_path: str | Path | Location) -> str:
    """A safe dataset name from the manifest's file stem."""
    stem = re.sub(r"[^A-Za-z0-9._+-]", "_", Path(str(manifest_path)).stem).lstrip("._+-")
    return stem[:120] or "dataset"


def _same_label(a: float, b: float) -> bool:
    return (np.isnan(a) and np.isnan(b)) or a == b


def _locate(block: SpectraBlock, file: str, failure, sample_id: np.ndarray, shot: np.ndarray) -> Finding:
    """Turn a schema failure with array positions into a finding with line/column in the source file."""
    line = column = None
    coordinate = None
    if failure.position is not None and failure.dims:
        pos = dict(zip(failure.dims, failure.position))
        s, c = pos.get("spectrum"), pos.get("wavelength")
        line, column = block.locate(s, c)
        parts = []
        if s is not None:
            parts.append(f"spectrum {s} (sample {sample_id[s]}, shot {shot[s]})")
        if c is not None:
            parts.append(f"channel {c}, wavelength {block.wavelength[c]:.6g} nm")
        coordinate = ", ".join(parts) or None
    elif failure.dims:
        coordinate = failure.variable
    return Finding(file, failure.rule, f"{failure.variable}: {failure.reason}", line=line, column=column, coordinate=coordinate)


def _grid_mismatch(block: SpectraBlock, file: str, grid: np.ndarray) -> Finding:
    wl = block.wavelength
    if wl.shape != grid.shape:
        return Finding(
            file, "grid_mismatch",
            f"{wl.size} channels {wl[0]:.6g}-{wl[-1]:.6g} nm but the dataset grid has {grid.size} channels "
            f"{grid[0]:.6g}-{grid[-1]:.6g} nm (use resample to interpolate onto the dataset grid)",
        )
    j = int(np.flatnonzero(np.abs(wl - grid) > GRID_ATOL_NM)[0])
    line, column = block.locate(None, j)
    return Finding(
        file, "grid_mismatch",
        f"wavelength {number(wl[j])} nm at channel {j} differs from the dataset grid ({number(grid[j])} nm); max difference "
        f"{np.max(np.abs(wl - grid)):.3g} nm (use resample to interpolate onto the dataset grid)",
        line=line, column=column, coordinate=f"channel {j}",
    )


def _resample(intensity: np.ndarray, wl: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Linear interpolation of every spectrum onto ``grid`` (float64 arithmetic, float32 result)."""
    out = np.empty((intensity.shape[0], grid.size), dtype=np.float32)
    for i, row in enumerate(intensity):
        out[i] = np.interp(grid, wl, row.astype(np.float64))
    return out


def _ingest_file(
    path: Path,
    file: str,
    entries: list[ManifestEntry],
    state: _State,
    options: IngestOptions,
    warnings: list[Finding],
) -> _Part | str:
    """Read, check and convert one file; returns its part, 'skipped', or raises FileRejected."""
    if not path.exists():
        raise FileRejected([Finding(file, "file_not_found", f"no such file: {path}")])
    size = source_size(path)
    limit = int(options.max_file_mb * 1024 * 1024)
    if size > limit:
        raise FileRejected(
            [Finding(file, "file_too_large", f"{size / 1048576:.3f} MB exceeds the limit of {options.max_file_mb:g} MB")]
        )
    sha = source_sha256(path)
    if sha in state.known_sha:
        return "skipped"
    if sha in state.batch_sha:
        raise FileRejected(
            [Finding(file, "duplicate_content", f"same bytes as {quoted(state.batch_sha[sha])} earlier in this manifest")]
        )
    reader = entries[0].reader
    if len({e.reader for e in entries}) > 1:
        raise FileRejected([Finding(file, "ambiguous_reader", f"entries name different readers ({', '.join(sorted({e.reader for e in entries}))})")])
    block = read_source(path, reader, file, options.max_problems_per_rule, max_bytes=limit)
    block, quirks = normalise_channel_order(block, file, options.overlap_policy)
    for rule, what in (("reordered", quirks.get("reordered")), ("overlapping_segments", quirks.get("overlapping_segments"))):
        if what:
            detail = what if isinstance(what, str) else (
                f"{what['segments']} spectrometer segments overlap at {len(what['joins'])} join(s); merged by policy "
                f"'{what['policy']}'")
            warnings.append(Finding(file, rule, detail, severity="warning"))
    n = block.intensity.shape[0]
    if entries[0].samples_from_file and block.sample_id is not None:
        entries = _entries_from_file(block, file, path, entries[0])
    by_sample = {e.sample_id: e for e in entries}

    # which sample each spectrum belongs to
    if reader == SHOT_COLUMNS or block.sample_id is None:
        if len(entries) != 1:
            rule = "ambiguous_sample" if reader == SHOT_COLUMNS else "missing_sample_column"
            raise FileRejected(
                [Finding(file, rule, f"the manifest maps this file to {len(entries)} samples "
                         f"({', '.join(sorted(by_sample))}) but the file does not say which spectrum is which")]
            )
        sample_id = np.full(n, entries[0].sample_id, dtype=object).astype(str)
    else:
        sample_id = block.sample_id
        unknown = [i for i in range(n) if sample_id[i] not in by_sample]
        if unknown:
            raise FileRejected(
                grouped(
                    [Finding(file, "unknown_sample",
                             f"sample id {quoted(sample_id[i])} is not listed in the manifest for this file",
                             line=block.locate(i, None)[0], coordinate=f"spectrum {i}") for i in unknown]
                )
            )
        for sid in sorted(set(by_sample) - set(sample_id.tolist())):
            warnings.append(Finding(file, "sample_not_in_file", f"manifest lists sample {quoted(sid)} but the file has no spectra of it",
                                    severity="warning"))

    # shot numbers: from the file, else running index per sample; unique per sample in the dataset
    if block.shot is not None:
        shot = block.shot.copy()
    else:
        shot = np.zeros(n, dtype=np.int64)
        for sid in np.unique(sample_id):
            idx = np.flatnonzero(sample_id == sid)
            shot[idx] = np.arange(idx.size)
    findings: list[Finding] = []
    offsets: dict[str, int] = {}
    for sid in np.unique(sample_id):
        idx = np.flatnonzero(sample_id == sid)
        if len(np.unique(shot[idx])) != idx.size:
            findings.append(Finding(file, "duplicate_shot", f"sample {quoted(sid)} has repeated shot numbers"))
        if sid in state.max_shot:
            offsets[str(sid)] = state.max_shot[sid] + 1 - int(shot[idx].min())
            shot[idx] += offsets[str(sid)]

    # labels: units must match the dataset; a sample already present must keep its labels
    label_set = sorted(set(state.label_units) | {k for e in entries for k in e.labels})
    for e in entries:
        for k, (value, unit) in e.labels.items():
            if state.label_units.get(k, unit) != unit:
                findings.append(Finding(file, "unit_mismatch",
                                        f"sample {quoted(e.sample_id)}: label {k} in {unit} but the dataset stores {k} in {state.label_units[k]}"))
        if e.sample_id in state.sample_labels:
            old = state.sample_labels[e.sample_id]
            new = {k: e.labels.get(k, (np.nan, ""))[0] for k in label_set}
            diff = [k for k in label_set if not _same_label(old.get(k, np.nan), new[k])]
            if diff:
                findings.append(Finding(file, "label_conflict",
                                        f"sample {quoted(e.sample_id)} is already in the dataset with different labels "
                                        f"({', '.join(f'{k}: {number(old.get(k, np.nan))} vs {number(new[k])}' for k in diff)})"))
    if findings:
        raise FileRejected(findings)
    units = {k: state.label_units.get(k) or next(e.labels[k][1] for e in entries if k in e.labels) for k in label_set}
    labels = {
        k: np.asarray([by_sample[s].labels.get(k, (np.nan, ""))[0] for s in sample_id], dtype=np.float64)
        for k in label_set
    }

    # pandera validation of the file's spectra, failures located in the file
    candidate = make_spectra_dataset(
        block.intensity, block.wavelength, sample_id, shot,
        labels={k: (labels[k], units[k]) for k in label_set},
    )
    failures = validate_spectra(candidate, options.dark_tolerance, limit=options.max_problems_per_rule)
    if failures:
        raise FileRejected(grouped([_locate(block, file, f, sample_id, shot) for f in failures]))

    # one common grid per dataset
    intensity = block.intensity
    info: dict = {}
    if state.grid is None:
        state.grid = block.wavelength.copy()
    elif block.wavelength.shape == state.grid.shape and np.allclose(block.wavelength, state.grid, rtol=0.0, atol=GRID_ATOL_NM):
        pass
    elif options.resample:
        wl, grid = block.wavelength, state.grid
        if wl[0] > grid[0] + GRID_ATOL_NM or wl[-1] < grid[-1] - GRID_ATOL_NM:
            raise FileRejected([Finding(file, "grid_coverage",
                                        f"grid {wl[0]:.6g}-{wl[-1]:.6g} nm does not cover the dataset grid "
                                        f"{grid[0]:.6g}-{grid[-1]:.6g} nm; cannot resample without extrapolating")])
        intensity = _resample(intensity, wl, grid)
        info["resampled"] = {
            "method": "linear",
            "from_channels": int(wl.size),
            "from_range_nm": [float(wl[0]), float(wl[-1])],
            "to_channels": int(grid.size),
        }
        warnings.append(Finding(file, "resampled", f"{wl.size} channels linearly resampled onto the dataset grid "
                                f"({grid.size} channels)", severity="warning"))
    else:
        raise FileRejected([_grid_mismatch(block, file, state.grid)])

    # saturation: a warning, not a rejection
    if options.saturation_level is not None:
        counts = saturated_channels(intensity, options.saturation_level, options.saturation_margin)
        info["saturated_channels"] = counts.astype(int).tolist()
        threshold = options.saturation_level * (1 - options.saturation_margin)
        saturated = [Finding(
            file, "saturation",
            f"spectrum has channels at or above {threshold:g} counts (saturation level {options.saturation_level:g})",
            line=block.locate(int(i), None)[0], column=block.locate(int(i), None)[1],
            coordinate=f"spectrum {i} (sample {sample_id[i]}, shot {shot[i]}): {int(counts[i])} channels", severity="warning",
        ) for i in np.flatnonzero(counts)]
        warnings.extend(grouped(saturated))

    # dead, flat, fully saturated shots: per bad_shot_policy
    keep = _apply_shot_policy(block, file, intensity, sample_id, shot, options, warnings, info)
    if keep is not None:
        intensity, sample_id, shot = intensity[keep], sample_id[keep], shot[keep]
        labels = {k: v[keep] for k, v in labels.items()}
        if sample_id.size == 0:
            raise FileRejected([Finding(file, "no_usable_shots", "every shot was dropped by bad_shot_policy 'drop'")])

    # commit to the running state
    state.batch_sha[sha] = file
    for k in label_set:
        state.label_units.setdefault(k, units[k])
    for sid in np.unique(sample_id):
        idx = np.flatnonzero(sample_id == sid)
        state.max_shot[str(sid)] = int(shot[idx].max())
        state.sample_labels.setdefault(str(sid), {k: float(labels[k][idx[0]]) for k in label_set})
    if offsets:
        info["shot_offset"] = offsets
    info.update(block.notes or {})
    info.update(quirks)
    return _Part(file, path, sha, size, block.reader, intensity, sample_id, shot, labels, entries, info)


def _entries_from_file(block: SpectraBlock, file: str, path: Path, template: ManifestEntry) -> list[ManifestEntry]:
    """Unknown-sample entries for the sample ids a file names itself (raw files given without a manifest)."""
    ids = list(dict.fromkeys(block.sample_id.tolist()))
    bad = [sid for sid in ids if not is_safe_id(sid)]
    if bad:
        raise FileRejected([Finding(file, "unsafe_sample_id", f"sample id {quoted(sid)} is not a safe id (letters, digits, "
                                    ". _ + -; no '/', no '..')") for sid in bad])
    return [ManifestEntry(template.row, None, sid, file, path, template.reader, matrix=template.matrix) for sid in ids]


def _apply_shot_policy(block: SpectraBlock, file: str, intensity: np.ndarray, sample_id: np.ndarray, shot: np.ndarray,
                       options: IngestOptions, warnings: list[Finding], info: dict) -> np.ndarray | None:
    """Warn about (or reject, or drop) dead/flat/saturated shots; returns the mask of shots to keep (None = all)."""
    bad = classify_shots(intensity, options.saturation_level, options.saturated_shot_fraction)
    if not bad:
        return None
    severity = "error" if options.bad_shot_policy == "reject" else "warning"
    action = {"warn": "kept", "drop": "dropped from the version (still in the raw archive)",
              "reject": "the file is rejected"}[options.bad_shot_policy]
    findings = []
    for rule, idx in bad.items():
        what = SHOT_PROBLEMS[rule].format(fraction=options.saturated_shot_fraction)
        findings += [Finding(file, rule, f"{what}; {action} (bad_shot_policy '{options.bad_shot_policy}')",
                             line=block.locate(int(i), None)[0], column=block.locate(int(i), None)[1],
                             coordinate=f"spectrum {i} (sample {sample_id[i]}, shot {shot[i]})", severity=severity)
                     for i in idx]
    if severity == "error":
        raise FileRejected(grouped(findings))
    warnings.extend(grouped(findings))
    info["bad_shots"] = {"policy": options.bad_shot_policy, **{rule: idx.astype(int).tolist() for rule, idx in bad.items()}}
    if options.bad_shot_policy == "warn":
        return None
    keep = np.ones(intensity.shape[0], dtype=bool)
    for idx in bad.values():
        keep[idx] = False
    return keep


def _merge(state: _State, parts: list[_Part], name: str) -> xr.Dataset:
    """LATEST + the new parts as one dataset in the canonical layout (new spectrum ids follow the old ones)."""
    old = state.old
    intensities = [p.intensity for p in parts]
    sids = [p.sample_id for p in parts]
    shots = [p.shot for p in parts]
    shas = [np.full(p.sample_id.size, p.sha256, dtype="<U64") for p in parts]
    n_new = sum(p.sample_id.size for p in parts)
    label_set = list(state.label_units)
    attrs = {"schema_version": SCHEMA_VERSION, "name": name}
    if old is not None:
        attrs = {**{k: v for k, v in old.attrs.items() if k != "version"}, **attrs}
        start = int(old["spectrum"].values.max()) + 1 if old.sizes["spectrum"] else 0
        ids = np.concatenate([old["spectrum"].values.astype(np.int64), np.arange(start, start + n_new, dtype=np.int64)])
        intensities.insert(0, np.asarray(old["intensity"].values, dtype=np.float32))
        sids.insert(0, spectrum_sample_ids(old))
        shots.insert(0, np.asarray(old["shot"].values, dtype=np.int64))
        old_sha = (np.asarray(old[PROVENANCE_VAR].values).astype(str) if PROVENANCE_VAR in old
                   else np.full(old.sizes["spectrum"], "", dtype="<U64"))
        shas.insert(0, old_sha)
    else:
        ids = np.arange(n_new, dtype=np.int64)
    labels = {}
    for k in label_set:
        cols = [p.labels.get(k, np.full(p.sample_id.size, np.nan)) for p in parts]
        if old is not None:
            cols.insert(0, old[k].values if k in old else np.full(old.sizes["spectrum"], np.nan))
        labels[k] = (np.concatenate(cols).astype(np.float64), state.label_units[k])
    ds = make_spectra_dataset(
        np.concatenate(intensities, axis=0),
        state.grid,
        np.concatenate(sids),
        np.concatenate(shots),
        labels=labels,
        spectrum=ids,
        attrs=attrs,
    )
    ds[PROVENANCE_VAR] = ("spectrum", np.concatenate(shas).astype(str),
                          {"role": "provenance", "description": "sha256 of the source file, archived as raw/<sha256>"})
    return ds


def _sample_table(state: _State, parts: list[_Part], ds: xr.Dataset) -> list[dict]:
    """Per-sample records for the version manifest: files, matrix, spectra count, ``<El>_<unit>`` labels."""
    rows: dict[str, dict] = {r["sample_id"]: dict(r) for r in state.old_manifest.get("samples", [])}
    for p in parts:
        for e in p.entries:
            if e.sample_id not in set(p.sample_id.tolist()):
                continue
            row = rows.setdefault(e.sample_id, {"sample_id": e.sample_id, "file": "", "matrix": e.matrix})
            files = [f for f in row["file"].split(";") if f]
            if p.file not in files:
                files.append(p.file)
            row["file"] = ";".join(files)
            for k, (value, unit) in e.labels.items():
                row[label_column(k, unit)] = value
    sids = spectrum_sample_ids(ds)
    label_cols = {label_column(k, u) for k, u in state.label_units.items()}
    for sid, row in rows.items():
        row["n_spectra"] = int(np.count_nonzero(sids == sid))
        row.setdefault("matrix", None)
        row["certified"] = any(v is not None and not np.isnan(v) for k, v in row.items() if k in label_cols)
    return list(rows.values())


def run_ingest(config: IngestConfig) -> IngestResult:
    """The ingest that the flow's task and ``libs-pipeline ingest`` both run: ``config`` names the manifest, the
    store root URL, the dataset name and the validation options."""
    return ingest_campaign(config.manifest, config.root, name=config.name, options=config.options)


def ingest_campaign(
    manifest_path: str | Path,
    store_root: str | Path,
    name: str | None = None,
    options: IngestOptions | None = None,
) -> IngestResult:
    """Ingest every file of a campaign manifest into ``<store_root>`` as dataset ``name`` (see module docstring)."""
    try:
        manifest: CampaignManifest | None = read_campaign_manifest(manifest_path)
        error = None
    except ManifestError as exc:
        manifest, error = None, exc.finding
    return ingest_manifest(manifest, manifest_path, store_root, name, options, manifest_error=error)


def ingest_manifest(
    manifest: CampaignManifest | None,
    manifest_path: str | Path | Location,
    store_root: str | Path | Location,
    name: str | None = None,
    options: IngestOptions | None = None,
    manifest_error: Finding | None = None,
    run_id: str | None = None,
) -> IngestResult:
    """Ingest an already parsed manifest (``manifest_path``: its file, a local path or a Location in the store,
    archived for provenance); see ingest_campaign."""
    options = options or IngestOptions()
    manifest_path = manifest_path if isinstance(manifest_path, Location) else Path(manifest_path)
    store = SpectraStore(store_root)
    run_id = run_id or _new_run_id()
    quarantine = Quarantine(store.root, run_id)
    rejected: list[Finding] = [manifest_error] if manifest_error else []
    ds_name = name or (manifest.name if manifest else None) or default_dataset_name(manifest_path)
    if manifest is not None and not is_safe_id(ds_name):
        rejected.append(Finding(manifest_path.name, "unsafe_name",
                                f"dataset name {quoted(ds_name)} is not a safe id (letters, digits, . _ + -; no '/', no '..')"))
        manifest = None
    if manifest is None:
        quarantine.add(manifest_path if manifest_path.is_file() else None, rejected)
        version = store.latest(ds_name) if is_safe_id(ds_name) else None
        result = IngestResult(version, ds_name, _n_spectra(store, ds_name, version), [], rejected, None, False,
                              run_id=run_id, parent=version, quarantine_report=quarantine.write_report(str(manifest_path)))
        result.report_path = _write_run_report(store, result)
        return result

    for attempt in range(1, MAX_COMMIT_ATTEMPTS + 1):
        parent = store.latest(ds_name)
        batch = _check_files(manifest, manifest_path, _State.load(store, ds_name, parent), options)
        version = parent
        if not batch.parts:
            break
        try:
            version = _commit(store, ds_name, batch, manifest_path, parent, run_id, options)
            break
        except ParentMovedError as exc:  # another ingest committed first: rebuild on its version
            if attempt == MAX_COMMIT_ATTEMPTS:
                batch.abandon(Finding(manifest_path.name, "dataset_busy", f"{exc} (gave up after {attempt} attempts)"))
                version = parent = store.latest(ds_name)
        except DatasetLockedError as exc:
            batch.abandon(Finding(manifest_path.name, "dataset_locked", str(exc)))
            version = parent = store.latest(ds_name)
            break
    for source, findings in batch.quarantined:
        quarantine.add(source, findings)
    rejected.extend(batch.rejected)
    parts = batch.parts
    if rejected:
        quarantine.add(manifest_path, [])
    result = IngestResult(
        version=version, name=ds_name, n_spectra=_n_spectra(store, ds_name, version), accepted=batch.accepted,
        rejected=rejected, report_path=None, changed=version != parent, skipped=batch.skipped, warnings=batch.warnings,
        run_id=run_id, parent=parent, n_new_spectra=sum(int(p.sample_id.size) for p in parts) if version != parent else 0,
        quarantine_report=quarantine.write_report(str(manifest_path)),
        uri=store.uri(ds_name, version) if version else None,
        files=[{"file": p.file, "sha256": p.sha256, "n_spectra": int(p.sample_id.size),
                **{k: p.info[k] for k in ("layout", "layout_source", "encoding", "number_format", "compression",
                                          "reordered", "overlapping_segments", "bad_shots") if k in p.info}}
               for p in parts] if version != parent else [],
        batch_sha256=batch.batch_sha,
    )
    result.report_path = _write_run_report(store, result)
    return result


@dataclass
class _Batch:
    """What checking a manifest's files against one LATEST gave: new parts, skipped files, findings."""

    parts: list[_Part] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    batch_sha: list[str] = field(default_factory=list)
    rejected: list[Finding] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)
    quarantined: list[tuple[Path | None, list[Finding]]] = field(default_factory=list)
    state: _State | None = None

    def abandon(self, finding: Finding) -> None:
        """The new files could not be committed (``finding`` says why): none of them is in the dataset."""
        new = {p.sha256 for p in self.parts}
        self.batch_sha = [sha for sha in self.batch_sha if sha not in new]
        self.parts, self.accepted = [], []
        self.rejected.append(finding)


def _check_files(manifest: CampaignManifest, manifest_path: Path | Location, state: _State,
                 options: IngestOptions) -> _Batch:
    """Read and check every file of ``manifest`` against the dataset ``state`` (nothing is written)."""
    batch = _Batch(state=state)
    groups: dict[object, list[ManifestEntry]] = {}
    for e in manifest.entries:
        groups.setdefault(e.path if e.path is not None else ("unsafe", e.row), []).append(e)
    for entries in groups.values():
        file = entries[0].file or manifest_path.name
        bad = [f for e in entries for f in e.findings]
        try:
            if bad:
                raise FileRejected(bad)
            outcome = _ingest_file(entries[0].path, file, entries, state, options, batch.warnings)
        except FileRejected as exc:
            findings = grouped(exc.findings)
            batch.rejected.extend(findings)
            batch.quarantined.append((entries[0].path, findings))
            continue
        if outcome == "skipped":
            batch.skipped.append(file)
            batch.batch_sha.append(source_sha256(entries[0].path))
            for e in entries:
                stored = state.sample_labels.get(e.sample_id, {})
                if any(not _same_label(stored.get(k, np.nan), v) for k, (v, _) in e.labels.items()):
                    batch.warnings.append(Finding(file, "labels_differ", f"already ingested; the manifest's labels for "
                                                  f"{quoted(e.sample_id)} differ from the stored ones, which are kept",
                                                  severity="warning"))
        else:
            batch.parts.append(outcome)
            batch.accepted.append(file)
            batch.batch_sha.append(outcome.sha256)
    return batch


def _commit(store: SpectraStore, ds_name: str, batch: _Batch, manifest_path: Path | Location, parent: str | None,
            run_id: str, options: IngestOptions) -> str:
    """Archive the new files and the manifest, merge them into ``parent`` and write the new version on top of it
    (ParentMovedError if another writer moved LATEST meanwhile; DatasetLockedError after the lock timeout)."""
    state, parts = batch.state, batch.parts
    archive = RawArchive(store.root)
    for p in parts:
        archive.put(p.path, expected_sha256=p.sha256)
    manifest_sha = archive.put(manifest_path)
    ds = _merge(state, parts, ds_name)
    sources = list(state.old_manifest.get("sources", []))
    for p in parts:
        sources.append({
            "file": p.file, "path": str(p.path), "sha256": p.sha256, "raw": f"raw/{p.sha256}",
            "size_bytes": p.size, "reader": p.reader, "n_spectra": int(p.sample_id.size),
            "samples": sorted(set(p.sample_id.tolist())), "run": run_id,
            "campaign_manifest": {"file": manifest_path.name, "sha256": manifest_sha}, **p.info,
        })
    readers = sorted({s["reader"] for s in sources})
    return store.write_version(
        ds_name, ds, sources, reader=",".join(readers),
        extra={
            "samples": _sample_table(state, parts, ds),
            "run": run_id,
            "ingest_options": options.model_dump(),
            "labels": {k: state.label_units[k] for k in state.label_units},
            "warnings": [w.to_dict() for w in batch.warnings],
        },
        chunk_spectra=options.chunk_spectra,
        expected_parent=parent,
        lock_timeout_s=options.lock_timeout_s,
    )


def _n_spectra(store: SpectraStore, name: str, version: str | None) -> int:
    if version is None:
        return 0
    return int(store.manifest(name, version)["counts"]["n_spectra"])


def _write_run_report(store: SpectraStore, result: IngestResult) -> Location:
    """``<root>/reports/<run>/ingest_report.json`` (+ ``ingest_summary.md``): what happened, file by file."""
    d = store.root / "reports" / result.run_id
    report = d / "ingest_report.json"
    report.write_json(result.to_dict())
    (d / "ingest_summary.md").write_text(result.summary_markdown())
    return report
