"""The main job end to end on the embedded default (the virtual instrument's campaign), through the flows.

simulate a reference campaign -> ingest -> recalibrate (synthesize, train, calibrate trust, compare, register,
promote) -> evaluate the champion -> simulate a fresh batch (nominal + an off-nominal scenario) -> ingest ->
predict with trust flags. Thin: every step is a flow or a one-line library call; only paths and ids move.
"""

from __future__ import annotations

import time
from pathlib import Path

from prefect import flow, get_run_logger, task

from flows.evaluate import evaluate
from flows.ingest import ingest
from flows.predict import predict_flow
from flows.recalibrate import recalibrate
from libs_pipeline.config import (
    CampaignConfig,
    DemoConfig,
    EvaluationConfig,
    IngestConfig,
    PredictionConfig,
    RecalibrationConfig,
)
from libs_pipeline.spectra.atomic import atomic_write_json
from libs_pipeline.trust.error_metrics import error_tolerance

DATASET = "virtual-aluminium"


@task(name="simulate-campaign")
def simulate_task(config: CampaignConfig, seed: int, out_dir: str, scenario: str = "nominal",
                  severity: str = "mild") -> str:
    """Run the virtual instrument and write raw files + manifest.yaml; returns the manifest path."""
    from libs_pipeline.physics.campaign import simulate_campaign, write_campaign_files
    from libs_pipeline.physics.scenarios import scenario_config

    if scenario != "nominal":
        config = scenario_config(config, scenario, severity)
    return str(write_campaign_files(simulate_campaign(config, seed=seed), out_dir))


@task(name="score-fresh-batch")
def score_batch_task(store: str, name: str, version: str, spectra_table: str, tolerance: float | None = None) -> dict:
    """RMSEP of the flagged and of the kept predictions of a fresh batch against its known (simulated) labels;
    with ``tolerance`` (wrong = |error| above it) also how many wrong predictions were flagged and kept."""
    import numpy as np
    import pandas as pd

    from libs_pipeline.spectra.store import SpectraStore
    from libs_pipeline.trust.error_metrics import flagged_vs_kept

    table = pd.read_csv(spectra_table) if spectra_table.endswith(".csv") else pd.read_parquet(spectra_table)
    ds = SpectraStore(store).open(name, version)
    analyte = str(table["analyte"].iloc[0])
    if list(np.asarray(ds["sample_id"].values).astype(str)) != list(table["sample_id"].astype(str)):
        raise ValueError(f"{spectra_table}: rows do not follow the spectra of {name}@{version}")
    errors = table["concentration"].to_numpy(dtype=float) - np.asarray(ds[analyte].values, dtype=float)
    return {**flagged_vs_kept(errors, table["flag"].to_numpy(dtype=bool), tolerance), "tolerance": tolerance}


def scored_model(outcome: dict) -> dict:
    """Which registered model the demo evaluates and scores fresh batches with, from the recalibration outcome.

    The champion when there is one. When the first challenger was refused (no champion at all, e.g. its synthetic
    spectra failed the realism report), the registered challenger, by version id and labelled as not promoted,
    so the rest of the demo still shows what it would predict and flag; a lab would not serve it. ``rmsep`` is
    the held-out RMSEP of the scored model in this run (None if it was not measured here): the batches'
    "wrong" tolerance is twice it.
    """
    metrics = outcome.get("metrics") or {}

    def rmsep_of(role: str) -> float | None:
        return (metrics.get(role) or {}).get("rmsep")

    if outcome.get("champion_after"):
        role_rmsep = rmsep_of("challenger") if outcome.get("status") == "promoted" else rmsep_of("champion")
        return {"model": "champion", "version": outcome["champion_after"], "path": outcome.get("champion_path"),
                "role": "champion", "rmsep": role_rmsep}
    if outcome.get("challenger"):
        return {"model": outcome["challenger"], "version": outcome["challenger"],
                "path": outcome.get("challenger_path"), "rmsep": rmsep_of("challenger"),
                "role": f"challenger, not promoted ({outcome.get('reason')}); no champion yet"}
    raise RuntimeError(f"recalibration ({outcome.get('status')}: {outcome.get('reason') or outcome.get('error')}) "
                       "registered no model to evaluate")


