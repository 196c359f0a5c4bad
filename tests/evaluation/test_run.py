"""One evaluation run on the toy campaign: report folder contents, atomicity, neural-model hook, errors."""

from __future__ import annotations

import json
import subprocess
import sys
import types

import numpy as np
import pandas as pd
import pytest

from libs_pipeline.config import EvaluationConfig
from libs_pipeline.evaluation.protocol import LeakError
from libs_pipeline.evaluation.run import check_model_unseen, default_run_name, run_evaluation
from libs_pipeline.spectra.store import open_spectra
from libs_pipeline.testing import toy_campaign
from libs_pipeline.testing.stores import write_zarr

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def toy_zarr(tmp_path_factory):
    """8 samples x 6 shots (more samples than the shared toy store: room for explicit test samples)."""
    return write_zarr(toy_campaign(n_samples=8, n_shots=6), tmp_path_factory.mktemp("data") / "toy.zarr")


def _config(toy_zarr, root, **kw):
    """The held-out protocol (the nested one has its own tests below)."""
    return EvaluationConfig(dataset_uri=toy_zarr, root=str(root), **{"run_name": "r1", "protocol": "holdout", **kw})


def test_run_writes_complete_report(toy_zarr, tmp_path):
    result = run_evaluation(_config(toy_zarr, tmp_path, test_samples=["S02", "S05"]))
    folder = tmp_path / "reports" / "r1"
    assert result.report_dir == folder and result.report_path == folder / "report.md"
    assert sorted(p.name for p in folder.iterdir()) == [
        "metrics.csv", "parity.png", "predictions.csv", "report.md", "residuals.png", "summary.json",
    ]
    assert [p.name for p in (tmp_path / "reports").iterdir()] == ["r1"]  # no temporary folder left
    assert result.test_samples == ["S02", "S05"] and len(result.train_samples) == 6
    assert list(result.table.index) == ["univariate", "pls", "mean"]
    metrics = pd.read_csv(folder / "metrics.csv", index_col="method")
    np.testing.assert_allclose(metrics["sample_rmsep"], result.table["sample_rmsep"])
    preds = pd.read_csv(folder / "predictions.csv")
    assert list(preds.columns) == ["spectrum", "sample_id", "y_true", "univariate", "pls", "mean"]
    assert len(preds) == 12 and set(preds["sample_id"]) == {"S02", "S05"}
    # The toy Cu lines scale with the label: both baselines predict held-out samples well.
    assert (result.table.loc[["univariate", "pls"], "sample_rel_rmse"] < 0.1).all()
    assert result.table.loc["mean", "sample_rel_rmse"] > 0.3  # the null control has no skill
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["analyte"] == "Cu" and summary["units"] == "wt%" and summary["details"]["pls"]["choice"]["n_components"] >= 1
    assert summary["details"]["protocol"] == "holdout"
    text = (folder / "report.md").read_text()
    assert "| univariate |" in text and "| pls |" in text and "S02, S05" in text


def test_seeded_split_keeps_extremes_and_is_reproducible(toy_zarr, tmp_path):
    a = run_evaluation(_config(toy_zarr, tmp_path, run_name="a", seed=3, protocol="holdout"))
    b = run_evaluation(_config(toy_zarr, tmp_path, run_name="b", seed=3, protocol="holdout"))
    assert a.test_samples == b.test_samples and "S00" not in a.test_samples and "S07" not in a.test_samples
    pd.testing.assert_frame_equal(a.table, b.table)


def test_existing_run_folder_is_an_error(toy_zarr, tmp_path):
    run_evaluation(_config(toy_zarr, tmp_path))
    before = (tmp_path / "reports" / "r1" / "report.md").read_bytes()
    with pytest.raises(FileExistsError, match="already exists"):
        run_evaluation(_config(toy_zarr, tmp_path))
    assert (tmp_path / "reports" / "r1" / "report.md").read_bytes() == before


def test_failure_leaves_no_partial_folder(toy_zarr, tmp_path, monkeypatch):
    import libs_pipeline.evaluation.run as run_module

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(run_module, "markdown_report", broken)
    with pytest.raises(OSError, match="disk full"):
        run_evaluation(_config(toy_zarr, tmp_path))
    assert not (tmp_path / "reports").exists() or list((tmp_path / "reports").iterdir()) == []


class _FakeModel:
    """Stands in for libs_pipeline.models.TrainedModel: predicts from the Cu I 324.75 peak."""

    task_names = ["Cu", "Cu I 324.75:area"]

    def __init__(self, wavelength):
        self.wavelength = wavelength

    def predict(self, intensity):
        assert intensity.dtype == np.float32
        peak = intensity[:, np.argmin(np.abs(self.wavelength - 324.75))]
        return {"Cu": (peak - 300.0) / 2500.0, "Cu I 324.75:area": peak}


