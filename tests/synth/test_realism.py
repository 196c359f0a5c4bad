"""Realism report: synthetic spectra from a correct model pass, deliberately wrong models fail."""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from libs_pipeline.features.lines import LineWindow, default_lines
from libs_pipeline.spectra.dataset import make_spectra_dataset
from libs_pipeline.synth.generate import generate_synthetic
from libs_pipeline.synth.noise_model import fit_noise_model, sample_spectra
from libs_pipeline.synth.realism import RealismThresholds, realism_report, report_store
from libs_pipeline.synth.synthetic_store import open_synthetic

CU = default_lines("Cu")


def _synthetic(model, n, seed=0, transform=None):
    """Draws of every model sample as a canonical dataset (``transform`` breaks the model on purpose)."""
    rng = np.random.default_rng(seed)
    blocks = [sample_spectra(model, s, n, rng) for s in model.sample_ids]
    if transform is not None:
        blocks = [transform(model.sample(s), b) for s, b in zip(model.sample_ids, blocks)]
    ids = np.repeat(model.sample_ids, n)
    return make_spectra_dataset(np.concatenate(blocks), model.wavelength, ids, np.tile(np.arange(n), len(model.sample_ids)))


def _noise_off(sample, block):
    return np.repeat(sample.mean[None, :], block.shape[0], axis=0)


def _no_shot_factor(sample, block):
    # Poisson + read noise only: the multiplicative shot-to-shot factor left out
    rng = np.random.default_rng(1)
    lam = np.maximum(sample.mean, 0) / sample.gain
    return rng.poisson(lam, block.shape) * sample.gain + rng.normal(0, sample.read_noise, block.shape)


@pytest.fixture(scope="module")
def virtual_campaign():
    """A small virtual campaign from the physics helper's instrument: 4 samples x 20 shots, 300-400 nm."""
    pytest.importorskip("libs_pipeline.physics.campaign")
    from libs_pipeline.config import CampaignConfig
    from libs_pipeline.physics.campaign import simulate_campaign

    config = CampaignConfig(
        n_samples=4, n_shots=20, n_channels=1024, wavelength_start_nm=300.0, wavelength_stop_nm=400.0,
        basis_temperatures=2, basis_densities=2,
    )
    return simulate_campaign(config, seed=0, workers=1).spectra


