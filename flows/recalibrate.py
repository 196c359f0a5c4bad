"""Recalibrate flow: latest spectra version -> (skip | split -> synthesize subflow -> train subflow -> trust
calibration -> compare with the champion on the same held-out samples -> promote or keep) -> publish the decision.

Thin: ``libs_pipeline.registry`` (registry, decisions, challenger steps) and the synthesize / train flows do the
work; tasks pass only paths, version ids and small dicts. A failure anywhere leaves the champion untouched
(promotion is the last step) and fails the run with the step and the error in its message. Run it from a
deployment with concurrency_limit 1 so that runs never overlap.
"""

from __future__ import annotations

import datetime as dt
import shutil
import time
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run

from libs_pipeline.config import DEFAULT_SYNTHETIC_PER_SAMPLE, RecalibrationConfig, TrainingConfig
from libs_pipeline.evaluation.report import artifact_key
from libs_pipeline.registry import ModelRegistry, challenger, decide_promotion, decide_retraining
from libs_pipeline.registry.challenger import CHALLENGER, CHAMPION, TrainingSplit
from libs_pipeline.registry.recalibration import (
    metrics_rows,
    recalibration_config_hash,
    summary_markdown,
    training_manifest,
)
from libs_pipeline.recalibration import (
    best_on_heldout,
    choose_protocol,
    decide_loso_promotion,
    labelled_spectra,
    run_loso_recalibration,
    serve_heldout_baseline,
)
from libs_pipeline.spectra.atomic import atomic_write_text
from libs_pipeline.spectra.dataset import resolve_analyte
from libs_pipeline.spectra.store import SpectraStore


def transient_io_error(task, task_run, state) -> bool:
    """Retry condition: only I/O errors that may pass (busy lock, flaky disk/network), not missing files or bad
    input, which would fail the same way again."""
    exc = state.result(raise_on_failure=False)
    permanent = (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)
    return isinstance(exc, OSError) and not isinstance(exc, permanent)


IO_RETRIES = {"retries": 2, "retry_delay_seconds": 2, "retry_condition_fn": transient_io_error}


class RecalibrationError(RuntimeError):
    """A recalibration step failed; the message names the step, the error and the champion afterwards."""


@task(name="find-latest-spectra", **IO_RETRIES)
def find_latest_spectra(root: str, dataset: str) -> str:
    """The LATEST version id of ``dataset`` in the store at ``root``."""
    version = SpectraStore(root).latest(dataset)
    if version is None:
        raise FileNotFoundError(f"no spectra version of dataset {dataset!r} under {root}/spectra (run ingest first)")
    return version


@task(name="read-champion", **IO_RETRIES)
def read_champion(root: str, name: str) -> dict | None:
    """The champion's version, verified directory and manifest (None when there is no champion)."""
    registry = ModelRegistry(root)
    if CHAMPION not in registry.aliases(name):
        return None
    path = registry.path(name, CHAMPION)  # verifies every file's sha256: a corrupt champion fails the run here
    manifest = registry.manifest(name, CHAMPION)
    return {"version": manifest["version"], "path": str(path), "manifest": manifest}


@task(name="validate-data-version", **IO_RETRIES)
def validate_data_version(root: str, dataset: str, version: str, report_dir: str) -> str:
    """Write the validation report of the data version to ``report_dir``; returns its path."""
    path = Path(report_dir) / "data_validation.md"
    atomic_write_text(path, challenger.data_validation_report(root, dataset, version))
    return str(path)


@task(name="split-spectra", **IO_RETRIES)
def split_spectra(config: RecalibrationConfig, version: str) -> dict:
    """Hold out samples and store the training part; returns the TrainingSplit as a dict."""
    split = challenger.write_training_split(
        config.root, config.dataset, version, config.heldout_fraction, config.split_seed, config.analyte
    )
    return split.to_dict()


