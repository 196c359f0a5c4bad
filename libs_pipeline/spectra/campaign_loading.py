"""Read a whole campaign manifest into one in-memory spectra dataset, through the same validated ingest path.

For benchmarks, tests and notebooks that need the spectra of a campaign (e.g. the real OREAS table) without
keeping a store: the files are ingested into a temporary store (same readers, checks and layout as
``libs-pipeline ingest``), loaded into memory, and the temporary store is removed.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import xarray as xr

from libs_pipeline.config import IngestOptions
from libs_pipeline.spectra.ingest import ingest_campaign
from libs_pipeline.spectra.store import SpectraStore


def load_campaign(manifest: str | Path, name: str = "campaign", options: IngestOptions | None = None) -> xr.Dataset:
    """Every accepted spectrum of ``manifest`` as one loaded dataset; a file that ingest rejects is an error."""
    with tempfile.TemporaryDirectory(prefix="libs-campaign-") as tmp:
        result = ingest_campaign(manifest, tmp, name=name, options=options)
        if result.rejected:
            first = result.rejected[0]
            raise ValueError(
                f"{manifest}: {len(result.rejected)} file(s) rejected by ingest, first: "
                f"{getattr(first, 'file', '')}: {getattr(first, 'reason', first)}"
            )
        return SpectraStore(tmp).open(name).load()


__all__ = ["load_campaign"]
