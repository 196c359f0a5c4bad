"""One synthesis described by a ``SynthesisConfig``: the steps the synthesize flow runs as tasks and
``libs-pipeline synthesize`` runs in a row (prepare, write the chunks, publish, realism report)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from libs_pipeline.config import SynthesisConfig
from libs_pipeline.spectra.location import open_location
from libs_pipeline.synth.generate import (
    Progress,
    cluster_address,
    prepare_synthesis,
    run_chunks,
)
from libs_pipeline.synth.realism import RealismReport, report_store
from libs_pipeline.synth.synthetic_store import SynthesisJob

#: SynthesisConfig fields that shape the noise model and the plan (``prepare_synthesis`` options).
PREPARE_OPTIONS = (
    "shard_chunks", "name", "detector", "shot_factor", "saturation", "instrument_fwhm_nm", "max_shape_modes",
    "interpolate_between", "interpolation_analyte",
)


def prepare_from_config(config: SynthesisConfig) -> SynthesisJob:
    """Fit the noise model and write the store template (reuses an interrupted run's work)."""
    options = {k: getattr(config, k) for k in PREPARE_OPTIONS}
    return prepare_synthesis(config.dataset_uri, config.out_uri, config.per_sample, config.seed, config.chunk_size,
                             **options)


def write_chunks(job: SynthesisJob | str | Path, config: SynthesisConfig, progress: Progress | None = None,
                 in_process: bool = False) -> int:
    """Every unwritten shard, on the Dask cluster ``config`` names (``dask_address``, else a LocalCluster of
    ``n_workers``) or, with ``in_process``, serially here."""
    if in_process:
        return run_chunks(job, None, progress)
    with cluster_address(config.dask_address, config.n_workers) as address:
        return run_chunks(job, address, progress)


def realism_from_config(config: SynthesisConfig, synthetic_uri: str | Path) -> tuple[RealismReport, dict[str, Path]]:
    """The realism report of the finished store against ``config.dataset_uri`` (analyte, lines, size and folder
    from ``config``). For a store on an object store (and no ``report_dir``) the report is written to a local
    temporary folder (the returned paths) and copied to ``<store>.realism/`` beside the store."""
    store = open_location(synthetic_uri, check=False)
    out_dir = config.report_dir
    if out_dir is None and not store.is_local:
        out_dir = tempfile.mkdtemp(prefix="realism-")
    report, paths = report_store(
        config.dataset_uri,
        synthetic_uri,
        analyte=config.analyte,
        lines=config.lines,
        max_synthetic_per_sample=config.realism_max_per_sample,
        out_dir=out_dir,
    )
    if config.report_dir is None and not store.is_local:
        (store.parent / f"{store.name.removesuffix('.zarr')}.realism").put_directory(out_dir)
    return report, paths


__all__ = ["PREPARE_OPTIONS", "prepare_from_config", "realism_from_config", "write_chunks"]
