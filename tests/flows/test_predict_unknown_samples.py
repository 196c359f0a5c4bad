"""From a folder of raw files of unknown samples to predictions with trust flags: the CLI and the drop-folder flow."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from libs_pipeline.cli import app
from libs_pipeline.spectra.store import SpectraStore
from libs_pipeline.testing.trust_fakes import toy

runner = CliRunner()


def _shot_columns(wl, x, delimiter=",", decimal="."):
    rows = [delimiter.join(f"{v:.10g}".replace(".", decimal) for v in (w, *x[:, j])) for j, w in enumerate(wl)]
    return ("\n".join(rows) + "\n").encode()


N_CHANNELS = 256


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A deliberately tiny CNN (a few steps) with its trust.json: these tests check wiring, not accuracy."""
    from libs_pipeline.config import TrainingConfig
    from libs_pipeline.models import save_model, train_model
    from libs_pipeline.trust.calibration import save_trust
    from libs_pipeline.trust.prediction import calibrate_model_trust

    train = toy("T", n_samples=6, n_shots=6, seed=10, n_channels=N_CHANNELS)
    validation = toy("V", n_samples=6, n_shots=6, seed=11, cu_range=(0.15, 4.9), n_channels=N_CHANNELS)
    config = TrainingConfig(analyte="Cu", augmentation=False, max_steps=4, eval_every=2, progress_bar=False,
                            device="cpu", seed=0)
    model = train_model([train], config, val_sources=[toy("E", n_samples=3, n_shots=4, seed=13, n_channels=N_CHANNELS)])
    directory = save_model(model, tmp_path_factory.mktemp("unknown") / "toy-cu")
    save_trust(calibrate_model_trust(model, train, validation), directory)
    return directory


def _inbox(folder, bad=True):
    """Two unknown samples as the lab writes them (gzip; decimal comma) and, optionally, an empty file."""
    folder.mkdir()
    ds = toy("F", n_samples=2, n_shots=5, seed=31, cu_range=(1.0, 3.0), n_channels=N_CHANNELS)
    wl, x, sids = ds["wavelength"].values, ds["intensity"].values, ds["sample_id"].values
    first, second = sorted(set(sids.tolist()))
    (folder / "rock-a.txt.gz").write_bytes(gzip.compress(_shot_columns(wl, x[sids == first]), mtime=0))
    (folder / "rock-b.txt").write_bytes(_shot_columns(wl, x[sids == second], ";", ","))
    if bad:
        (folder / "broken.txt").write_bytes(b"")
    return folder


def test_one_command_from_raw_files_to_predictions(tmp_path, model_dir):
    inbox = _inbox(tmp_path / "inbox")
    store, out = tmp_path / "store", tmp_path / "pred.csv"
    res = runner.invoke(app, ["predict", str(inbox), "--model", str(model_dir), "--store", str(store),
                              "--out", str(out), "--mc-samples", "3"])
    assert res.exit_code == 3, res.output  # partial: broken.txt rejected, the others predicted
    assert "empty_file" in res.output and "rock-a" in res.output
    spectra = pd.read_csv(out)
    samples = pd.read_csv(tmp_path / "pred.samples.csv")
    assert spectra["sample_id"].tolist() == ["rock-a"] * 5 + ["rock-b"] * 5
    assert samples["sample_id"].tolist() == ["rock-a", "rock-b"]
    assert {"concentration", "uncertainty", "trust_score", "flag", "reason"} <= set(samples.columns)
    assert np.isfinite(samples["concentration"]).all() and samples["flag"].isin([True, False]).all()
    # every predicted spectrum is archived and versioned
    s = SpectraStore(store)
    manifest = s.manifest("unknown-samples")
    assert [src["file"] for src in manifest["sources"]] == ["rock-a.txt.gz", "rock-b.txt"]
    assert all((store / "raw" / src["sha256"]).is_file() for src in manifest["sources"])
    assert s.samples("unknown-samples")["certified"].tolist() == [False, False]


def test_predict_from_a_manifest_without_labels(tmp_path, model_dir):
    inbox = _inbox(tmp_path / "inbox", bad=False)
    (inbox / "batch.csv").write_text("file,sample\nrock-a.txt.gz,A\nrock-b.txt,B\n")
    res = runner.invoke(app, ["predict", str(inbox / "batch.csv"), "--model", str(model_dir), "--store",
                              str(tmp_path / "s"), "--mc-samples", "3"])
    assert res.exit_code == 0, res.output
    assert SpectraStore(tmp_path / "s").samples("batch")["sample_id"].tolist() == ["A", "B"]
    tables = sorted((tmp_path / "s" / "predictions").glob("*/predictions.samples.csv"))
    assert len(tables) == 1 and pd.read_csv(tables[0])["sample_id"].tolist() == ["A", "B"]
    # a manifest cannot be mixed with raw files
    res = runner.invoke(app, ["predict", str(inbox / "batch.csv"), str(inbox / "rock-b.txt"), "--model",
                              str(model_dir), "--store", str(tmp_path / "s")])
    assert res.exit_code == 1 and "give it alone" in res.output


def test_predict_exits_1_when_every_raw_file_is_rejected(tmp_path, model_dir):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "broken.txt").write_bytes(b"")
    res = runner.invoke(app, ["predict", str(tmp_path / "x"), "--model", str(model_dir), "--store", str(tmp_path / "s")])
    assert res.exit_code == 1 and "every file was rejected" in res.output
    res = runner.invoke(app, ["predict", str(tmp_path / "x"), "--model", str(model_dir)])
    assert res.exit_code == 1 and "cannot open spectra" in res.output and "give --root ROOT" in res.output


def test_drop_folder_flow_predicts_new_files_once(prefect_harness, tmp_path, model_dir):
    from flows.predict_folder import predict_drop_folder
    from libs_pipeline.config import DropFolderConfig

    inbox = _inbox(tmp_path / "inbox")
    store = tmp_path / "store"
    config = DropFolderConfig(folder=str(inbox), root=str(store), name="toy-cu", model=str(model_dir), mc_samples=3)
    state = predict_drop_folder(config, return_state=True)
    assert state.is_completed() and state.name == "Partial"
    summary = state.result()
    assert summary["ingest"]["rejected_files"] == ["broken.txt"]
    table = pd.read_csv(summary["predictions"]["samples_table"])
    assert table["sample_id"].tolist() == ["rock-a", "rock-b"]
    # the next day: the same folder holds nothing new, so nothing is predicted again
    (inbox / "broken.txt").unlink()
    again = predict_drop_folder(config)
    assert again["ingest"]["status"] == "unchanged" and again["predictions"] is None