def test_toy_store_passes_and_report_files_are_written(toy_ds, toy_zarr, tmp_path):
    uri = generate_synthetic(toy_zarr, tmp_path, 300, seed=2, chunk_size=128)
    report, paths = report_store(toy_zarr, uri)
    assert report.passed, report.failures
    assert list(report.per_sample["sample_id"]) == [f"S{i:02d}" for i in range(6)]
    row = report.per_sample.iloc[0]
    assert row["n_measured"] == 10 and row["n_synthetic"] == 300
    assert abs(row["mean_ratio_median"] - 1) < 0.03 and 0.7 < row["variance_ratio_median"] < 1.4
    assert {"Cu I 324.75:area:ks", "Cu I 327.40:area:ks_p", "total_intensity:ks"} <= set(report.per_sample.columns)
    assert paths["figure"] == Path(uri).parent / f"{Path(uri).stem}.realism" / "realism.png"
    assert paths["figure"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths["figure"].stat().st_size > 20_000
    saved = json.loads(paths["json"].read_text())
    assert saved["summary"]["passed"] is True and len(saved["per_sample"]) == 6
    assert paths["markdown"].read_text().startswith("# Realism report: PASSED")


def test_noise_off_fails_the_variance_checks(toy_ds):
    model = fit_noise_model(toy_ds)
    report = realism_report(toy_ds, _synthetic(model, 200, transform=_noise_off), CU)
    assert not report.passed
    assert set(report.per_sample["failed_checks"].str.split(",").explode()) >= {"variance", "variance_spread"}
    assert any("median channel variance ratio 0.000" in f for f in report.failures)
    assert report.to_markdown().startswith("# Realism report: FAILED")


def test_missing_shot_factor_fails(toy_ds):
    model = fit_noise_model(toy_ds)
    report = realism_report(toy_ds, _synthetic(model, 300, transform=_no_shot_factor), CU)
    assert not report.passed
    # variance too low everywhere (by beta^2 m^2); with 10 measured shots some samples stay inside the band
    assert (report.per_sample["variance_ratio_median"] < 0.85).all()
    assert report.per_sample["failed_checks"].str.contains("variance").sum() >= 2


def test_biased_mean_fails_the_mean_check(toy_ds):
    model = fit_noise_model(toy_ds)
    report = realism_report(toy_ds, _synthetic(model, 300, transform=lambda s, b: b * 1.15), CU)
    assert not report.passed
    assert all("mean" in checks.split(",") for checks in report.per_sample["failed_checks"])


def test_virtual_campaign_synthetic_passes_and_broken_model_fails(virtual_campaign, tmp_path):
    measured = virtual_campaign
    model = fit_noise_model(measured)
    assert all(s.modes.shape[0] >= 1 for s in model.samples.values())  # plasma-temperature shape fluctuations
    good = realism_report(measured, _synthetic(model, 400, seed=3), CU)
    assert good.passed, good.failures
    broken = realism_report(measured, _synthetic(model, 400, seed=3, transform=_noise_off), CU)
    assert not broken.passed
    assert len(broken.failures) >= len(model.sample_ids)
    good.plot(tmp_path / "virtual.png")
    assert (tmp_path / "virtual.png").stat().st_size > 20_000


def test_report_input_errors(toy_ds):
    model = fit_noise_model(toy_ds)
    syn = _synthetic(model, 20)
    with pytest.raises(ValueError, match="need at least one LineWindow"):
        realism_report(toy_ds, syn, [])
    other = syn.assign(sample_id=("spectrum", np.array(["X"] * syn.sizes["spectrum"])))
    with pytest.raises(ValueError, match="no sample is in both datasets"):
        realism_report(toy_ds, other, CU)
    shifted = syn.assign_coords(wavelength=syn["wavelength"].values + 1.0)
    with pytest.raises(ValueError, match="wavelength grids differ"):
        realism_report(toy_ds, shifted, CU)
    far = LineWindow("Zn I 481", "Zn", 481.0, (480.5, 481.5), ((479.0, 480.0),))
    with pytest.raises(ValueError, match="wavelength grid covers"):
        realism_report(toy_ds, syn, [far])
    with pytest.raises(ValueError, match="ks_alpha must lie in"):
        RealismThresholds(ks_alpha=0)


def test_real_oreas_data_fit_and_realism(oreas_dir):
    rows = list(csv.DictReader((oreas_dir / "Na_ppm_from_tutorial.csv").open()))
    shots, sids, labels = [], [], []
    for row in rows:
        table = np.loadtxt(oreas_dir / row["file"], delimiter=",")
        wavelength = table[:, 0]
        shots.append(table[:, 1:].T)
        sids += [row["sample"]] * (table.shape[1] - 1)
        labels += [float(row["Na_ppm"])] * (table.shape[1] - 1)
    measured = make_spectra_dataset(np.concatenate(shots), wavelength, sids, np.arange(len(sids)) % 10,
                                    labels={"Na": (labels, "ppm")})
    model = fit_noise_model(measured)
    assert model.integer and model.floor == 0.0
    assert 37_500 < model.saturation < 38_500  # README: saturates near 38 000 counts
    for s in model.samples.values():
        assert s.n_fit_channels < measured.sizes["wavelength"]  # saturated / clipped channels left out
        assert 0.5 < s.gain < 20 and 0.05 < s.shot_sigma < 0.3  # README: 7-19 % total-intensity spread
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = realism_report(measured, _synthetic(model, 200), default_lines("Na"))
    assert report.passed, report.failures


def test_report_reads_at_most_max_synthetic_per_sample(toy_ds, toy_zarr, tmp_path):
    uri = generate_synthetic(toy_zarr, tmp_path, 40, seed=1, chunk_size=16)
    report = realism_report(toy_ds, open_synthetic(uri), CU, max_synthetic_per_sample=10)
    assert report.per_sample["n_synthetic"].tolist() == [10] * 6
