"""Predictions from a model registered on an S3 root, written under ``<root>/predictions/<run>/`` on S3: the
same numbers as the local model directory gives, and nothing written to a local folder named like the URL."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from libs_pipeline.config import PredictionConfig
from libs_pipeline.registry import ModelRegistry
from libs_pipeline.spectra.location import open_location
from libs_pipeline.testing.registry_fakes import TOY_MANIFEST
from libs_pipeline.testing.trust_fakes import build_toy_model_dir, toy


@pytest.fixture(scope="module")
def model_and_spectra(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict-s3")
    model_dir = build_toy_model_dir(root / "toy-cu")
    spectra = root / "fresh.nc"
    toy("F", n_samples=3, n_shots=6, seed=31, cu_range=(0.5, 4.0)).to_netcdf(spectra)
    return model_dir, spectra


def test_predict_flow_with_a_model_and_tables_on_s3(prefect_harness, model_and_spectra, s3_root, tmp_path,
                                                    monkeypatch):
    from flows.predict import predict_flow
    from libs_pipeline.prediction import read_table, run_prediction

    monkeypatch.setenv("LIBS_PIPELINE_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    model_dir, spectra = model_and_spectra
    reg = ModelRegistry(s3_root)
    reg.promote("toy-cu", reg.register("toy-cu", model_dir, TOY_MANIFEST))

    out = f"{s3_root}/predictions/run-1/predictions.csv"
    summary = predict_flow(PredictionConfig(model="champion", spectra=str(spectra), out=out, root=s3_root, name="toy-cu",
                                            mc_samples=3))
    assert summary["spectra_table"] == out
    assert summary["samples_table"] == f"{s3_root}/predictions/run-1/predictions.samples.csv"
    assert Path(summary["model_dir"]).is_relative_to(tmp_path / "cache")
    assert not (tmp_path / "s3:").exists()

    local = run_prediction(model_dir, spectra, tmp_path / "local.csv", mc_samples=3)
    stored = read_table(out)
    pd.testing.assert_frame_equal(stored, pd.read_csv(tmp_path / "local.csv"))
    pd.testing.assert_frame_equal(read_table(summary["samples_table"]), pd.read_csv(local.samples_path))
    assert len(stored) == 18 and open_location(out).read_bytes().startswith(b"spectrum,")