def _fake_models_module(monkeypatch, wavelength):
    module = types.ModuleType("libs_pipeline.models")
    module.load_model = lambda directory: _FakeModel(wavelength)
    monkeypatch.setitem(sys.modules, "libs_pipeline.models", module)


def _fake_model_dir(path, train_samples=(), val_samples=()):
    """A model directory holding only metrics.json (what the leak check reads)."""
    path.mkdir(parents=True)
    metrics = {"train_samples": list(train_samples), "val_samples": list(val_samples)}
    (path / "metrics.json").write_text(json.dumps(metrics))
    return str(path)


def test_neural_model_is_evaluated_when_given(toy_zarr, tmp_path, monkeypatch):
    wl = open_spectra(toy_zarr)["wavelength"].values
    _fake_models_module(monkeypatch, wl)
    result = run_evaluation(_config(toy_zarr, tmp_path, model_dir=_fake_model_dir(tmp_path / "model")))
    assert list(result.table.index) == ["univariate", "pls", "mean", "neural"]
    preds = pd.read_csv(result.predictions_path)
    assert "neural" in preds.columns and np.isfinite(preds["neural"]).all()


def test_neural_model_on_another_grid_is_rejected(toy_zarr, tmp_path, monkeypatch):
    _fake_models_module(monkeypatch, np.linspace(200.0, 300.0, 10))
    with pytest.raises(ValueError, match="10-channel grid that differs from the dataset's 512-channel grid"):
        run_evaluation(_config(toy_zarr, tmp_path, model_dir=_fake_model_dir(tmp_path / "m")))
    assert not (tmp_path / "reports" / "r1").exists()


def _loading_forbidden(monkeypatch):
    module = types.ModuleType("libs_pipeline.models")

    def load_model(directory):
        raise AssertionError("the model was loaded before the leak check")

    module.load_model = load_model
    monkeypatch.setitem(sys.modules, "libs_pipeline.models", module)


def test_neural_model_trained_on_test_samples_is_refused(toy_zarr, tmp_path, monkeypatch):
    _loading_forbidden(monkeypatch)
    model = _fake_model_dir(tmp_path / "model", train_samples=["S00", "S02", "S03"], val_samples=["S05", "S06"])
    with pytest.raises(LeakError, match=r"saw test sample\(s\) during training: \['S02'\] in its train_samples; "
                                        r"\['S05'\] in its val_samples"):
        run_evaluation(_config(toy_zarr, tmp_path, test_samples=["S02", "S05"], model_dir=model))
    assert not (tmp_path / "reports").exists()


def test_neural_model_without_recorded_samples_is_refused(toy_zarr, tmp_path, monkeypatch):
    _loading_forbidden(monkeypatch)
    (tmp_path / "bare").mkdir()
    with pytest.raises(LeakError, match="no metrics.json, so the samples it was trained on are unknown"):
        run_evaluation(_config(toy_zarr, tmp_path, model_dir=str(tmp_path / "bare")))
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "metrics.json").write_text(json.dumps({"train_samples": ["S00"]}))
    with pytest.raises(ValueError, match="field 'val_samples' is missing or not a list"):
        run_evaluation(_config(toy_zarr, tmp_path, model_dir=str(tmp_path / "odd")))


def test_leak_check_reads_only_metrics_json(tmp_path):
    model = _fake_model_dir(tmp_path / "model", train_samples=["A", "B"], val_samples=["C"])
    check_model_unseen(model, ["D", "E"])  # disjoint: no error
    with pytest.raises(LeakError, match=r"\['A', 'B'\] in its train_samples"):
        check_model_unseen(model, ["B", "A"])


@pytest.mark.slow
def test_baselines_only_never_import_torch(toy_zarr, tmp_path):
    code = (
        "import sys; from libs_pipeline.config import EvaluationConfig;"
        "from libs_pipeline.evaluation.run import run_evaluation;"
        f"run_evaluation(EvaluationConfig(dataset_uri={toy_zarr!r}, root={str(tmp_path)!r}, run_name='x'));"
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    done = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    "kw, error, message",
    [
        ({"analyte": "Zn"}, ValueError, r"no label variable 'Zn' \(labels: \['Cu'\]\)"),
        ({"test_samples": ["S99"]}, ValueError, r"test_samples \['S99'\] are not in the dataset"),
        ({"univariate_line": "Cu I 510.55"}, ValueError, "univariate_line 'Cu I 510.55' is not one of the lines"),
    ],
)
def test_bad_config_errors(toy_zarr, tmp_path, kw, error, message):
    with pytest.raises(error, match=message):
        run_evaluation(_config(toy_zarr, tmp_path, **kw))