def run_synthesis_flow(config: RecalibrationConfig, split: dict) -> dict | None:
    """The synthesize flow (subflow) on the training split: returns its result (uri, realism) or None when off."""
    options = dict(config.synthesis)
    per_sample = int(options.pop("per_sample", DEFAULT_SYNTHETIC_PER_SAMPLE))
    if per_sample == 0:
        return None
    from flows.synthesize import synthesize

    chunk_size = int(options.pop("chunk_size", 1024))
    n_workers = int(options.pop("n_workers", 2))
    return synthesize(
        dataset_uri=split["train"]["uri"], out_uri=config.root, per_sample=per_sample, seed=config.seed,
        chunk_size=chunk_size, dask_address=config.dask_address, n_workers=n_workers, options=options,
    )


def run_training_flow(training: TrainingConfig, model_dir: str) -> str:
    """The train flow (subflow): trains on the training split (+ synthetic store), saves ``model_dir``."""
    from flows.train import train as train_flow

    return train_flow(training, model_dir)


@task(name="calibrate-trust")
def calibrate_trust(split: dict, model_dir: str, config: RecalibrationConfig) -> dict:
    """Trust threshold of the challenger on its validation samples (writes trust.json beside the weights)."""
    return challenger.calibrate_trust(TrainingSplit.from_dict(split), model_dir, config.trust)


@task(name="compare-on-heldout")
def compare(split: dict, models: dict[str, str], report_dir: str) -> dict:
    """Challenger, champion and baselines on the same held-out samples; metrics per method and figure paths."""
    result = challenger.compare_on_heldout(TrainingSplit.from_dict(split), models, report_dir)
    return {"metrics": result.metrics, "figures": result.figures, "notes": result.notes,
            "metrics_path": result.metrics_path, "baseline_dirs": result.baseline_dirs}


@task(name="serve-baseline")
def serve_baseline(split: dict, name: str, fitted_dir: str, staging_dir: str, config: RecalibrationConfig) -> dict:
    """A baseline beat the multitask challenger on the held-out samples: stage it, trust-calibrated, instead."""
    return serve_heldout_baseline(TrainingSplit.from_dict(split), name, fitted_dir, staging_dir, config.trust)


@task(name="choose-protocol", **IO_RETRIES)
def choose_comparison_protocol(config: RecalibrationConfig, version: str) -> dict:
    """Holdout or leave-one-sample-out, from the number of labelled samples (refuses a version without labels)."""
    store = SpectraStore(config.root)
    ds = store.open(config.dataset, version)
    where = f"spectra {config.dataset}@{version}"
    analyte, _ = resolve_analyte(ds, config.analyte, where)
    n_samples = len(challenger.labelled_samples(labelled_spectra(ds, analyte, where), analyte))
    protocol, reason = choose_protocol(config.protocol, n_samples, config.heldout_fraction)
    return {"name": protocol, "reason": reason, "n_samples": n_samples, "analyte": analyte}


@task(name="compare-candidates-loso")
def compare_candidates_loso(config: RecalibrationConfig, version: str, staging_dir: str, report_dir: str) -> dict:
    """Every candidate family by leave-one-sample-out; the winner refitted, trust-calibrated, staged."""
    logger = get_run_logger()
    return run_loso_recalibration(config, version, staging_dir, report_dir, log=logger.info)


@task(name="register-challenger", **IO_RETRIES)
def register(root: str, name: str, staged_dir: str, manifest: dict) -> dict:
    """Register the staged model as an immutable version and point the ``challenger`` alias at it."""
    registry = ModelRegistry(root)
    version = registry.register(name, staged_dir, manifest)
    registry.promote(name, version, alias=CHALLENGER, reason="trained by recalibration")
    return {"version": version, "path": str(registry.path(name, version))}


@task(name="promote-champion", **IO_RETRIES)
def promote(root: str, name: str, version: str, reason: str) -> dict:
    """Point ``champion`` at the challenger (the only step that changes what is served)."""
    return ModelRegistry(root).promote(name, version, alias=CHAMPION, reason=reason)


