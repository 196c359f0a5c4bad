"""Ingest flow: campaign manifest -> validated, versioned spectra; publishes the validation report.

Thin: ``libs_pipeline.spectra.ingest.ingest_campaign`` does the work; tasks pass only paths and version ids.
A new version emits the ``libs-pipeline.spectra.version-created`` event (flows/events.py).
Final state: Completed when every file landed, Completed named ``Partial`` (visible in the UI) when some
files were rejected, Failed when every new file was rejected.
"""

from __future__ import annotations

import json
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.states import Completed

from flows.artifacts import artifact_key
from flows.events import emit_spectra_version
from libs_pipeline.config import IngestOptions
from libs_pipeline.spectra.ingest import ingest_campaign

def report_key(dataset: str) -> str:
    """Key of the validation-report table artifact of ``dataset`` (one per dataset)."""
    return artifact_key("ingest-validation-report", dataset)


def summary_key(dataset: str) -> str:
    """Key of the ingest-summary markdown artifact of ``dataset``."""
    return artifact_key("ingest-summary", dataset)


class IngestRejectedError(RuntimeError):
    """Every new file of the batch was rejected: no version was created."""


@task(name="ingest-campaign")
def ingest_task(manifest: str, store: str, name: str | None, options: IngestOptions) -> dict:
    """Run the ingest; returns ids and paths only (version, uri, report path, status)."""
    result = ingest_campaign(manifest, store, name=name, options=options)
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
    """Publish the validation report (table) and the run summary (markdown) as Prefect artifacts."""
    path = Path(report_path)
    report = json.loads(path.read_text(encoding="utf-8"))
    keys = ("severity", "file", "rule", "count", "line", "column", "coordinate", "last_line", "reason")
    rows = [{k: f.get(k) for k in keys} for f in [*report["rejections"], *report["warnings"]]]
    if not rows:
        rows = [{k: None for k in keys} | {"severity": "ok", "reason": "no findings"}]
    keys = [report_key(report["name"]), summary_key(report["name"])]
    create_table_artifact(
        table=rows,
        key=keys[0],
        description=f"Validation findings of {report['run']} ({report['name']}: {report['status']}); {path}",
    )
    create_markdown_artifact(
        markdown=(path.parent / "ingest_summary.md").read_text(encoding="utf-8"),
        key=keys[1],
        description=f"Ingest {report['run']}",
    )
    return keys


@flow(name="ingest", log_prints=True)
def ingest(
    manifest: str,
    store: str,
    name: str | None = None,
    options: IngestOptions | None = None,
    fail_if_rejected: bool = True,
) -> dict:
    """Ingest a campaign manifest into ``store``; the run fails (after publishing) when nothing new could land,
    and ends in a Completed state named 'Partial' when some files were rejected."""
    outcome = ingest_task(manifest, store, name, options or IngestOptions())
    publish_task(outcome["report_path"])
    if outcome["changed"] and outcome["version"]:
        emit_spectra_version(store, outcome)  # triggers the recalibrate deployment (deployments/prefect.yaml)
    if fail_if_rejected and outcome["status"] == "rejected":
        raise IngestRejectedError(
            f"{outcome['name']}: every new file was rejected; see {outcome['quarantine_report']}"
        )
    if outcome["status"] == "partial":
        return Completed(name="Partial", message=f"some files were rejected; see {outcome['quarantine_report']}",
                         data=outcome)
    return outcome
