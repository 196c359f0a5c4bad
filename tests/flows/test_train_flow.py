"""The train flow under the Prefect test harness: config file in, model directory out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from flows.artifacts import artifact_key
from libs_pipeline.models import load_model
from libs_pipeline.models.training_run import load_training_config


@pytest.fixture
def train_config(tmp_path, toy_zarr):
    config = {
        "analyte": "Cu",
        "measured_uris": [toy_zarr],
        "augmentation": False,
        "output_dir": str(tmp_path / "models"),
        "max_steps": 10,
        "eval_every": 5,
        "batch_size": 16,
        "stem_channels": 4,
        "block_channels": [4, 4],
        "dense_units": 16,
        "head_units": 8,
        "progress_bar": False,
        "device": "cpu",
        "num_threads": 1,
    }
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_train_flow_writes_a_loadable_model_directory(prefect_harness, train_config, toy_ds, tmp_path):
    from flows.train import train

    model_dir = train(str(train_config))
    assert isinstance(model_dir, str) and model_dir.startswith(str(tmp_path / "models" / "Cu-"))
    model = load_model(model_dir)
    assert model.task_names[0] == "Cu"
    assert model.data_versions[0]["uri"].endswith("toy.zarr")
    pred = model.predict(toy_ds["intensity"].values[:3])["Cu"]
    assert pred.shape == (3,) and np.all(np.isfinite(pred))
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.train import progress_key, summary_key

    name = Path(model_dir).name
    keys = {"summary": summary_key(load_training_config(str(train_config)), model_dir),
            "progress": progress_key(load_training_config(str(train_config)), model_dir)}
    assert keys == {"summary": artifact_key("training-summary-toy", name),
                    "progress": artifact_key("training-progress-toy", name)}
    with get_client(sync_client=True) as client:
        found = {k: client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
                 for k, key in keys.items()}
    (summary,) = found["summary"]
    assert summary.type == "markdown" and f"# Model {name}" in summary.data
    (progress,) = found["progress"]
    assert progress.type == "progress" and progress.data == 100.0 and model_dir in progress.description


def test_train_flow_fails_on_a_bad_config(prefect_harness, tmp_path):
    from flows.train import train

    bad = tmp_path / "bad.yaml"
    bad.write_text("analyte: Cu\nmeasured_uris: []\nbatch_size: 1\n")
    with pytest.raises(ValueError, match=r"bad.yaml: invalid training config: batch_size"):
        train(str(bad))