@task(name="publish-recalibration", **IO_RETRIES)
def publish(outcome: dict, data_report: str | None) -> list[str]:
    """Artifacts of every run: decision summary, metrics table, model-version link, data validation, figures."""
    name = outcome["model_name"]
    keys = []
    summary_key = artifact_key(name, "recalibration-summary")
    create_markdown_artifact(markdown=summary_markdown(outcome), key=summary_key,
                             description=f"Recalibration decision: {outcome['status']}")
    keys.append(summary_key)
    if outcome.get("metrics"):
        metrics_key = artifact_key(name, "recalibration-metrics")
        create_table_artifact(table=metrics_rows(outcome["metrics"], outcome.get("roles")), key=metrics_key,
                              description="Held-out metrics per method (challenger vs champion vs baselines)")
        keys.append(metrics_key)
    shown = outcome.get("challenger") or outcome.get("champion_after")
    if shown:
        path = Path(outcome.get("challenger_path") or outcome.get("champion_path"))
        model_key = artifact_key(name, "model-version")
        create_link_artifact(link=path.resolve().as_uri(), link_text=f"{name} {shown}", key=model_key,
                             description=f"Model version {shown} (champion now: {outcome.get('champion_after')})")
        keys.append(model_key)
    if data_report:
        data_key = artifact_key(name, "data-validation")
        create_markdown_artifact(markdown=Path(data_report).read_text(encoding="utf-8"), key=data_key,
                                 description="Validation report of {name}@{version}".format(**outcome["spectra"]))
        keys.append(data_key)
    for figure, path in (outcome.get("figures") or {}).items():
        figure_key = artifact_key(name, "recalibration", figure, "plot")
        create_link_artifact(link=Path(path).resolve().as_uri(), link_text=Path(path).name, key=figure_key,
                             description=f"{figure} plot of the held-out comparison")
        keys.append(figure_key)
    return keys


def _run_name() -> str:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    run_id = flow_run.get_id()
    return f"recalibrate-{stamp}-{str(run_id)[:8]}" if run_id else f"recalibrate-{stamp}"


