"""Drop-folder flow: a lab's daily batch of raw files (unknown samples) -> ingested -> champion predictions.

Thin: ``libs_pipeline.spectra.unknown_samples`` ingests (archived, validated, versioned) and
``libs_pipeline.prediction.run_prediction`` predicts; tasks pass paths, version ids and sha256s only.
Files already ingested by an earlier run are not predicted again (``only_new``).
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.states import Completed

from flows.ingest import publish_task
from flows.artifacts import artifact_key
from flows.predict import publish_tables, resolve_model
from libs_pipeline.config import DropFolderConfig, IngestOptions
from libs_pipeline.spectra.location import open_location


@task(name="ingest-drop-folder")
def ingest_folder_task(folder: str, store: str, dataset: str | None, options: IngestOptions) -> dict:
    """Ingest every raw file of ``folder``; returns the version, the run id and the sha256s to predict."""
    from libs_pipeline.spectra.unknown_samples import ingest_new_files

    if not Path(folder).is_dir():
        raise FileNotFoundError(f"drop folder {folder} does not exist (or is not a folder)")
    try:
        result = ingest_new_files([folder], store, name=dataset, options=options).result
    except ValueError:  # no spectra files in the folder
        get_run_logger().info("%s holds no spectra files", folder)
        return {"name": dataset, "status": "empty", "version": None, "run": None, "report_path": None,
                "new_sha256": [], "batch_sha256": [], "rejected_files": []}
    get_run_logger().info("%s: %s (%d accepted, %d already ingested, %d rejected file(s))", result.name, result.status,
                          len(result.accepted), len(result.skipped), len(result.rejected_files))
    return {
        "name": result.name, "status": result.status, "version": result.version, "run": result.run_id,
        "report_path": str(result.report_path), "new_sha256": [f["sha256"] for f in result.files],
        "batch_sha256": result.batch_sha256, "rejected_files": result.rejected_files,
    }


@task(name="predict-batch")
def predict_batch_task(model_dir: str, store: str, ingest: dict, sha256s: list[str], out: str, mc_samples: int,
                       seed: int, resample: bool) -> dict:
    """Predict the spectra of ``sha256s`` in the ingested version; returns table paths and flag counts."""
    from libs_pipeline.spectra.unknown_samples import spectra_of_sources
    from libs_pipeline.prediction import run_prediction

    ds = spectra_of_sources(store, ingest["name"], ingest["version"], sha256s)
    run = run_prediction(model_dir, ds, out, mc_samples=mc_samples, seed=seed, resample=resample)
    s, p = run.tables.spectra, run.tables.samples
    return {
        "model_dir": str(run.model_dir), "spectra_table": str(run.spectra_path), "samples_table": str(run.samples_path),
        "n_spectra": int(len(s)), "n_samples": int(len(p)),
        "spectra_flagged": int(s["flag"].sum()), "samples_flagged": int(p["flag"].sum()),
    }


@flow(name="predict-drop-folder")
def predict_drop_folder(config: DropFolderConfig) -> dict:
    """Ingest the raw files in ``config.folder`` into the store at ``config.root`` (dataset ``config.dataset``,
    default 'unknown-samples') and predict them with ``config.model`` of ``config.name`` from the same store's
    registry; tables under ``<root>/predictions/<run>/``. Ends 'Partial' when some files were rejected, Failed when
    all were."""
    logger = get_run_logger()
    store, folder = config.root, config.folder
    options = config.options.model_copy(update={"resample": config.options.resample or config.resample})
    ingest = ingest_folder_task(folder, store, config.dataset, options)
    if ingest["report_path"]:
        publish_task(ingest["report_path"])
    if ingest["status"] == "rejected":
        raise RuntimeError(f"every new file in {folder} was rejected; see {ingest['report_path']}")
    sha256s = ingest["new_sha256"] if config.only_new else ingest["batch_sha256"]
    summary: dict = {"ingest": ingest, "predictions": None}
    if not sha256s:
        logger.info("no new files in %s: nothing to predict", folder)
        return summary
    model_dir = resolve_model(config.model, store, config.name)
    out = open_location(store, check=False).join("predictions", ingest["run"], "predictions.csv").url
    prediction = predict_batch_task(model_dir, store, ingest, sha256s, out, config.mc_samples, config.seed,
                                    config.resample)
    prediction["artifacts"] = publish_tables(prediction, artifact_key("drop-folder", config.name))
    summary["predictions"] = prediction
    logger.info("predicted %d spectra of %d samples (%d samples flagged): %s", prediction["n_spectra"],
                prediction["n_samples"], prediction["samples_flagged"], prediction["samples_table"])
    if ingest["status"] == "partial":
        return Completed(name="Partial", message=f"rejected: {', '.join(ingest['rejected_files'])}", data=summary)
    return summary
