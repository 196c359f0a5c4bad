"""Out-of-sample realism: a right noise model passes the split-shot checks, deliberately wrong ones fail."""

from __future__ import annotations

import json

import numpy as np
import pytest

from libs_pipeline.spectra.dataset import make_spectra_dataset
from libs_pipeline.synth.noise_model import fit_noise_model, sample_spectra
from libs_pipeline.synth.realism_holdout import HoldoutThresholds, holdout_realism, split_shots
from libs_pipeline.testing import MATRIX_LINES_NM, toy_mean_spectrum, toy_wavelength

FAST = {"n_synthetic": 100, "n_null": 50}
TINY = {"n_synthetic": 20, "n_null": 20}


def _noise_x2(model, sample_id, n, rng):
    """Draws whose deviations from the mean are twice the model's."""
    mean = model.sampling_mean(sample_id)
    return mean + 2.0 * (sample_spectra(model, sample_id, n, rng) - mean)


def _mean_x115(model, sample_id, n, rng):
    return 1.15 * sample_spectra(model, sample_id, n, rng)


def _shape_campaign(n_samples=5, n_shots=10, seed=0, amplitude=0.25, gain=2.0, read_noise=5.0, shot_sigma=0.08):
    """Toy campaign whose matrix lines trade intensity from shot to shot (a plasma-temperature-like shape mode)."""
    rng = np.random.default_rng(seed)
    wl = toy_wavelength(512)
    sigma = 0.25 / 2.3548
    heights, signs = (8000.0, 12000.0, 9000.0, 15000.0), (1, 1, -1, -1)
    pattern = sum(s * h * np.exp(-0.5 * ((wl - c) / sigma) ** 2) for c, h, s in zip(MATRIX_LINES_NM, heights, signs))
    rows, sids, shots, labels = [], [], [], []
    for i, cu in enumerate(np.linspace(0.1, 5.0, n_samples)):
        mean = toy_mean_spectrum(wl, float(cu))
        for k in range(n_shots):
            expected = (mean + amplitude * rng.standard_normal() * pattern) * rng.normal(1.0, shot_sigma)
            rows.append(rng.poisson(np.clip(expected / gain, 0, None)) * gain + rng.normal(0, read_noise, wl.size))
            sids.append(f"S{i:02d}")
            shots.append(k)
            labels.append(round(float(cu), 3))
    return make_spectra_dataset(np.asarray(rows), wl, sids, shots, labels={"Cu": (labels, "wt%")})


@pytest.fixture(scope="module")
def toy_report(toy_ds):
    return holdout_realism(toy_ds, seed=1, **FAST)


@pytest.fixture(scope="module")
def shape_ds():
    return _shape_campaign()


def test_split_shots_halves_each_sample(toy_ds):
    fit, held = split_shots(toy_ds, seed=3)
    assert fit.sizes["spectrum"] == held.sizes["spectrum"] == 30
    assert not set(fit["spectrum"].values) & set(held["spectrum"].values)
    for sid in ("S00", "S05"):
        assert (fit["sample_id"].values == sid).sum() == 5 and (held["sample_id"].values == sid).sum() == 5
    again, _ = split_shots(toy_ds, seed=3)
    other, _ = split_shots(toy_ds, seed=4)
    assert np.array_equal(fit["spectrum"].values, again["spectrum"].values)
    assert not np.array_equal(fit["spectrum"].values, other["spectrum"].values)
    with pytest.raises(ValueError, match="needs at least 6"):
        split_shots(toy_ds.isel(spectrum=np.flatnonzero(toy_ds["shot"].values < 5)))


def test_right_model_passes_on_toy_data(toy_report):
    rep = toy_report
    assert rep.passed, rep.failures
    h = rep.holdout
    assert list(h["sample_id"]) == [f"S{i:02d}" for i in range(6)]
    assert (h["n_fit"] == 5).all() and (h["n_heldout"] == 5).all()
    assert h["shape_chi2"].between(0.7, 1.4).all()  # ~1 for a right model
    assert h["mean_ratio_median"].sub(1).abs().max() < 0.1
    assert rep.pcs["captured_heldout_by_syn"].gt(rep.pcs["captured_null_low"]).all()
    assert rep.pcs["n_pcs"].eq(3).all() and len(rep.pcs["cos_angles"].iloc[0]) == 3
    assert abs(rep.campaign["tstr_ratio"] - 1) < 0.1 and len(rep.tstr) == 6
    assert rep.campaign["total_fisher_p"] > 0.01


