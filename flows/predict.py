"""Predict flow: spectra -> concentration, predictive uncertainty, trust score, flag and reason (thin wiring).

Tasks pass paths and ids only; the work is ``libs_pipeline.prediction.run_prediction``.
Publishes the per-sample table (and the flagged spectra) as Prefect table artifacts.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact

from flows.artifacts import artifact_key
from libs_pipeline.config import PredictionConfig

ARTIFACT_ROWS = 1000


@task(retries=2, retry_delay_seconds=2)
def resolve_model(model: str, registry_root: str | None, name: str | None) -> str:
    """Model directory of a path or a registered version/alias (files verified against the manifest)."""
    from libs_pipeline.prediction import resolve_model_dir

    return str(resolve_model_dir(model, registry_root, name))


@task
def predict_spectra(model_dir: str, spectra: str, out: str, mc_samples: int, seed: int, resample: bool) -> dict:
    """Run the prediction with trust and write both tables; returns their paths and a summary."""
    from libs_pipeline.prediction import run_prediction

    run = run_prediction(model_dir, spectra, out, mc_samples=mc_samples, seed=seed, resample=resample)
    s, p = run.tables.spectra, run.tables.samples
    return {
        "model_dir": str(run.model_dir),
        "spectra_table": str(run.spectra_path),
        "samples_table": str(run.samples_path),
        "n_spectra": int(len(s)),
        "n_samples": int(len(p)),
        "spectra_flagged": int(s["flag"].sum()),
        "samples_flagged": int(p["flag"].sum()),
    }


@task
def publish_tables(summary: dict, key: str) -> list[str]:
    """Table artifacts: every sample, and the flagged spectra (first rows); returns the artifact ids."""
    from libs_pipeline.prediction import read_table

    samples = read_table(summary["samples_table"])  # local or on the store (s3://...): read through Location
    spectra = read_table(summary["spectra_table"])
    cols = ["spectrum", "sample_id", "shot", "concentration", "uncertainty", "trust_score", "flag", "reason"]
    flagged = spectra.loc[spectra["flag"].astype(bool), cols].head(ARTIFACT_ROWS)
    ids = [
        create_table_artifact(
            key=f"{key}-samples",
            table=samples.fillna("").to_dict(orient="records"),
            description=f"Per-sample predictions with trust ({summary['samples_flagged']}/{summary['n_samples']} flagged)",
        ),
        create_table_artifact(
            key=f"{key}-flagged-spectra",
            table=flagged.fillna("").to_dict(orient="records"),
            description=(
                f"Flagged spectra ({summary['spectra_flagged']}/{summary['n_spectra']}; first {ARTIFACT_ROWS} shown); "
                f"full table: {summary['spectra_table']}"
            ),
        ),
    ]
    return [str(i) for i in ids]


@flow(name="predict")
def predict_flow(config: PredictionConfig) -> dict:
    """Predict ``config.spectra`` (path or store URI) with ``config.model`` (directory, or version/alias of
    ``config.name`` in the registry at ``config.root``); writes ``config.out`` (.csv/.parquet) and
    ``<stem>.samples<suffix>``."""
    logger = get_run_logger()
    model_dir = resolve_model(config.model, config.root, config.name)
    summary = predict_spectra(model_dir, config.spectra, config.out, config.mc_samples, config.seed, config.resample)
    summary["artifacts"] = publish_tables(summary, artifact_key("predictions", config.name or Path(model_dir).name))
    logger.info(
        "predicted %d spectra of %d samples: %d spectra and %d samples flagged; tables %s, %s",
        summary["n_spectra"], summary["n_samples"], summary["spectra_flagged"], summary["samples_flagged"],
        summary["spectra_table"], summary["samples_table"],
    )
    return summary
