"""Predictions with trust from a real (small) CNN: tables, grids, writing, model resolution."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from libs_pipeline.models import load_model
from libs_pipeline.prediction import (
    load_model_with_trust,
    resolve_model_dir,
    run_prediction,
    sample_table_path,
    write_prediction_tables,
)
from libs_pipeline.testing.trust_fakes import toy
from libs_pipeline.trust.calibration import load_trust
from libs_pipeline.trust.prediction import calibrate_model_trust, predict_with_trust


@pytest.fixture(scope="module")
def loaded(cnn_model_dir):
    return load_model_with_trust(cnn_model_dir)


@pytest.fixture(scope="module")
def fresh():
    return toy("F", n_samples=4, n_shots=25, seed=12, cu_range=(0.3, 4.5))


def test_tables_per_spectrum_and_per_sample(loaded, fresh):
    model, cal = loaded
    tables = predict_with_trust(model, cal, fresh, mc_samples=5)
    s, p = tables.spectra, tables.samples
    assert len(s) == 100 and len(p) == 4
    assert list(s.columns[:11]) == [
        "spectrum", "sample_id", "shot", "analyte", "units", "concentration", "uncertainty", "trust_score",
        "error_score", "flag", "reason",
    ]
    # a single network has no ensemble spread: its error score is its trust score
    np.testing.assert_array_equal(s["error_score"], s["trust_score"])
    assert (s["analyte"] == "Cu").all() and (s["units"] == "wt%").all()
    assert (s["uncertainty"] > 0).all()
    np.testing.assert_allclose(s["concentration"], model.predict(fresh["intensity"].values)["Cu"], rtol=1e-6)
    assert list(p["sample_id"]) == ["FS00", "FS01", "FS02", "FS03"]
    assert list(p.columns) == [
        "sample_id", "analyte", "units", "n_spectra", "concentration", "uncertainty", "trust_score",
        "error_score", "flagged_fraction", "flag", "reason", "top_part",
    ]
    first = s[s["sample_id"] == "FS00"]
    assert p["concentration"].iat[0] == pytest.approx(first["concentration"].mean())
    assert p["flagged_fraction"].iat[0] == pytest.approx(first["flag"].mean())
    without = predict_with_trust(model, cal, fresh.isel(spectrum=slice(0, 5)), mc_samples=0)
    assert without.spectra["uncertainty"].isna().all() and without.samples["uncertainty"].isna().all()


def test_gain_change_raises_flag_rate(loaded, fresh):
    model, cal = loaded
    base = predict_with_trust(model, cal, fresh, mc_samples=0).spectra
    gained = fresh.assign(intensity=fresh["intensity"] * 1.8)
    shifted = predict_with_trust(model, cal, gained, mc_samples=0)
    assert shifted.spectra["flag"].mean() > base["flag"].mean() + 0.5
    # at 0.3 wt% the Cu areas are too small for the gain to show (and the normalised prediction is unaffected)
    high = shifted.samples[shifted.samples["concentration"] > 1.0]
    assert len(high) == 3 and high["flag"].all()
    assert high["reason"].str.contains("shots flagged; ").all()


def test_grid_mismatch_is_an_error_unless_resampled(loaded, fresh):
    model, cal = loaded
    wl = fresh["wavelength"].values
    fine = np.linspace(wl[0] - 1, wl[-1] + 1, 2 * wl.size)
    x = np.stack([np.interp(fine, wl, row) for row in fresh["intensity"].values[:6]])
    other = fresh.isel(spectrum=slice(0, 6)).drop_vars(["intensity", "wavelength"]).assign(
        intensity=(("spectrum", "wavelength"), x.astype(np.float32)), wavelength=fine
    )
    with pytest.raises(ValueError, match="differs from the model's .* pass resample=True"):
        predict_with_trust(model, cal, other, mc_samples=0)
    tables = predict_with_trust(model, cal, other, mc_samples=0, resample=True)
    assert len(tables.spectra) == 6
    narrow = other.isel(wavelength=slice(40, None))
    with pytest.raises(ValueError, match="cannot resample: spectra cover"):
        predict_with_trust(model, cal, narrow, mc_samples=0, resample=True)


def test_write_tables_csv_and_parquet(loaded, fresh, tmp_path):
    model, cal = loaded
    tables = predict_with_trust(model, cal, fresh.isel(spectrum=slice(0, 30)), mc_samples=0)
    for suffix in (".csv", ".parquet"):
        a, b = write_prediction_tables(tables, tmp_path / f"pred{suffix}")
        assert b == sample_table_path(a) == tmp_path / f"pred.samples{suffix}"
        read = pd.read_csv if suffix == ".csv" else pd.read_parquet
        back = read(a)
        assert len(back) == 30 and back["flag"].dtype == bool
        np.testing.assert_allclose(back["trust_score"], tables.spectra["trust_score"], rtol=1e-9)
        assert list(read(b)["sample_id"]) == list(tables.samples["sample_id"])
    with pytest.raises(ValueError, match="suffix must be one of"):
        write_prediction_tables(tables, tmp_path / "pred.xlsx")


def test_run_prediction_from_directory_and_registry(cnn_model_dir, fresh, tmp_path):
    from libs_pipeline.registry import ModelRegistry

    run = run_prediction(cnn_model_dir, fresh, tmp_path / "out.csv", mc_samples=3)
    assert run.model_dir == cnn_model_dir and run.spectra_path.is_file() and run.samples_path.is_file()
    registry = ModelRegistry(tmp_path / "store")
    version = registry.register("toy-cu", cnn_model_dir, {"data": {}, "seeds": {"train": 0}, "metrics": {}})
    registry.promote("toy-cu", version)
    assert (resolve_model_dir("champion", tmp_path / "store", "toy-cu") / "trust.json").is_file()
    again = run_prediction("champion", fresh, None, tmp_path / "store", "toy-cu", mc_samples=3)
    pd.testing.assert_frame_equal(again.tables.spectra, run.tables.spectra)
    with pytest.raises(FileNotFoundError, match="--root ROOT --name NAME"):
        resolve_model_dir("champion")
    with pytest.raises(ValueError, match="table suffix"):
        run_prediction(cnn_model_dir, fresh, tmp_path / "out.txt")


def test_model_without_trust_json_is_a_clear_error(cnn_model_dir, tmp_path):
    import shutil

    copy = tmp_path / "no-trust"
    shutil.copytree(cnn_model_dir, copy)
    (copy / "trust.json").unlink()
    with pytest.raises(FileNotFoundError, match="no trust calibration"):
        load_model_with_trust(copy)


def test_calibrate_model_trust_needs_held_out_labelled_samples(cnn_model_dir):
    model = load_model(cnn_model_dir)
    train = toy("T", n_samples=8, n_shots=20, seed=10)
    with pytest.raises(ValueError, match=r"validation samples \['TS00', .*\] are also training samples"):
        calibrate_model_trust(model, train, train.isel(spectrum=slice(0, 40)))
    with pytest.raises(ValueError, match="validation spectra have no label variable 'Cu'"):
        calibrate_model_trust(model, train, toy("V", seed=3).drop_vars("Cu"))
    cal = load_trust(cnn_model_dir)
    assert cal.analyte == "Cu" and cal.lines == ["Cu I 324.75", "Cu I 327.40"]
    assert cal.n_validation_samples == 10
