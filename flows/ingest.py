"""Ingest flow: campaign manifest -> validated, versioned spectra; publishes the validation report.

Thin: ``libs_pipeline.spectra.ingest.ingest_campaign`` does the work; tasks pass only paths and version ids.
A new version emits the ``libs-pipeline.spectra.version-created`` event (flows/events.py).
Final state: Completed when every file landed, Completed named ``Partial`` (visible in the UI) when some
files were rejected, Failed when every new file was rejected.
"""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.states import Completed

from flows.artifacts import artifact_key
from flows.events import emit_spectra_version
from libs_pipeline.config import IngestConfig
from libs_pipeline.spectra.ingest import run_ingest
from libs_pipeline.spectra.location import open_location


def report_key(dataset: str) -> str:
    """Key of the validation-report table artifact of ``dataset`` (one per dataset)."""
    return artifact_key("ingest-validation-report", dataset)


def summary_key(dataset: str) -> str:
    """Key of the ingest-summary markdown artifact of ``dataset``."""
    return artifact_key("ingest-summary", dataset)


class IngestRejectedError(RuntimeError):
    """Every new file of the batch was rejected: no version was created."""


@task(name="ingest-campaign")
def ingest_task(config: IngestConfig) -> dict:
    """Run the ingest; returns ids and URLs only (version, uri, report URL, status)."""
    result = run_ingest(config)
    get_run_logger().info(
        "%s: %s -> version %s (%d spectra, %d accepted, %d skipped, %d rejected file(s))",
        result.name, result.status, result.version, result.n_spectra, len(result.accepted), len(result.skipped),
        len(result.rejected_files),
    )
    return {
        "name": result.name,
        "status": result.status,
        "version": result.version,
        "parent": result.parent,
        "uri": result.uri,
        "report_path": str(result.report_path),
        "quarantine_report": str(result.quarantine_report) if result.quarantine_report else None,
        "changed": result.changed,
        "n_spectra": result.n_spectra,
        "n_new_spectra": result.n_new_spectra,
        "n_files_accepted": len(result.accepted),
        "n_files_rejected": len(result.rejected_files),
    }


@task(name="publish-ingest-report", retries=2, retry_delay_seconds=2)
def publish_task(report_path: str) -> list[str]:
    """Publish the validation report (table) and the run summary (markdown) as Prefect artifacts.

    ``report_path``: the report's URL in the store (local path, ``s3://...``)."""
    path = open_location(report_path)
    report = path.read_json()
    keys = ("severity", "file", "rule", "count", "line", "column", "coordinate", "last_line", "reason")
    rows = [{k: f.get(k) for k in keys} for f in [*report["rejections"], *report["warnings"]]]
    if not rows:
        rows = [{k: None for k in keys} | {"severity": "ok", "reason": "no findings"}]
    keys = [report_key(report["name"]), summary_key(report["name"])]
    create_table_artifact(
        table=rows,
        key=keys[0],
        description=f"Validation findings of {report['run']} ({report['name']}: {report['status']}); {path.url}",
    )
    create_markdown_artifact(
        markdown=(path.parent / "ingest_summary.md").read_text(),
        key=keys[1],
        description=f"Ingest {report['run']}",
    )
    return keys


@flow(name="ingest", log_prints=True)
def ingest(config: IngestConfig) -> dict:
    """Ingest ``config.manifest`` into the store at ``config.root``; the run fails (after publishing) when nothing
    new could land (unless ``fail_if_rejected`` is off), and ends in a Completed state named 'Partial' when some
    files were rejected."""
    outcome = ingest_task(config)
    publish_task(outcome["report_path"])
    if outcome["changed"] and outcome["version"]:
        emit_spectra_version(config.root, outcome)  # triggers the recalibrate deployment (deployments/prefect.yaml)
    if config.fail_if_rejected and outcome["status"] == "rejected":
        raise IngestRejectedError(
            f"{outcome['name']}: every new file was rejected; see {outcome['quarantine_report']}"
        )
    if outcome["status"] == "partial":
        return Completed(name="Partial", message=f"some files were rejected; see {outcome['quarantine_report']}",
                         data=outcome)
    return outcome
