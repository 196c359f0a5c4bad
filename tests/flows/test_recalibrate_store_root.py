"""The recalibrate flow with its store root on S3 (moto server on loopback): the report (summary, outcome,
data validation, figures) lands under ``s3://.../reports/<run>/``, the challenger under ``s3://.../models/``,
the champion is read through the verified local cache, and the figure artifact is embedded from S3.

The measured spectra are written to the same S3 root (``SpectraStore`` on a URL); training and the held-out
comparison are the fast fakes of ``tests/flows/flow_doubles.py`` (no torch)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from libs_pipeline.registry import ModelRegistry
from libs_pipeline.spectra.location import open_location
from libs_pipeline.spectra.store import SpectraStore
from libs_pipeline.testing import toy_campaign
from libs_pipeline.testing.recalibration_fakes import (
    NO_SYNTHESIS,
    fake_model_dir,
    tiny_config,
)
from tests.flows.flow_doubles import fake_training, run_artifacts

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _parity_figure(split, models, out_dir) -> dict[str, str]:
    """The comparison's (tiny) parity figure in the report; the champion was loaded into the local cache."""
    assert Path(models["champion"]).is_dir()
    figure = Path(out_dir) / "parity.png"
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 30, 30)).save(buf, format="PNG")
    figure.write_bytes(buf.getvalue())
    return {"parity": str(figure)}


def _fakes(monkeypatch, metrics: dict) -> None:
    fake_training(monkeypatch, metrics, figures=_parity_figure)


def test_recalibration_on_s3_writes_its_report_and_model_under_the_root(s3_root, tmp_path, monkeypatch):
    from flows.recalibrate import recalibrate

    monkeypatch.setenv("LIBS_PIPELINE_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)  # a local folder named like the URL would appear here
    ds = toy_campaign(n_samples=8, n_shots=16, n_channels=256, seed=0)
    SpectraStore(s3_root).write_version("toy", ds, sources=[{"test": True}], reader="dataset")
    registry = ModelRegistry(s3_root)
    old = registry.register("toy", fake_model_dir(tmp_path / "old-champion", "champion"),
                            {"data": {"spectra": {"name": "toy", "version": "0" * 16}}, "seeds": {},
                             "metrics": {"rmsep": 0.5}, "config_hash": "old"})
    registry.promote("toy", old)
    _fakes(monkeypatch, {"challenger": {"rmsep": 0.1, "flag_rate": 0.0}, "champion": {"rmsep": 0.5, "flag_rate": 0.0}})

    out = recalibrate(tiny_config(s3_root, **NO_SYNTHESIS))
    assert out["status"] == "promoted", out["reason"]
    assert out["champion_before"] == old and out["champion_after"] == out["challenger"] != old

    report = open_location(out["report_dir"])
    assert report.url.startswith(f"{s3_root}/reports/recalibrate-")
    assert {"summary.md", "outcome.json", "data_validation.md", "parity.png"} <= set(report.children())
    stored = json.loads((report / "outcome.json").read_text())
    assert stored["status"] == "promoted" and stored["figures"] == {"parity": (report / "parity.png").url}
    assert f"![parity]({(report / 'parity.png').url})" in (report / "summary.md").read_text()
    assert (report / "parity.png").read_bytes().startswith(b"\x89PNG")

    new = out["challenger"]
    assert registry.aliases("toy") == {"champion": new, "challenger": new}
    assert registry.verify("toy", new) == []
    assert out["challenger_path"] == registry.version_url("toy", new) == f"{s3_root}/models/toy/{new}"
    manifest = registry.manifest("toy", new)
    assert manifest["recalibration"]["report_dir"] == report.url
    assert manifest["recalibration"]["compared_with"] == old
    assert "trust.json" in manifest["files"]

    assert not (open_location(s3_root) / "staging").exists()
    assert not (tmp_path / "s3:").exists() and not list(tmp_path.glob("s3*"))

    arts = run_artifacts(out["flow_run_id"])
    assert "data:image/png;base64," in arts["toy-recalibration-parity-plot"].data  # embedded from S3
    assert (report / "parity.png").url in arts["toy-recalibration-parity-plot"].data
    assert f"{s3_root}/models/toy/{new}" in arts["toy-model-version"].data


def test_failed_recalibration_on_s3_uploads_its_summary_and_keeps_the_champion(s3_root, tmp_path, monkeypatch):
    import flows.recalibrate as module
    from flows.recalibrate import recalibrate
    from libs_pipeline.recalibration import RunFolders

    monkeypatch.setenv("LIBS_PIPELINE_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    ds = toy_campaign(n_samples=8, n_shots=16, n_channels=256, seed=0)
    SpectraStore(s3_root).write_version("toy", ds, sources=[{"test": True}], reader="dataset")
    _fakes(monkeypatch, {"challenger": {"rmsep": 0.1, "flag_rate": 0.0}})
    created: list[RunFolders] = []
    original = RunFolders.create

    def recording(root, run):
        folders = original(root, run)
        created.append(folders)
        return folders

    def diverged(training, model_dir):
        fake_model_dir(Path(model_dir), "half-trained")  # staged, then the run fails: never registered
        raise RuntimeError("training diverged (test)")

    monkeypatch.setattr(RunFolders, "create", staticmethod(recording))
    monkeypatch.setattr(module, "run_training_flow", diverged)
    state = recalibrate(tiny_config(s3_root, **NO_SYNTHESIS), return_state=True)
    assert state.is_failed() and "failed at step train-challenger: RuntimeError: training diverged" in state.message

    [folders] = created
    assert folders.report.url.startswith(f"{s3_root}/reports/recalibrate-")
    summary = (folders.report / "summary.md").read_text()
    assert "failed" in summary and "training diverged" in summary and "The champion was not changed." in summary
    assert not folders.work_dir.exists() and not folders.staging.exists()  # the local temporary folder is gone
    assert ModelRegistry(s3_root).names() == []
    assert not (open_location(s3_root) / "staging").exists() and not list(tmp_path.glob("s3*"))
