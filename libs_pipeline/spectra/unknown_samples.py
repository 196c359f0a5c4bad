"""Raw files of unknown samples (a folder, a list of files, or a manifest without labels) -> ingested batch.

Every file is ingested into the store first (archived, validated, versioned), so that each spectrum that
gets a prediction has a recorded provenance; then the batch's spectra are selected from the new version.
Raw files given without a manifest are named by their file stem, or by the sample column they contain.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr
import yaml

from libs_pipeline.config import IngestOptions
from libs_pipeline.spectra.campaign_manifest import CampaignManifest, ManifestEntry
from libs_pipeline.spectra.ingest import (
    PROVENANCE_VAR,
    IngestResult,
    _new_run_id,
    ingest_campaign,
    ingest_manifest,
)
from libs_pipeline.spectra.location import Location
from libs_pipeline.spectra.readers import reader_for
from libs_pipeline.spectra.store import SpectraStore

DEFAULT_DATASET = "unknown-samples"
NOT_SPECTRA_SUFFIXES = (".md", ".json", ".yaml", ".yml", ".pdf", ".png", ".jpg", ".xlsx", ".docx")
"""Files in a drop folder that are never spectra (notes, manifests, pictures)."""


@dataclass
class IngestedBatch:
    """What one batch of new files became: the ingest result and the batch's spectra (None: nothing landed)."""

    result: IngestResult
    spectra: xr.Dataset | None


def is_campaign_manifest(path: Path) -> bool:
    """True for a YAML manifest or a CSV whose header has a ``file`` and a ``sample``/``sample_id`` column."""
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        return True
    if suffix not in (".csv", ".tsv", ".txt") or not path.is_file():
        return False
    with path.open("rb") as fh:
        head = fh.read(4096).decode("utf-8", errors="replace").lstrip("\ufeff")
    first = next((ln for ln in head.splitlines() if ln.strip()), "")
    cells = {c.strip().lower() for c in re.split(r"[,;\t]", first)}
    return "file" in cells and bool({"sample", "sample_id"} & cells)


def spectra_files(inputs: list[str | Path]) -> list[Path]:
    """The raw files named by ``inputs``: files as given; for a folder, its visible regular files, sorted."""
    out: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir() and item.suffix.lower() != ".zarr":
            for p in sorted(item.iterdir()):
                if p.name.startswith(".") or not (p.is_file() or p.suffix.lower() == ".zarr"):
                    continue
                if p.suffix.lower() in NOT_SPECTRA_SUFFIXES or is_campaign_manifest(p):
                    continue
                out.append(p)
        else:
            out.append(item)
    return out


def sample_id_for(path: Path) -> str:
    """A safe sample id from a file name: ``OREAS45e_7.txt`` -> ``OREAS45e_7`` (``.gz`` is dropped too)."""
    name = path.name[:-3] if path.name.lower().endswith(".gz") else path.name
    stem = re.sub(r"[^A-Za-z0-9._+-]", "_", Path(name).stem).lstrip("._+-")
    return stem[:120] or "sample"


def manifest_for_files(files: list[Path], record: Location) -> CampaignManifest:
    """An in-memory manifest of unknown samples for raw files; a YAML copy is written to ``record`` (in the store)."""
    entries = []
    for i, path in enumerate(files):
        resolved = path.resolve()  # named by the user: no folder to stay inside
        entries.append(ManifestEntry(i, None, sample_id_for(path), path.name, resolved, reader_for(path),
                                     samples_from_file=True))
    doc = {"description": "generated for raw files given without a manifest; samples unknown (no labels)",
           "samples": [{"sample_id": e.sample_id, "file": str(e.path)} for e in entries]}
    record.write_text(yaml.safe_dump(doc, sort_keys=False))
    return CampaignManifest(record, None, "generated", entries)


def spectra_of_sources(store_root: str | Path | Location, name: str, version: str, sha256s: list[str]) -> xr.Dataset | None:
    """The spectra of the source files ``sha256s`` in one dataset version (None when it holds none of them)."""
    ds = SpectraStore(store_root).open(name, version).load()
    mask = np.isin(np.asarray(ds[PROVENANCE_VAR].values).astype(str), list(sha256s))
    if not mask.any():
        return None
    return ds.isel(spectrum=np.flatnonzero(mask))


def batch_spectra(store_root: str | Path | Location, result: IngestResult) -> xr.Dataset | None:
    """The spectra of this batch's files (accepted now or ingested before) in the dataset's current version."""
    if result.version is None or not result.batch_sha256:
        return None
    return spectra_of_sources(store_root, result.name, result.version, result.batch_sha256)


def ingest_new_files(
    inputs: list[str | Path],
    store_root: str | Path | Location,
    name: str | None = None,
    options: IngestOptions | None = None,
) -> IngestedBatch:
    """Ingest a manifest (one input) or raw files / folders (of unknown samples) and select the batch's spectra.

    ``store_root`` is a store URL; the inputs are local files. Raw files given without a manifest get a generated
    manifest, recorded as ``<root>/incoming/<run>/manifest.yaml``."""
    store = SpectraStore(store_root)  # a bad or unreachable root fails here, before anything is written
    paths = [Path(p) for p in inputs]
    manifests = [p for p in paths if p.is_file() and is_campaign_manifest(p)]
    if manifests and len(paths) > 1:
        raise ValueError(f"{manifests[0]} is a campaign manifest: give it alone (it names its files), or give raw files only")
    if manifests:
        result = ingest_campaign(paths[0], store.root, name=name, options=options)
    else:
        files = spectra_files(paths)
        if not files:
            raise ValueError(f"no spectra files in {', '.join(str(p) for p in paths)}")
        run_id = _new_run_id()
        record = store.root / "incoming" / run_id / "manifest.yaml"
        manifest = manifest_for_files(files, record)
        result = ingest_manifest(manifest, record, store.root, name or DEFAULT_DATASET, options, run_id=run_id)
    return IngestedBatch(result, batch_spectra(store.root, result))
