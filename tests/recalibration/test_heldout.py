"""Held-out recalibration steps without Prefect: training split, training config, trust calibration, held-out
comparison."""

from __future__ import annotations

import numpy as np
import pytest

from libs_pipeline.config import RecalibrationConfig
from libs_pipeline.spectra.sample_splits import heldout_samples
from libs_pipeline.recalibration import (
    TrainingSplit,
    calibrate_trust,
    compare_on_heldout,
    training_config,
    write_training_split,
)
from libs_pipeline.spectra.store import SpectraStore
from libs_pipeline.testing import toy_campaign


@pytest.fixture
def store(tmp_path):
    s = SpectraStore(tmp_path)
    ds = toy_campaign(n_samples=8, n_shots=16, n_channels=256)
    version = s.write_version("toy", ds, sources=[{}], reader="dataset")
    return s, version


def test_write_training_split_is_stable_and_content_addressed(store, tmp_path):
    s, version = store
    split = write_training_split(tmp_path, "toy", version, 0.25, seed=0)
    ids = [f"S{i:02d}" for i in range(8)]
    assert split.heldout == heldout_samples(ids, 0.25, 0)
    assert sorted(split.heldout + split.train_samples) == ids and not set(split.heldout) & set(split.train_samples)
    assert (split.analyte, split.units) == ("Cu", "wt%")
    train = s.open("toy.train", split.train["version"])
    assert sorted(set(train["sample_id"].values.astype(str))) == split.train_samples
    assert train.sizes["spectrum"] == 16 * len(split.train_samples)
    source = s.manifest("toy.train", split.train["version"])["sources"][0]
    assert source["derived_from"] == s.ref("toy", version) and source["heldout_samples"] == split.heldout
    again = write_training_split(tmp_path, "toy", version, 0.25, seed=0)
    assert again == split and s.versions("toy.train") == [split.train["version"]]
    assert TrainingSplit.from_dict(split.to_dict()) == split
    with pytest.raises(ValueError, match=r"spectra toy@.*: no label variable 'Na' \(labels: \['Cu'\]\)"):
        write_training_split(tmp_path, "toy", version, 0.25, seed=0, analyte="Na")


def test_training_config_fills_data_and_checks_augmentation(store, tmp_path):
    _, version = store
    split = write_training_split(tmp_path, "toy", version, 0.25, seed=0)
    config = RecalibrationConfig(root=str(tmp_path), dataset="toy", seed=7, training={"max_steps": 3})
    cfg = training_config(config, split, "/x/syn.zarr")
    assert (cfg.analyte, cfg.seed, cfg.max_steps, cfg.augmentation) == ("Cu", 7, 3, True)
    assert cfg.measured_uris == [split.train["uri"]] and cfg.synthetic_uris == ["/x/syn.zarr"]
    assert cfg.progress_bar is False
    plain = training_config(config, split, None)
    assert plain.augmentation is False and plain.synthetic_uris == []
    forced = RecalibrationConfig(root=str(tmp_path), dataset="toy", training={"augmentation": True})
    with pytest.raises(ValueError, match="augmentation is true but synthesis produced no store"):
        training_config(forced, split, None)