@flow(name="recalibrate", log_prints=True)
def recalibrate(config: RecalibrationConfig) -> dict:
    """Retrain on the latest spectra version when anything changed; promote the challenger only if it beats the
    champion on the same held-out samples (policy in ``config.promotion``). Returns the outcome dict."""
    logger = get_run_logger()
    started = time.perf_counter()
    root, name = config.root, config.registry_name
    report_dir = Path(root) / "reports" / _run_name()
    report_dir.mkdir(parents=True, exist_ok=True)
    chash = recalibration_config_hash(config)
    outcome: dict = {"model_name": name, "config_hash": chash, "report_dir": str(report_dir),
                     "flow_run_id": str(flow_run.get_id()), "spectra": {"name": config.dataset, "version": None}}
    data_report = None
    step = "find-latest-spectra"
    try:
        version = find_latest_spectra(root, config.dataset)
        outcome["spectra"]["version"] = version
        step = "read-champion"
        champion = read_champion(root, name)
        before = champion["version"] if champion else None
        outcome.update(champion_before=before, champion_after=before,
                       champion_path=champion["path"] if champion else None)
        step = "validate-data-version"
        data_report = validate_data_version(root, config.dataset, version, str(report_dir))

        retrain = decide_retraining(champion["manifest"] if champion else None, version, chash)
        logger.info("retraining needed: %s (%s)", retrain.retrain, retrain.reason)
        if not retrain.retrain:
            recorded = {k: v for k, v in (champion["manifest"].get("metrics") or {}).items() if k != "training"}
            outcome.update(status="skipped", reason=f"skipped: {retrain.reason}",
                           heldout_samples=(champion["manifest"].get("data") or {}).get("heldout_samples"),
                           metrics={CHAMPION: recorded} if "rmsep" in recorded else {}, roles={CHAMPION: CHAMPION})
            step = "publish-recalibration"
            return _finish(outcome, data_report, started)

        step = "choose-protocol"
        protocol = choose_comparison_protocol(config, version)
        outcome["protocol"] = protocol
        logger.info("comparison protocol: %s (%s)", protocol["name"], protocol["reason"])
        if protocol["name"] == "loso":
            step = "compare-candidates-loso"
            staging = Path(root) / "staging" / report_dir.name / "challenger"
            loso = compare_candidates_loso(config, version, str(staging), str(report_dir))
            metrics = {CHALLENGER: loso["challenger_metrics"], **loso["candidate_metrics"]}
            roles = {CHALLENGER: f"challenger ({loso['selection']['winner']})"}
            roles.update({n: "candidate" for n in loso["candidate_metrics"]})
            outcome.update(metrics=metrics, figures=loso["figures"], roles=roles, heldout_samples=[],
                           selection=loso["selection"], candidate_errors=loso["candidate_errors"],
                           trust=loso["trust"],
                           notes=[f"comparison: {protocol['reason']}", loso["selection"]["reason"],
                                  "the winner's figure is the minimum over the families (selection-biased); "
                                  "benchmarks/accuracy.py reports the nested leave-one-sample-out figure"])
            decision = decide_loso_promotion(loso["challenger_metrics"], champion["manifest"] if champion else None,
                                             loso["candidate_metrics"], config)
            logger.info("decision: promote=%s (%s)", decision.promote, decision.reason)
            step = "register-challenger"
            manifest = training_manifest(
                spectra={"name": config.dataset, "version": version},
                heldout=[],
                seeds={"synthesis": config.seed, "training": config.seed},
                metrics={**loso["challenger_metrics"], "candidates": loso["candidate_metrics"],
                         "selection": loso["selection"], "trust": loso["trust"],
                         "served": loso["served_details"]},
                trust_threshold=loso["trust"].get("threshold"),
                config_hash=chash,
                config=config.model_dump(mode="json"),
            )
            manifest["recalibration"] = {"decision": decision.to_dict(), "compared_with": before,
                                         "report_dir": str(report_dir), "protocol": protocol,
                                         "candidate_table": loso["candidate_table"]}
            return _register_and_decide(root, outcome, manifest, decision, loso["model_dir"], staging, data_report,
                                        started)

        step = "split-spectra"
        split = split_spectra(config, version)
        outcome["heldout_samples"] = split["heldout"]
        step = "synthesize"
        synthetic = run_synthesis_flow(config, split)
        synthetic_uri = synthetic["uri"] if synthetic else None
        realism = (synthetic or {}).get("realism") or {}
        outcome["synthetic"] = {"uri": synthetic_uri, "realism_passed": realism.get("passed"),
                                "realism_failures": realism.get("failures")}
        step = "train-challenger"
        staging = Path(root) / "staging" / report_dir.name / "challenger"
        model_dir = run_training_flow(challenger.training_config(config, TrainingSplit.from_dict(split), synthetic_uri),
                                      str(staging))
        step = "calibrate-trust"
        trained = {"model_dir": str(model_dir), **calibrate_trust(split, str(model_dir), config)}
        step = "compare-on-heldout"
        models = {CHALLENGER: trained["model_dir"]}
        if champion:
            models[CHAMPION] = champion["path"]
        compared = compare(split, models, str(report_dir))
        metrics = compared["metrics"]
        metrics[CHALLENGER]["synthetic_realism_passed"] = outcome["synthetic"]["realism_passed"]
        metrics[CHALLENGER]["candidate"] = "multitask_aug" if synthetic_uri else "multitask"
        served = best_on_heldout(metrics, CHALLENGER)
        if served != CHALLENGER and served in compared["baseline_dirs"] and served in config.candidates:
            step = "serve-baseline"
            logger.info("%s beats the multitask challenger on the held-out samples: serving it", served)
            baseline = serve_baseline(split, served, compared["baseline_dirs"][served], str(staging), config)
            metrics[CHALLENGER] = {**metrics[served], "flag_rate": baseline["flag_rate"], "candidate": served}
            trained = {"model_dir": baseline["model_dir"], "trust_threshold": baseline["trust_threshold"],
                       "training_metrics": baseline["training_metrics"]}
            compared["notes"].append(f"{served} had a lower held-out RMSEP than the multitask network: the "
                                     f"challenger is the {served} calibration fitted on the training samples")
        outcome.update(metrics=metrics, figures=compared["figures"], notes=compared["notes"],
                       roles={CHALLENGER: CHALLENGER, CHAMPION: CHAMPION})
        decision = decide_promotion(metrics[CHALLENGER], metrics.get(CHAMPION) if champion else None, config)
        logger.info("decision: promote=%s (%s)", decision.promote, decision.reason)

        step = "register-challenger"
        manifest = training_manifest(
            spectra={"name": config.dataset, "version": version},
            train_spectra={"name": split["train"]["name"], "version": split["train"]["version"]},
            synthetic={"uri": synthetic_uri, "id": Path(synthetic_uri).stem,
                       "realism_passed": outcome["synthetic"]["realism_passed"]} if synthetic_uri else None,
            heldout=split["heldout"],
            seeds={"split": config.split_seed, "synthesis": config.seed, "training": config.seed},
            metrics={**metrics[CHALLENGER], "training": trained["training_metrics"]},
            trust_threshold=trained["trust_threshold"],
            config_hash=chash,
            config=config.model_dump(mode="json"),
        )
        manifest["recalibration"] = {"decision": decision.to_dict(), "compared_with": before,
                                     "report_dir": str(report_dir)}
        return _register_and_decide(root, outcome, manifest, decision, trained["model_dir"], staging, data_report,
                                    started)
    except Exception as exc:
        shutil.rmtree(Path(root) / "staging" / report_dir.name, ignore_errors=True)
        outcome.update(status="failed", failed_step=step, error=f"{type(exc).__name__}: {exc}",
                       reason=f"failed at step {step}", seconds=time.perf_counter() - started)
        outcome.setdefault("champion_before", None)
        outcome.setdefault("champion_after", outcome["champion_before"])
        try:
            atomic_write_text(report_dir / "summary.md", summary_markdown(outcome))
            publish(outcome, data_report)
        except Exception as publish_exc:  # the original failure is what the run must report
            logger.warning("could not publish the failure summary: %s", publish_exc)
        champion_note = (
            f"champion unchanged: {outcome['champion_before']}"
            if outcome["champion_after"] == outcome["champion_before"]
            else f"champion now {outcome['champion_after']}, before {outcome['champion_before']}"
        )
        raise RecalibrationError(
            f"recalibration of {name!r} failed at step {step}: {type(exc).__name__}: {exc} ({champion_note})"
        ) from exc


