"""Recalibrate flow: latest spectra version -> (skip | split -> synthesize subflow -> train subflow -> trust
calibration -> compare with the champion on the same held-out samples -> promote or keep) -> publish the decision.

Thin: ``libs_pipeline.recalibration`` (split, challenger, comparison, decisions, manifests, the typed outcome),
``libs_pipeline.registry`` and the synthesize / train flows do the work; this module holds the tasks, their
retries and the artifacts; tasks pass only paths, version ids and small dicts. A failure anywhere leaves the
champion untouched (promotion is the last step) and fails the run with the step and the error in its message.
Run it from a deployment with concurrency_limit 1 so that runs never overlap.
"""

from __future__ import annotations

import time
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_table_artifact,
)
from prefect.runtime import flow_run

from flows.artifacts import embed_images, figure_markdown
from flows.events import announce_decision
from flows.synthesize import synthesize
from libs_pipeline.config import RecalibrationConfig, SynthesisConfig, TrainingConfig
from libs_pipeline.evaluation.report import artifact_key
from libs_pipeline.recalibration import (
    CHALLENGER,
    CHAMPION,
    RecalibrationOutcome,
    RunFolders,
    TrainingSplit,
    baseline_to_serve,
    challenger_training,
    choose_protocol,
    decide_loso_promotion,
    heldout_comparison,
    heldout_manifest,
    label_challenger,
    labelled_samples,
    labelled_spectra,
    loso_manifest,
    metrics_rows,
    run_loso_recalibration,
    run_name,
    serve_heldout_baseline,
    served_baseline_record,
    summary_markdown,
    synthesis_request,
    write_report,
    write_training_split,
)
from libs_pipeline.recalibration.summary import figure_uri
from libs_pipeline.registry import (
    ModelRegistry,
    decide_promotion,
    decide_retraining,
    recalibration_config_hash,
)
from libs_pipeline.spectra.atomic import atomic_write_text
from libs_pipeline.spectra.dataset import resolve_analyte
from libs_pipeline.spectra.store import SpectraStore
from libs_pipeline.spectra.validation_report import data_validation_report


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
    """Write the validation report of the data version to the local ``report_dir``; returns its path."""
    path = Path(report_dir) / "data_validation.md"
    atomic_write_text(path, data_validation_report(root, dataset, version))
    return str(path)


@task(name="split-spectra", **IO_RETRIES)
def split_spectra(config: RecalibrationConfig, version: str) -> dict:
    """Hold out samples and store the training part; returns the TrainingSplit as a dict."""
    split = write_training_split(
        config.root, config.dataset, version, config.heldout_fraction, config.split_seed, config.analyte,
        trust_fraction=config.trust_fraction,
    )
    return split.to_dict()


def run_synthesis_flow(config: RecalibrationConfig, split: dict) -> dict | None:
    """The synthesize flow (subflow) on the training split: returns its result (uri, realism) or None when off."""
    request = synthesis_request(config)
    if request is None:
        return None
    return synthesize(SynthesisConfig(
        dataset_uri=split["train"]["uri"], out_uri=config.root, seed=config.seed, dask_address=config.dask_address,
        **request,
    ))


def run_training_flow(training: TrainingConfig, model_dir: str) -> str:
    """The train flow (subflow): trains on the training split (+ synthetic store), saves ``model_dir``."""
    from flows.train import (
        train as train_flow,  # torch: only a held-out run that trains a network loads it
    )

    return train_flow(training.model_copy(update={"model_dir": model_dir}))


@task(name="calibrate-trust")
def calibrate_trust(split: dict, model_dir: str, config: RecalibrationConfig) -> dict:
    """Trust threshold of the challenger on its validation samples (writes trust.json beside the weights)."""
    return challenger_training.calibrate_trust(TrainingSplit.from_dict(split), model_dir, config.trust)


@task(name="compare-on-heldout")
def compare(split: dict, models: dict[str, str], report_dir: str) -> dict:
    """Challenger, champion and baselines on the same held-out samples; metrics per method and figure paths."""
    result = heldout_comparison.compare_on_heldout(TrainingSplit.from_dict(split), models, report_dir)
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
    n_samples = len(labelled_samples(labelled_spectra(ds, analyte, where), analyte))
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
    registry = ModelRegistry(root, flow_run_id=_flow_run_id())
    version = registry.register(name, staged_dir, manifest)
    registry.promote(name, version, alias=CHALLENGER, reason="trained by recalibration")
    return {"version": version, "path": registry.verified_url(name, version)}


@task(name="promote-champion", **IO_RETRIES)
def promote(root: str, name: str, version: str, reason: str) -> dict:
    """Point ``champion`` at the challenger (the only step that changes what is served)."""
    return ModelRegistry(root, flow_run_id=_flow_run_id()).promote(name, version, alias=CHAMPION, reason=reason)


