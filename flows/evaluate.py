"""Evaluate flow: baselines (and optionally the neural model) on held-out samples, or nested leave-one-sample-out
on small campaigns -> report + Prefect artifacts.

Thin: ``libs_pipeline.evaluation.run.run_evaluation`` does the work; tasks pass only paths and names.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run

from flows.artifacts import embed_images
from libs_pipeline.config import EvaluationConfig
from libs_pipeline.evaluation.report import SUMMARY_COLUMNS, artifact_key, table_rows
from libs_pipeline.evaluation.run import default_run_name, run_evaluation


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
    folder = Path(report_dir)
    table = pd.read_csv(folder / "metrics.csv", index_col="method")
    run = folder.name
    metrics_key = artifact_key("evaluation-metrics", run)
    report_key = artifact_key("evaluation-report", run)
    create_table_artifact(
        table=table_rows(table, SUMMARY_COLUMNS),
        key=metrics_key,
        description=f"Held-out metrics per method ({run}); full table in {folder / 'metrics.csv'}",
    )
    create_markdown_artifact(
        markdown=embed_images((folder / "report.md").read_text(encoding="utf-8"), base_dir=folder),
        key=report_key,
        description=f"Evaluation report {run} (figures in {folder})",
    )
    return [metrics_key, report_key]


@flow(name="evaluate", log_prints=True)
def evaluate(
    dataset_uri: str,
    root: str,
    model_dir: str | None = None,
    analyte: str | None = None,
    test_samples: list[str] | None = None,
    test_fraction: float = 0.3,
    seed: int = 0,
    run_name: str | None = None,
    lines: list[dict] | None = None,
    pls_max_components: int = 10,
    protocol: str = "auto",
) -> str:
    """Evaluate on held-out samples of ``dataset_uri``; writes ``<root>/reports/<run>/``; returns report.md's path."""
    if run_name is None:
        run_id = flow_run.get_id()
        run_name = f"{default_run_name()}-{str(run_id)[:8]}" if run_id else default_run_name()
    config = EvaluationConfig(
        dataset_uri=dataset_uri, root=root, model_dir=model_dir, analyte=analyte, test_samples=test_samples,
        test_fraction=test_fraction, seed=seed, run_name=run_name, lines=lines,
        pls_max_components=pls_max_components, protocol=protocol,
    )
    report_dir = evaluate_task(config)
    publish_task(report_dir)
    return str(Path(report_dir) / "report.md")


if __name__ == "__main__":  # pragma: no cover - manual run
    import sys

    print(evaluate(dataset_uri=sys.argv[1], root=sys.argv[2]))
