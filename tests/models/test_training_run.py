"""Config files and `libs-pipeline train CONFIG` (the library path the train flow also uses)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from libs_pipeline.cli import app
from libs_pipeline.models import load_model
from libs_pipeline.models.training_run import load_training_config, training_sources
from libs_pipeline.testing.stores import write_zarr


def _write_config(tmp_path, toy_ds, **extra):
    data = tmp_path / "toy.zarr"
    if not data.exists():
        write_zarr(toy_ds, data, chunk_spectra=16)
    config = {
        "analyte": "Cu", "measured_uris": [str(data)], "augmentation": False, "output_dir": str(tmp_path / "out"),
        "max_steps": 6, "eval_every": 3, "batch_size": 16, "stem_channels": 4, "block_channels": [4, 4],
        "dense_units": 16, "head_units": 8, "device": "cpu", "num_threads": 1, **extra,
    }
    path = tmp_path / "train.json"
    path.write_text(json.dumps(config))
    return path


def test_cli_train_prints_the_model_directory(tmp_path, toy_ds):
    path = _write_config(tmp_path, toy_ds)
    result = CliRunner().invoke(app, ["train", str(path), "--model-dir", str(tmp_path / "m1"), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == str(tmp_path / "m1")
    model = load_model(tmp_path / "m1")
    assert model.metrics["steps"] == 6
    assert model.config.measured_uris == [str(tmp_path / "toy.zarr")]


def test_cli_train_reports_config_errors(tmp_path, toy_ds):
    path = _write_config(tmp_path, toy_ds, learning_rate=-1)
    result = CliRunner().invoke(app, ["train", str(path)])
    assert result.exit_code == 1
    assert "train.json: invalid training config: learning_rate" in result.output
    missing = CliRunner().invoke(app, ["train", str(tmp_path / "none.yaml")])
    assert missing.exit_code == 1 and "does not exist" in missing.output


def test_config_files_and_sources(tmp_path):
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("analyte: Na\nmeasured_uris: [a.zarr]\nsynthetic_uris: [s.zarr]\nval_uris: [v.zarr]\n")
    config = load_training_config(yaml_file)
    assert training_sources(config) == (["a.zarr", "s.zarr"], ["v.zarr"])
    assert training_sources(config.model_copy(update={"augmentation": False})) == (["a.zarr"], ["v.zarr"])
    with pytest.raises(ValueError, match="synthetic_uris is empty"):
        training_sources(config.model_copy(update={"synthetic_uris": []}))
    with pytest.raises(ValueError, match="measured_uris is empty"):
        training_sources(config.model_copy(update={"measured_uris": []}))
    yaml_file.write_text("- not a mapping\n")
    with pytest.raises(ValueError, match="expected a mapping"):
        load_training_config(yaml_file)
    yaml_file.write_text("analyte: Cu\nunknown_field: 1\n")
    with pytest.raises(ValueError, match="unknown_field: Extra inputs are not permitted"):
        load_training_config(yaml_file)
