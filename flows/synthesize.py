"""Synthesize flow: measured spectra -> synthetic store (Dask, resumable) -> realism report artifact.

Thin: ``libs_pipeline.synth`` does the work. The shard tasks run on a Dask cluster through
``distributed.Client(address)`` inside one Prefect task (an existing cluster via ``dask_address``, or a
LocalCluster of ``n_workers`` processes); tasks pass only URLs and shard indices, never arrays or credentials.
``out_uri`` may be any store root URL (local, ``file://``, ``s3://``).
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.artifacts import ProgressArtifact, artifact_key, figure_markdown
from libs_pipeline.config import SynthesisConfig
from libs_pipeline.spectra.location import open_location
from libs_pipeline.synth.generate import cluster_address, finalize_synthesis, run_chunks
from libs_pipeline.synth.synthesis_run import prepare_from_config, realism_from_config

REALISM_KEY = "synthetic-realism-{id}"  # one artifact key per synthetic store id
REALISM_TABLE_KEY = "synthetic-realism-table-{id}"


@task(name="prepare-synthesis", retries=1, retry_delay_seconds=2)
def prepare_task(config: SynthesisConfig) -> dict[str, Any]:
    """Fit the noise model, write the store template; returns URLs (reuses an interrupted run's work)."""
    job = prepare_from_config(config)
    complete = job.complete()
    pending = 0 if complete else len(job.pending_shards())
    get_run_logger().info(
        "synthetic store %s: %d spectra in %d shards of %d chunks (%s)", job.store_url, job.plan.n_spectra,
        job.plan.n_shards, job.plan.shard_chunks, "already complete" if complete else f"{pending} shard(s) to write",
    )
    return {"work_dir": job.work_url, "final": job.store_url, "complete": complete}


@task(name="write-chunks", retries=1, retry_delay_seconds=5)
def chunks_task(work_dir: str, dask_address: str | None, n_workers: int) -> int:
    """Run every unwritten shard on the cluster (a retry resumes: finished shards are kept); live progress in the
    artifact ``synthesis-progress-<store>``."""
    logger = get_run_logger()
    step = {"next": 0.0}
    store_id = open_location(work_dir, check=False).name.removeprefix(".").removesuffix(".work")  # .<id>.work
    artifact = ProgressArtifact(artifact_key("synthesis-progress", store_id),
                                f"synthetic shards written ({work_dir})")

    def progress(done: int, total: int) -> None:
        artifact(done, total)
        if total and done / total >= step["next"]:
            logger.info("shards written: %d / %d", done, total)
            step["next"] = done / total + 0.1

    with cluster_address(dask_address, n_workers) as address:
        logger.info("Dask scheduler %s%s", address, "" if dask_address else f" (LocalCluster, {n_workers} workers)")
        return run_chunks(work_dir, address, progress)


@task(name="publish-synthetic")
def finalize_task(work_dir: str) -> str:
    return finalize_synthesis(work_dir)


@task(name="realism-report", retries=1, retry_delay_seconds=2)
def realism_task(config: SynthesisConfig, synthetic_uri: str) -> dict[str, Any]:
    """Compare synthetic with measured spectra; publish the report as Prefect artifacts (markdown + table)."""
    report, paths = realism_from_config(config, synthetic_uri)
    store_id = open_location(synthetic_uri, check=False).name.removesuffix(".zarr")
    create_markdown_artifact(
        markdown=report.to_markdown() + "\n\n" + figure_markdown(paths["figure"], "synthetic vs measured spectra"),
        key=REALISM_KEY.format(id=store_id),
        description=f"Realism of {synthetic_uri}: {'passed' if report.passed else 'FAILED'}",
    )
    table = report.per_sample.drop(columns=["failed_checks"]).round(6).to_dict(orient="records")
    create_table_artifact(table=table, key=REALISM_TABLE_KEY.format(id=store_id), description=f"Per-sample realism of {synthetic_uri}")
    if not report.passed:
        get_run_logger().warning("realism report FAILED: %s", "; ".join(report.failures))
    return {"passed": report.passed, "failures": report.failures, **{k: str(v) for k, v in paths.items()}}


@flow(name="synthesize", log_prints=True)
def synthesize(config: SynthesisConfig) -> dict[str, Any]:
    """Generate ``config.per_sample`` synthetic spectra per sample of ``config.dataset_uri`` under
    ``config.out_uri``; returns the store's uri and id and the realism report (None when ``realism`` is off)."""
    job = prepare_task(config)
    if not job["complete"]:
        chunks_task(job["work_dir"], config.dask_address, config.n_workers)
    uri = finalize_task(job["work_dir"]) if not job["complete"] else job["final"]
    result: dict[str, Any] = {"uri": uri, "id": open_location(uri, check=False).name.removesuffix(".zarr"),
                              "realism": None}
    if config.realism:
        result["realism"] = realism_task(config, uri)
    return result

