"""Evaluate flow: baselines (and optionally the neural model) on held-out samples, or nested leave-one-sample-out
on small campaigns -> report + Prefect artifacts.

Thin: ``libs_pipeline.evaluation.run.run_evaluation`` does the work; tasks pass only paths and names.
"""

from __future__ import annotations

import io

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run

from flows.artifacts import embed_images
from libs_pipeline.config import EvaluationConfig
from libs_pipeline.evaluation.report import SUMMARY_COLUMNS, artifact_key, table_rows
from libs_pipeline.evaluation.run import default_run_name, run_evaluation
from libs_pipeline.spectra.location import open_location


@task(name="evaluate-methods")
def evaluate_task(config: EvaluationConfig) -> str:
    """Run the evaluation; returns the report folder."""
    result = run_evaluation(config)
    get_run_logger().info(
        "evaluated %s on %d held-out sample(s) %s -> %s",
        ", ".join(result.table.index), len(result.test_samples), result.test_samples, result.report_dir,
    )
    return str(result.report_dir)


@task(name="publish-evaluation-artifacts", retries=2, retry_delay_seconds=2)
def publish_task(report_dir: str) -> list[str]:
    """Publish the metrics table and the markdown report of ``report_dir`` as Prefect artifacts."""
    folder = open_location(report_dir)  # a local folder or the report on the store (s3://.../reports/<run>)
    table = pd.read_csv(io.BytesIO((folder / "metrics.csv").read_bytes()), index_col="method")
    run = folder.name
    metrics_key = artifact_key("evaluation-metrics", run)
    report_key = artifact_key("evaluation-report", run)
    create_table_artifact(
        table=table_rows(table, SUMMARY_COLUMNS),
        key=metrics_key,
        description=f"Held-out metrics per method ({run}); full table in {(folder / 'metrics.csv').url}",
    )
    create_markdown_artifact(
        markdown=embed_images((folder / "report.md").read_text(), base_dir=folder.url),
        key=report_key,
        description=f"Evaluation report {run} (figures in {folder.url})",
    )
    return [metrics_key, report_key]


@flow(name="evaluate", log_prints=True)
def evaluate(config: EvaluationConfig) -> str:
    """Evaluate on held-out samples of ``config.dataset_uri``; writes ``<root>/reports/<run>/``; returns report.md's
    URL. Without a ``run_name`` the report folder is named after the UTC time and this flow run."""
    if config.run_name is None:
        run_id = flow_run.get_id()
        run_name = f"{default_run_name()}-{str(run_id)[:8]}" if run_id else default_run_name()
        config = config.model_copy(update={"run_name": run_name})
    report_dir = evaluate_task(config)
    publish_task(report_dir)
    return (open_location(report_dir, check=False) / "report.md").url


if __name__ == "__main__":  # pragma: no cover - manual run
    import sys

    print(evaluate(EvaluationConfig(dataset_uri=sys.argv[1], root=sys.argv[2])))
