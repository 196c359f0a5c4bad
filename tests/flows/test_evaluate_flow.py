"""The evaluate flow under the Prefect test harness: report written, artifacts published with the expected keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from libs_pipeline.config import EvaluationConfig

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _artifact(key):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        return client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))


def test_evaluate_flow_writes_report_and_artifacts(prefect_harness, toy_zarr, tmp_path):
    from flows.evaluate import evaluate

    report = Path(evaluate(EvaluationConfig(dataset_uri=toy_zarr, root=str(tmp_path), run_name="flow-run-1", seed=1,
                                            pls_max_components=4)))
    assert report == tmp_path / "reports" / "flow-run-1" / "report.md"
    assert report.is_file() and (report.parent / "parity.png").stat().st_size > 0
    table = _artifact("evaluation-metrics-flow-run-1")
    assert len(table) == 1 and table[0].type == "table"
    assert "univariate" in str(table[0].data) and "pls" in str(table[0].data)
    markdown = _artifact("evaluation-report-flow-run-1")
    assert len(markdown) == 1 and markdown[0].type == "markdown"
    # the report as written, with its figures embedded (a browser does not load the relative file paths)
    from flows.artifacts import embed_images

    assert "![parity plot](parity.png)" in report.read_text()
    assert markdown[0].data == embed_images(report.read_text(), base_dir=report.parent)
    assert markdown[0].data.count("](data:image/png;base64,") == 2 and "](parity.png)" not in markdown[0].data


def test_evaluate_flow_default_run_name_and_failure(prefect_harness, toy_zarr, tmp_path):
    from flows.evaluate import evaluate

    report = Path(evaluate(EvaluationConfig(dataset_uri=toy_zarr, root=str(tmp_path), test_samples=["S02"])))
    assert report.parent.name.startswith("evaluate-") and report.is_file()
    with pytest.raises(ValueError, match="no label variable 'Zn'"):
        evaluate(EvaluationConfig(dataset_uri=toy_zarr, root=str(tmp_path), analyte="Zn", run_name="bad"))
    assert not (tmp_path / "reports" / "bad").exists()