def test_missing_dataset(tmp_path):
    with pytest.raises((FileNotFoundError, ValueError), match="nope.zarr"):
        run_evaluation(EvaluationConfig(dataset_uri=str(tmp_path / "nope.zarr"), root=str(tmp_path)))


def test_config_validation():
    with pytest.raises(ValueError, match="run_name"):
        EvaluationConfig(dataset_uri="x.zarr", root="r", run_name="../escape")
    with pytest.raises(ValueError, match="protocol"):
        EvaluationConfig(dataset_uri="x.zarr", root="r", protocol="kfold")
    with pytest.raises(ValueError, match="Extra inputs are not permitted"):
        EvaluationConfig(dataset_uri="x.zarr", root="r", typo=1)


def test_default_run_name_format():
    import datetime as dt

    assert default_run_name(dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)) == "evaluate-20260102T030405Z"


@pytest.mark.slow
def test_real_neural_model_end_to_end(toy_zarr, tmp_path):
    """A tiny model from libs_pipeline.models, trained on the training samples only, is evaluated beside the baselines."""
    pytest.importorskip("torch")
    from libs_pipeline.config import TrainingConfig
    from libs_pipeline.models import save_model, train_model
    from libs_pipeline.spectra.dataset import select_samples

    test_samples = ["S02", "S05"]
    ds = open_spectra(toy_zarr).load()
    train = select_samples(ds, [s for s in np.unique(ds["sample_id"].values) if s not in test_samples])
    config = TrainingConfig(analyte="Cu", augmentation=False, max_steps=30, eval_every=10, val_fraction=0.0,
                            progress_bar=False, device="cpu")
    model_dir = save_model(train_model([train], config), tmp_path / "model")
    result = run_evaluation(_config(toy_zarr, tmp_path, test_samples=test_samples, model_dir=str(model_dir)))
    assert list(result.table.index) == ["univariate", "pls", "mean", "neural"]
    assert np.isfinite(result.table.loc["neural", "sample_rmsep"])


def test_small_campaign_is_evaluated_by_nested_loso(toy_zarr, tmp_path):
    config = EvaluationConfig(dataset_uri=toy_zarr, root=str(tmp_path), run_name="n1")  # 8 samples: auto -> nested
    result = run_evaluation(config)
    assert result.test_samples == result.train_samples and len(result.test_samples) == 8  # every sample once
    assert list(result.table.index) == ["univariate", "pls", "mean", "served"]
    summary = json.loads((result.report_dir / "summary.json").read_text())
    nested = summary["details"]["nested"]
    assert summary["details"]["protocol"] == "nested leave-one-sample-out"
    assert set(nested["choices"]) == set(result.test_samples)
    assert {c["winner"] for c in nested["choices"].values()} <= {"univariate", "pls"}
    assert nested["methods"]["served"]["metrics"]["rmsep_sample_ci95"][0] is not None
    assert result.table.loc["served", "sample_rmsep"] < 0.3 * result.table.loc["mean", "sample_rmsep"]
    assert "nested leave-one-sample-out" in result.markdown


def test_nested_protocol_cannot_score_one_fitted_model(toy_zarr, tmp_path):
    config = EvaluationConfig(dataset_uri=toy_zarr, root=str(tmp_path), model_dir=str(tmp_path / "m"))
    with pytest.raises(ValueError, match="cannot score one fitted model; give --test-sample ids"):
        run_evaluation(config)


def test_a_served_baseline_model_directory_is_evaluated(toy_zarr, tmp_path):
    """Recalibration may serve a univariate/PLS baseline instead of the network: evaluate takes its directory too."""
    from libs_pipeline.candidates import UnivariateCandidate, save_servable
    from libs_pipeline.spectra.dataset import select_samples

    ds = open_spectra(toy_zarr).load()
    test_samples = ["S01", "S04"]
    train = select_samples(ds, [s for s in sorted(set(ds["sample_id"].values.astype(str))) if s not in test_samples])
    fitted = UnivariateCandidate().fit(train, "Cu")
    model_dir = save_servable(fitted.model, tmp_path / "served")
    result = run_evaluation(_config(toy_zarr, tmp_path, test_samples=test_samples, model_dir=str(model_dir)))
    preds = pd.read_csv(result.predictions_path)
    assert "neural" in result.table.index and np.isfinite(preds["neural"]).all()
    # the same calibration fitted by the evaluator on the same training samples predicts the same numbers
    np.testing.assert_allclose(preds["neural"], preds["univariate"], rtol=1e-9)