@pytest.mark.slow
def test_trust_calibration_and_heldout_comparison(store, tmp_path):
    from libs_pipeline.models import save_model, train_model

    s, version = store
    split = write_training_split(tmp_path, "toy", version, 0.25, seed=0)
    config = RecalibrationConfig(
        root=str(tmp_path), dataset="toy", synthesis={"per_sample": 0},
        training={"max_steps": 10, "eval_every": 5, "batch_size": 16, "val_fraction": 0.34, "stem_channels": 2,
                  "block_channels": [2], "dense_units": 8, "head_units": 4},
    )
    cfg = training_config(config, split, None)
    model = train_model(cfg.measured_uris, cfg)
    model_dir = save_model(model, tmp_path / "m1")
    trust = calibrate_trust(split, model_dir)
    assert trust["trust_threshold"] > 0 and (model_dir / "trust.json").is_file()
    assert set(trust["training_metrics"]["val_samples"]).isdisjoint(split.heldout)

    no_trust = save_model(model, tmp_path / "m2")
    # a model trained on a grid the held-out spectra do not cover cannot be applied
    wide = toy_campaign(n_samples=4, n_shots=4, n_channels=512)
    wide = wide.assign_coords(wavelength=np.linspace(290.0, 410.0, 512))
    wide_version = s.write_version("wide", wide, sources=[{}], reader="dataset")
    wide_cfg = cfg.model_copy(update={"measured_uris": [s.uri("wide", wide_version)], "val_fraction": 0.0,
                                      "max_steps": 2})
    wide_dir = save_model(train_model(wide_cfg.measured_uris, wide_cfg), tmp_path / "m3")

    result = compare_on_heldout(
        split, {"challenger": str(model_dir), "plain": str(no_trust), "wide": str(wide_dir)}, tmp_path / "report"
    )
    assert list(result.table.index) == ["challenger", "plain", "univariate", "pls", "wide"]
    ch = result.metrics["challenger"]
    assert np.isfinite(ch["rmsep"]) and 0.0 <= ch["flag_rate"] <= 1.0 and ch["n_spectra"] == 16 * len(split.heldout)
    assert result.metrics["plain"]["rmsep"] == pytest.approx(ch["rmsep"])  # same weights, no trust.json
    assert np.isnan(result.metrics["plain"]["flag_rate"])
    # the trusted model's flags are judged against its errors: flagged vs kept RMSEP and a trust figure
    assert {"rmsep_flagged", "rmsep_kept", "error_auroc", "wrong_flagged_fraction"} <= set(ch) and "rmsep_kept" not in result.metrics["plain"]
    split_rms = [v for v in (ch["rmsep_flagged"], ch["rmsep_kept"]) if v is not None]
    assert split_rms and all(np.isfinite(split_rms))
    assert result.figures["trust_challenger"].endswith("trust_challenger.png")
    assert open(result.figures["trust_challenger"], "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert np.isnan(result.metrics["wide"]["rmsep"])
    assert any("wide" in n and "cover only" in n for n in result.notes)
    assert any("plain" in n and "no trust.json" in n for n in result.notes)
    assert {p.name for p in (tmp_path / "report").iterdir()} == {
        "parity.png", "residuals.png", "trust_challenger.png", "metrics.csv", "predictions.csv", "baselines"
    }
    # the baselines fitted on the training split are saved as servable models (one may be served instead)
    assert set(result.baseline_dirs) == {"univariate", "pls"}
    from libs_pipeline.candidates import load_servable

    for name, path in result.baseline_dirs.items():
        assert load_servable(path).kind == name


@pytest.mark.slow
def test_trust_samples_are_neither_trained_on_nor_early_stopping_and_a_reuse_is_refused(tmp_path):
    import dataclasses

    from libs_pipeline.evaluation.protocol import LeakError
    from libs_pipeline.models import save_model, train_model

    s = SpectraStore(tmp_path)
    version = s.write_version("toy", toy_campaign(n_samples=12, n_shots=10, n_channels=256), sources=[{}],
                              reader="dataset")
    split = write_training_split(tmp_path, "toy", version, 0.25, seed=0, trust_fraction=0.25)
    assert split.trust_samples and not set(split.trust_samples) & (set(split.heldout) | set(split.train_samples))
    assert sorted(split.heldout + split.trust_samples + split.train_samples) == [f"S{i:02d}" for i in range(12)]
    train = s.open("toy.train", split.train["version"])
    assert not set(train["sample_id"].values.astype(str)) & set(split.trust_samples)  # not in the training part
    assert TrainingSplit.from_dict(split.to_dict()) == split
    config = RecalibrationConfig(
        root=str(tmp_path), dataset="toy", synthesis={"per_sample": 0},
        training={"max_steps": 6, "eval_every": 3, "batch_size": 16, "val_fraction": 0.34, "stem_channels": 2,
                  "block_channels": [2], "dense_units": 8, "head_units": 4},
    )
    cfg = training_config(config, split, None)
    model_dir = save_model(train_model(cfg.measured_uris, cfg), tmp_path / "m")
    trust = calibrate_trust(split, model_dir)
    assert trust["trust_samples"] == split.trust_samples and trust["trust_samples_role"].startswith("reserved")
    val = trust["training_metrics"]["val_samples"]
    leaky = dataclasses.replace(split, trust_samples=[val[0], *split.trust_samples])
    with pytest.raises(LeakError, match=f"sample '{val[0]}' is used for both early stopping and trust calibration"):
        calibrate_trust(leaky, model_dir)