def _flow_run_id() -> str | None:
    """This flow run's id, recorded by the registry in the manifest and the history."""
    run_id = flow_run.get_id()
    return str(run_id) if run_id else None


@task(name="publish-recalibration", **IO_RETRIES)
def publish(outcome: dict, data_report: str | None) -> list[str]:
    """Artifacts of every run: decision summary, metrics table, model-version link, data validation, figures."""
    name = outcome["model_name"]
    keys = []
    summary_key = artifact_key(name, "recalibration-summary")
    create_markdown_artifact(markdown=embed_images(summary_markdown(outcome)), key=summary_key,
                             description=f"Recalibration decision: {outcome['status']}")
    keys.append(summary_key)
    if outcome.get("metrics"):
        metrics_key = artifact_key(name, "recalibration-metrics")
        create_table_artifact(table=metrics_rows(outcome["metrics"], outcome.get("roles")), key=metrics_key,
                              description="Held-out metrics per method (challenger vs champion vs baselines)")
        keys.append(metrics_key)
    shown = outcome.get("challenger") or outcome.get("champion_after")
    if shown:
        model_key = artifact_key(name, "model-version")
        link = figure_uri(outcome.get("challenger_path") or outcome.get("champion_path"))
        create_link_artifact(link=link, link_text=f"{name} {shown}", key=model_key,
                             description=f"Model version {shown} (champion now: {outcome.get('champion_after')})")
        keys.append(model_key)
    if data_report:
        data_key = artifact_key(name, "data-validation")
        create_markdown_artifact(markdown=Path(data_report).read_text(encoding="utf-8"), key=data_key,
                                 description="Validation report of {name}@{version}".format(**outcome["spectra"]))
        keys.append(data_key)
    for figure, path in (outcome.get("figures") or {}).items():
        figure_key = artifact_key(name, "recalibration", figure, "plot")
        create_markdown_artifact(markdown=figure_markdown(path, f"{name}: {figure}"), key=figure_key,
                                 description=f"{figure} plot of the held-out comparison")
        keys.append(figure_key)
    return keys


@flow(name="recalibrate", log_prints=True)
def recalibrate(config: RecalibrationConfig) -> dict:
    """Retrain on the latest spectra version when anything changed; promote the challenger only if it beats the
    champion on the same held-out samples (policy in ``config.promotion``). Returns the outcome as a dict
    (``RecalibrationOutcome.to_dict``)."""
    logger = get_run_logger()
    started = time.perf_counter()
    folders = RunFolders.create(config.root, run_name(flow_run.get_id()))
    try:
        return _recalibrate(config, folders, logger, started)
    finally:
        folders.close()