def test_report_serialises(toy_report, tmp_path):
    paths = toy_report.save(tmp_path / "report")
    data = json.loads(paths["json"].read_text())
    assert data["summary"]["passed"] is True and len(data["holdout"]) == 6 and len(data["tstr"]) == 6
    assert data["settings"]["seed"] == 1 and data["settings"]["lines"] == ["Cu I 324.75", "Cu I 327.40"]
    md = paths["markdown"].read_text()
    assert md == toy_report.to_markdown() and md.startswith("# Holdout realism report: PASSED")
    assert "## Residual principal components" in md and "| S05 |" in md


def test_noise_x2_fails(toy_ds):
    rep = holdout_realism(toy_ds, seed=1, sampler=_noise_x2, tstr=False, **FAST)
    assert not rep.passed
    for checks in rep.holdout["failed_checks"]:
        assert {"variance", "shape_chi2"} <= set(checks.split(","))
    assert rep.holdout["shape_chi2"].between(0.15, 0.4).all()  # ~1/4: the model's variance is 4x too large
    assert rep.pcs["failed_checks"].str.contains("pc_variance").sum() >= 3


def test_mean_x115_fails(toy_ds):
    rep = holdout_realism(toy_ds, seed=1, sampler=_mean_x115, **FAST)
    assert not rep.passed
    assert rep.campaign["total_fisher_p"] < 0.01  # each sample alone has little power, together they do
    assert rep.campaign["tstr_ratio"] > 1.5
    assert rep.holdout["mean_ratio_median"].between(1.05, 1.3).all()


def test_shape_modes_off_fails_when_the_data_have_them(shape_ds):
    model = fit_noise_model(split_shots(shape_ds, seed=0)[0])
    assert all(s.modes.shape[0] >= 1 for s in model.samples.values())
    right = holdout_realism(shape_ds, seed=0, tstr=False, **FAST)
    assert right.passed, right.failures
    off = holdout_realism(shape_ds, seed=0, model_options={"max_shape_modes": 0}, tstr=False, **FAST)
    assert not off.passed
    assert (off.pcs["captured_heldout_by_syn"] < right.pcs["captured_heldout_by_syn"]).all()
    assert (~off.pcs["passed"]).sum() >= 3  # measured: 3 of 5 samples fail the residual-PC checks


def test_same_seed_same_report(toy_ds):
    a = holdout_realism(toy_ds, seed=5, **TINY).to_dict()
    b = holdout_realism(toy_ds, seed=5, **TINY).to_dict()
    c = holdout_realism(toy_ds, seed=6, tstr=False, **TINY).to_dict()
    assert json.dumps(a) == json.dumps(b)
    assert a["holdout"][0]["shape_chi2"] != c["holdout"][0]["shape_chi2"]


def test_input_errors(toy_ds):
    with pytest.raises(ValueError, match="unknown keys"):
        holdout_realism(toy_ds, model_options={"gain": 2.0}, **FAST)
    with pytest.raises(ValueError, match="must be >= 20"):
        holdout_realism(toy_ds, n_synthetic=5)
    with pytest.raises(ValueError, match="no label variable 'Na'"):
        holdout_realism(toy_ds, "Na", **FAST)
    with pytest.raises(ValueError, match="alpha must lie in"):
        HoldoutThresholds(alpha=1.5)


def test_sample_whose_half_cannot_be_fitted_is_reported(toy_ds):
    rng = np.random.default_rng(0)
    flat = toy_ds["intensity"].values.copy()
    rows = toy_ds["sample_id"].values == "S05"
    flat[rows] = rng.poisson(100.0, flat[rows].shape)  # every channel has the same mean: no gain is measurable
    ds = toy_ds.assign(intensity=(("spectrum", "wavelength"), flat.astype(np.float32)))
    rep = holdout_realism(ds, seed=1, tstr=False, **TINY)
    assert not rep.passed
    assert rep.holdout.set_index("sample_id").loc["S05", "failed_checks"] == "noise_fit"
    assert rep.failures[0].startswith("sample S05: noise model not fitted on its fit half: sample 'S05': channel means")
    assert rep.holdout["passed"].sum() >= 4  # the other samples are still checked
    assert json.dumps(rep.to_dict())  # NaN statistics of the unfitted sample serialise as null
