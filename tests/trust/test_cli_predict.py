"""`libs-pipeline predict`: tables written, registry versions resolved, clear errors with exit codes."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from libs_pipeline.cli import app
from libs_pipeline.testing.trust_fakes import toy


@pytest.fixture(scope="module")
def spectra_nc(tmp_path_factory):
    path = tmp_path_factory.mktemp("spectra") / "fresh.nc"
    ds = toy("F", n_samples=3, n_shots=8, seed=21, cu_range=(1.0, 4.0))
    ds.to_netcdf(path)
    return path


def test_predict_writes_tables_and_prints_samples(cnn_model_dir, spectra_nc, tmp_path):
    out = tmp_path / "pred.parquet"
    result = CliRunner().invoke(app, ["predict", str(spectra_nc), "--model", str(cnn_model_dir), "--out", str(out),
                                      "--mc-samples", "3"])
    assert result.exit_code == 0, result.output
    spectra = pd.read_parquet(out)
    samples = pd.read_parquet(tmp_path / "pred.samples.parquet")
    assert len(spectra) == 24 and list(samples["sample_id"]) == ["FS00", "FS01", "FS02"]
    assert {"concentration", "uncertainty", "trust_score", "flag", "reason"} <= set(spectra.columns)
    for sid in ("FS00", "FS01", "FS02"):
        assert sid in result.output
    assert "spectra and" in result.output and f"wrote {out}" in result.output


def test_predict_registered_version(cnn_model_dir, spectra_nc, tmp_path):
    from libs_pipeline.registry import ModelRegistry

    registry = ModelRegistry(tmp_path)
    version = registry.register("toy-cu", cnn_model_dir, {"data": {}, "seeds": {}, "metrics": {}})
    result = CliRunner().invoke(app, ["predict", str(spectra_nc), "--model", version, "--registry", str(tmp_path),
                                      "--name", "toy-cu", "--mc-samples", "2"])
    assert result.exit_code == 0, result.output
    assert str(registry.path("toy-cu", version)) in result.output
    # a tampered trust.json is caught by the registry's checksum before anything is predicted
    (registry.path("toy-cu", version) / "trust.json").write_text("{}")
    result = CliRunner().invoke(app, ["predict", str(spectra_nc), "--model", version, "--registry", str(tmp_path),
                                      "--name", "toy-cu"])
    assert result.exit_code == 2 and "error:" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "champion"], "--root ROOT --name NAME"),
        (["--out", "x.xlsx"], "table suffix must be one of"),
    ],
)
def test_predict_errors(cnn_model_dir, spectra_nc, args, message):
    full = ["predict", str(spectra_nc)] + (args if args[0] == "--model" else ["--model", str(cnn_model_dir), *args])
    result = CliRunner().invoke(app, full)
    assert result.exit_code == 1
    assert message in result.output


def test_predict_unreadable_spectra(cnn_model_dir, tmp_path):
    bad = tmp_path / "spectra.txt"
    bad.write_text("nope")
    result = CliRunner().invoke(app, ["predict", str(bad), "--model", str(cnn_model_dir)])
    assert result.exit_code == 1 and "cannot open spectra" in result.output
