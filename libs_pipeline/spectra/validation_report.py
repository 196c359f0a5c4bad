"""The validation report of one stored spectra version (markdown): counts, grid, ingest warnings, per-sample
table and a fresh schema validation of the stored data."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from libs_pipeline.spectra.schemas import validate_spectra
from libs_pipeline.spectra.store import SpectraStore


def data_validation_report(root: str | Path, dataset: str, version: str) -> str:
    """Markdown validation report of one spectra version: counts, grid, per-sample table, ingest warnings,
    and a fresh schema validation of the stored data."""
    store = SpectraStore(root)
    manifest = store.manifest(dataset, version)
    ds = store.open(dataset, version)
    failures = validate_spectra(ds, dark_tolerance=float("inf"))
    counts = manifest.get("counts", {})
    wl = manifest.get("wavelength_nm", {})
    lines = [
        f"# Data version `{dataset}@{version}`",
        "",
        f"- created: {manifest.get('created')}, parent: `{manifest.get('parent')}`, reader: {manifest.get('reader')}",
        f"- {counts.get('n_spectra')} spectra of {counts.get('n_samples')} samples, "
        f"{counts.get('n_channels')} channels "
        f"({wl.get('min')}-{wl.get('max')} nm), {counts.get('n_sources')} source file(s)",
        f"- schema validation of the stored data: "
        + ("passed" if not failures else f"{len(failures)} failure(s)"),
    ]
    for f in failures[:20]:
        lines.append(f"  - {f.reason}")
    warnings = manifest.get("warnings") or []
    lines += ["", f"## Ingest warnings ({len(warnings)})", ""]
    lines += [f"- {w.get('file', '')}: {w.get('rule', '')}: {w.get('reason', '')}" for w in warnings[:50]] or ["none"]
    samples = manifest.get("samples") or []
    if samples:
        frame = pd.DataFrame.from_records(samples)
        cols = [c for c in frame.columns if c not in ("file",)]
        lines += ["", "## Samples", "", "| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
        lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in frame[cols].to_dict("records")]
    return "\n".join(lines) + "\n"


__all__ = ["data_validation_report"]
