"""The evaluate flow with its root on S3 (moto server on loopback): the report lands under
``s3://.../reports/<run>/`` (built locally, uploaded), and the markdown artifact embeds the figures read back
from S3. The spectra stay a local zarr store (``toy_zarr``); only the report root is on S3."""

from __future__ import annotations

import json

import pytest

from libs_pipeline.config import EvaluationConfig
from libs_pipeline.spectra.location import open_location

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_evaluate_flow_writes_its_report_to_s3(prefect_harness, toy_zarr, s3_root, tmp_path, monkeypatch):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.evaluate import evaluate

    monkeypatch.chdir(tmp_path)
    report_md = evaluate(EvaluationConfig(dataset_uri=toy_zarr, root=s3_root, run_name="s3-run-1", seed=1, pls_max_components=4))
    report = open_location(s3_root) / "reports" / "s3-run-1"
    assert report_md == (report / "report.md").url
    assert {"report.md", "metrics.csv", "predictions.csv", "parity.png", "residuals.png", "summary.json"} <= set(
        report.children())
    assert (report / "parity.png").read_bytes().startswith(b"\x89PNG")
    assert json.loads((report / "summary.json").read_text())["run_name"] == "s3-run-1"
    assert list(tmp_path.iterdir()) == []  # nothing written to a local folder named like the URL

    with get_client(sync_client=True) as client:
        [markdown] = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["evaluation-report-s3-run-1"])))
    assert markdown.data.count("](data:image/png;base64,") == 2 and "](parity.png)" not in markdown.data

    with pytest.raises(FileExistsError, match=f"report folder {report.url} already exists"):
        evaluate(EvaluationConfig(dataset_uri=toy_zarr, root=s3_root, run_name="s3-run-1", seed=1, pls_max_components=4))
