"""Test doubles that patch the recalibrate flow's steps (they import ``flows``, so they cannot live in
``libs_pipeline.testing``, which the library layers may not see above them) and read a run's artifacts."""

from __future__ import annotations

import json
from pathlib import Path

from libs_pipeline.recalibration import Comparison, challenger_training, heldout_comparison
from libs_pipeline.testing.recalibration_fakes import fake_model_dir


def fake_training(monkeypatch, compare_metrics: dict, figures=None) -> None:
    """Replace the train subflow, the trust calibration and the comparison by fast fakes (no torch).

    ``figures(split, models, out_dir) -> {name: path}``: the comparison's figures (and any checks of its inputs)."""
    import flows.recalibrate as module

    def fake_train_flow(training, model_dir):
        fake_model_dir(Path(model_dir), "challenger")
        return model_dir

    def fake_compare(split, models, out_dir):
        import pandas as pd

        assert set(compare_metrics) <= set(models) | {"univariate", "pls"}
        drawn = figures(split, models, out_dir) if figures else {}
        return Comparison(table=pd.DataFrame(), metrics={k: dict(v) for k, v in compare_metrics.items()},
                          figures=drawn)

    def fake_calibrate_trust(split, model_dir, trust=None):
        (Path(model_dir) / "trust.json").write_text(json.dumps({"tag": "challenger", "file": "trust.json"}))
        return {"trust_threshold": 2.0, "training_metrics": {}}

    monkeypatch.setattr(module, "run_training_flow", fake_train_flow)
    monkeypatch.setattr(challenger_training, "calibrate_trust", fake_calibrate_trust)
    monkeypatch.setattr(heldout_comparison, "compare_on_heldout", fake_compare)


def run_artifacts(flow_run_id: str) -> dict[str, object]:
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {a.key: a for a in found}