def _register_and_decide(root: str, outcome: dict, manifest: dict, decision, model_dir: str, staging: Path,
                         data_report: str | None, started: float) -> dict:
    """Register the staged challenger, promote it when the decision says so, publish; returns the outcome."""
    name = outcome["model_name"]
    registered = register(root, name, model_dir, manifest)
    shutil.rmtree(staging.parent, ignore_errors=True)
    outcome.update(challenger=registered["version"], challenger_path=registered["path"], decision=decision.to_dict())
    if decision.promote:
        promote(root, name, registered["version"], decision.reason)
        outcome.update(status="promoted", champion_after=registered["version"],
                       champion_path=registered["path"], reason=f"promoted: {decision.reason}")
    else:
        outcome.update(status="kept-champion", reason=f"champion kept: {decision.reason}")
    return _finish(outcome, data_report, started)


def _finish(outcome: dict, data_report: str | None, started: float) -> dict:
    """Write summary.md and outcome.json to the report folder, publish the artifacts, return the outcome."""
    outcome["seconds"] = time.perf_counter() - started
    report_dir = Path(outcome["report_dir"])
    atomic_write_text(report_dir / "summary.md", summary_markdown(outcome))
    challenger.write_json(report_dir / "outcome.json", outcome)
    outcome["artifacts"] = publish(outcome, data_report)
    get_run_logger().info("%s", outcome["reason"])
    return outcome


if __name__ == "__main__":  # pragma: no cover - manual run: python flows/recalibrate.py <root> <dataset>
    import sys

    print(recalibrate(RecalibrationConfig(root=sys.argv[1], dataset=sys.argv[2])))