@flow(name="demo", log_prints=True)
def demo(config: DemoConfig | None = None) -> dict:
    """Run the whole main job under ``config.out``; returns a summary dict (paths, versions, metrics, trust)."""
    config = config or DemoConfig()
    seed, scenario, severity = config.seed, config.scenario, config.severity
    logger = get_run_logger()
    started = time.perf_counter()
    root = Path(config.out).resolve()
    store = str(root / "store")
    reference = CampaignConfig(name=DATASET, n_samples=config.n_samples, n_shots=config.n_shots,
                               n_channels=config.n_channels)

    manifest = simulate_task(reference, seed, str(root / "campaign"))
    ingested = ingest(IngestConfig(manifest=manifest, root=store, name=DATASET))
    logger.info("reference campaign ingested: %s version %s", DATASET, ingested["version"])

    outcome = recalibrate(RecalibrationConfig(
        root=store, dataset=DATASET, seed=seed,
        synthesis={"per_sample": config.per_sample, "chunk_size": 1024},
        training={"max_steps": config.max_steps, "val_fraction": 0.3, "eval_every": 25, "patience": 12, "num_threads": 1, "progress_bar": False},
    ))
    heldout = outcome.get("heldout_samples")
    if not heldout:
        raise RuntimeError(f"recalibration ({outcome.get('status')}) names no held-out samples to evaluate on")
    scored = scored_model(outcome)
    if scored["role"] != "champion":
        logger.warning("no champion: the demo scores the registered challenger %s (%s)", scored["version"],
                       scored["role"])
    report = evaluate(EvaluationConfig(dataset_uri=f"{store}#{DATASET}@{ingested['version']}", root=store,
                                       model_dir=scored["path"], test_samples=heldout, seed=seed))

    # wrong = |error| > 2 x the scored model's held-out RMSEP (known before any fresh batch is measured)
    tolerance = error_tolerance(scored["rmsep"]) if scored["rmsep"] else None
    batch = reference.model_copy(update={"name": "fresh-batch", "n_samples": config.batch_samples,
                                         "n_shots": config.batch_shots})
    predictions = {}
    for label, (scen, sev) in {"nominal": ("nominal", "mild"), f"{scenario}-{severity}": (scenario, severity)}.items():
        name = f"fresh-batch-{label}"
        batch_manifest = simulate_task(batch, seed + 1000, str(root / "batches" / label), scen, sev)
        version = ingest(IngestConfig(manifest=batch_manifest, root=store, name=name))["version"]
        predictions[label] = predict_flow(PredictionConfig(
            model=scored["model"], spectra=f"{store}#{name}@{version}", out=str(root / "predictions" / f"{label}.csv"),
            root=store, name=DATASET,
        ))
        predictions[label]["flagged_vs_kept"] = score_batch_task(store, name, version,
                                                                 predictions[label]["spectra_table"], tolerance)
    summary = {
        "out": str(root),
        "store": store,
        "dataset": {"name": DATASET, "version": ingested["version"], "uri": ingested["uri"]},
        "recalibration": {k: outcome.get(k) for k in ("status", "reason", "challenger", "champion_after",
                                                      "champion_path", "heldout_samples", "report_dir")},
        "scored_model": {k: scored[k] for k in ("version", "role", "rmsep")},
        "metrics": outcome.get("metrics"),
        "synthetic": outcome.get("synthetic"),
        "evaluation_report": report,
        "predictions": predictions,
        "seconds": round(time.perf_counter() - started, 1),
    }
    atomic_write_json(root / "demo_summary.json", summary)
    return summary