def _recalibrate(config: RecalibrationConfig, folders: RunFolders, logger, started: float) -> dict:
    """The flow's steps: the report is written in ``folders.work_dir`` and lands in ``folders.report``."""
    root, name = config.root, config.registry_name
    report_dir = folders.work_dir  # local: the report folder itself; object stores: uploaded at the end
    outcome = RecalibrationOutcome(
        model_name=name, config_hash=recalibration_config_hash(config), report_dir=folders.report.url,
        flow_run_id=str(flow_run.get_id()), spectra={"name": config.dataset, "version": None},
    )
    data_report = None
    try:
        outcome.step = "find-latest-spectra"
        version = find_latest_spectra(root, config.dataset)
        outcome.spectra["version"] = version
        outcome.step = "read-champion"
        champion = read_champion(root, name)
        outcome.record_champion(champion)
        champion_manifest = champion["manifest"] if champion else None
        outcome.step = "validate-data-version"
        data_report = validate_data_version(root, config.dataset, version, str(report_dir))

        retrain = decide_retraining(champion_manifest, version, outcome.config_hash)
        logger.info("retraining needed: %s (%s)", retrain.retrain, retrain.reason)
        if not retrain.retrain:
            outcome.skip(champion_manifest, retrain.reason)
            outcome.step = "publish-recalibration"
            return _finish(outcome, folders, data_report, started)

        outcome.step = "choose-protocol"
        outcome.protocol = choose_comparison_protocol(config, version)
        logger.info("comparison protocol: %s (%s)", outcome.protocol["name"], outcome.protocol["reason"])
        staging = folders.staging
        if outcome.protocol["name"] == "loso":
            outcome.step = "compare-candidates-loso"
            loso = compare_candidates_loso(config, version, str(staging), str(report_dir))
            outcome.record_loso(loso)
            outcome.figures = {k: folders.final(v) for k, v in outcome.figures.items()}
            decision = decide_loso_promotion(loso["challenger_metrics"], champion_manifest,
                                             loso["candidate_metrics"], config)
            logger.info("decision: promote=%s (%s)", decision.promote, decision.reason)
            outcome.step = "register-challenger"
            manifest = loso_manifest(config, version, loso, protocol=outcome.protocol, decision=decision,
                                     config_hash=outcome.config_hash, compared_with=outcome.champion_before,
                                     report_dir=folders.report.url)
            return _register_and_decide(root, outcome, manifest, decision, loso["model_dir"], folders, data_report,
                                        started)

        outcome.step = "split-spectra"
        split = split_spectra(config, version)
        outcome.heldout_samples = split["heldout"]
        outcome.step = "synthesize"
        outcome.record_synthesis(run_synthesis_flow(config, split))
        outcome.step = "train-challenger"
        training = challenger_training.training_config(config, TrainingSplit.from_dict(split), outcome.synthetic["uri"])
        members = [run_training_flow(member, member.model_dir)
                   for member in challenger_training.member_configs(training, str(staging), config.networks)]
        model_dir = challenger_training.assemble_challenger(str(staging), members)
        outcome.step = "calibrate-trust"
        trained = {"model_dir": str(model_dir), **calibrate_trust(split, str(model_dir), config)}
        outcome.step = "compare-on-heldout"
        models = {CHALLENGER: trained["model_dir"]}
        if champion:
            models[CHAMPION] = champion["path"]
        compared = compare(split, models, str(report_dir))
        metrics, notes = compared["metrics"], compared["notes"]
        metrics[CHALLENGER] = label_challenger(metrics[CHALLENGER], outcome.synthetic)
        served = baseline_to_serve(metrics, compared["baseline_dirs"], config.candidates)
        if served is not None:
            outcome.step = "serve-baseline"
            logger.info("%s beats the multitask challenger on the held-out samples: serving it", served)
            baseline = serve_baseline(split, served, compared["baseline_dirs"][served], str(staging), config)
            metrics[CHALLENGER], trained, note = served_baseline_record(metrics, served, baseline)
            notes.append(note)
        outcome.record_heldout(metrics, {k: folders.final(v) for k, v in compared["figures"].items()}, notes)
        decision = decide_promotion(metrics[CHALLENGER], metrics.get(CHAMPION) if champion else None, config)
        logger.info("decision: promote=%s (%s)", decision.promote, decision.reason)

        outcome.step = "register-challenger"
        manifest = heldout_manifest(config, version, TrainingSplit.from_dict(split), synthetic=outcome.synthetic,
                                    challenger_metrics=metrics[CHALLENGER], trained=trained, decision=decision,
                                    config_hash=outcome.config_hash, compared_with=outcome.champion_before,
                                    report_dir=folders.report.url)
        return _register_and_decide(root, outcome, manifest, decision, trained["model_dir"], folders, data_report,
                                    started)
    except Exception as exc:
        folders.discard_staging()
        outcome.fail(exc, time.perf_counter() - started)
        try:
            write_report(outcome, with_outcome_json=False, folders=folders)
            publish(outcome.to_dict(), data_report)
        except Exception as publish_exc:  # the original failure is what the run must report
            logger.warning("could not publish the failure summary: %s", publish_exc)
        raise RecalibrationError(outcome.failure_message()) from exc


def _register_and_decide(root: str, outcome: RecalibrationOutcome, manifest: dict, decision, model_dir: str,
                         folders: RunFolders, data_report: str | None, started: float) -> dict:
    """Register the staged challenger, promote it when the decision says so, publish; returns the outcome."""
    registered = register(root, outcome.model_name, model_dir, manifest)
    folders.discard_staging()
    outcome.record_registered(registered, decision)
    if decision.promote:
        promote(root, outcome.model_name, registered["version"], decision.reason)
    outcome.record_decision(decision)
    result = _finish(outcome, folders, data_report, started)
    announce_decision(result, decision.details)  # champion-changed / degraded-champion-kept events (flows/events.py)
    return result


def _finish(outcome: RecalibrationOutcome, folders: RunFolders, data_report: str | None, started: float) -> dict:
    """Write summary.md and outcome.json to the report folder (uploaded with the figures on an object store),
    publish the artifacts, return the outcome."""
    outcome.seconds = time.perf_counter() - started
    write_report(outcome, folders=folders)
    outcome.artifacts = publish(outcome.to_dict(), data_report)
    get_run_logger().info("%s", outcome.reason)
    return outcome.to_dict()


if __name__ == "__main__":  # pragma: no cover - manual run: python flows/recalibrate.py <root> <dataset>
    import sys

    print(recalibrate(RecalibrationConfig(root=sys.argv[1], dataset=sys.argv[2])))
