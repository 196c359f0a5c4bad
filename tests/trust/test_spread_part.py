"""The ensemble-spread trust part: an ensemble reports its members' disagreement, trust scales it on
in-distribution spectra and flags a spectrum the members disagree on, with a reason that says so."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import ndtr

from libs_pipeline.candidates.ensemble import EnsembleModel, spread_task
from libs_pipeline.config import TrustConfig
from libs_pipeline.spectra.dataset import sample_ids, select_samples
from libs_pipeline.testing.trust_fakes import RidgeStandIn, toy
from libs_pipeline.trust.calibration import TrustCalibration
from libs_pipeline.trust.measurements import measure_spectra
from libs_pipeline.trust.prediction import calibrate_model_trust, model_lines
from libs_pipeline.trust.scores import trust_scores


@pytest.fixture(scope="module")
def ensemble_setup(cu_lines):
    """Four ridge stand-ins, each fitted on 6 of 8 training samples (so they disagree a little), and trust data."""
    train = toy("T", n_samples=8, n_shots=20, seed=10)
    validation = toy("V", n_samples=10, n_shots=30, seed=11, cu_range=(0.15, 4.9))
    ids = sample_ids(train)
    members = [RidgeStandIn("Cu", cu_lines).fit(select_samples(train, [s for j, s in enumerate(ids) if j % 4 != k]))
               for k in range(4)]
    return EnsembleModel(members), train, validation


def test_ensemble_predict_adds_the_members_standard_deviation(ensemble_setup):
    model, _, validation = ensemble_setup
    x = validation["intensity"].values[:7]
    out = model.predict(x)
    members = np.stack([m.predict(x)["Cu"] for m in model.members])
    assert set(out) == {*model.task_names, "Cu:spread"} and spread_task("Cu") == "Cu:spread"
    np.testing.assert_allclose(out["Cu"], members.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(out["Cu:spread"], members.std(axis=0, ddof=1), rtol=1e-6)
    assert (out["Cu:spread"] > 0).all()
    assert "Cu:spread" not in EnsembleModel(model.members[:1]).predict(x)


def test_spread_part_is_calibrated_saved_and_flags_disagreement(ensemble_setup):
    model, train, validation = ensemble_setup
    cal = calibrate_model_trust(model, train, validation, TrustConfig(spectral_parts=False))
    assert "spread" in cal.part_names() and "spread" not in cal.disabled_parts
    again = TrustCalibration.from_dict(cal.to_dict())
    assert again.spread_scale == cal.spread_scale and again.part_names() == cal.part_names()

    x = validation["intensity"].values[:20]
    pred = model.predict(x)
    measured = measure_spectra(x, model.wavelength, model_lines(model))
    typical = trust_scores(cal, pred, measured)
    assert (typical["spread"] >= 0).all() and typical["spread"].median() < 2.0
    # the same spectra, but the members now disagree 20x as much as usual: flagged, and the reason says why
    wild = dict(pred, **{"Cu:spread": pred["Cu:spread"] * 20})
    flagged = trust_scores(cal, wild, measured)
    assert flagged["flag"].all()
    assert (flagged["top_part"] == "spread").all()
    assert flagged["reason"].str.contains("ensemble's networks disagree").all()
    # members agreeing more closely than usual is no reason for doubt (one-sided)
    calm = trust_scores(cal, dict(pred, **{"Cu:spread": pred["Cu:spread"] * 0.01}), measured)
    assert (calm["spread"] == 0).all()
    # the error score: the spread's percentile scaled by the predicted concentration; the flag does not enter
    assert cal.error_parts() == ["spread"]
    for table in (typical, flagged, calm):
        err = table["error_score"].to_numpy()
        assert ((err >= 0) & (err <= 1)).all()
    # known answer, by hand: z = ((log s - c) / σ + ½ (log(max(ĉ, 0) + e^c) - c) / σ) / tail, score Φ(z)
    scale, tail = cal.spread_scale, cal.part_tails.get("spread", 1.0)
    s, c_hat = pred["Cu:spread"].astype(float), np.clip(pred["Cu"].astype(float), 0, None)
    z = ((np.log(s) - scale.center) / scale.spread
         + 0.5 * (np.log(c_hat + np.exp(scale.center)) - scale.center) / scale.spread) / tail
    expected = ndtr(z)
    np.testing.assert_allclose(typical["error_score"].to_numpy(), expected, rtol=1e-12)

    # more disagreement at the same prediction, or a larger prediction at the same disagreement: more suspect
    wider = trust_scores(cal, dict(pred, **{"Cu:spread": pred["Cu:spread"] * 1.5}), measured)
    assert (wider["error_score"].to_numpy() > typical["error_score"].to_numpy()).all()
    larger = trust_scores(cal, dict(pred, Cu=np.abs(pred["Cu"]) * 2 + 0.1), measured)
    smaller = trust_scores(cal, dict(pred, Cu=np.abs(pred["Cu"])), measured)
    assert (larger["error_score"].to_numpy() > smaller["error_score"].to_numpy()).all()
    # a negative prediction counts as zero, not as a certain one; an unknown spread is the most suspect
    negative = trust_scores(cal, dict(pred, Cu=-np.abs(pred["Cu"]) - 1), measured)
    zero = trust_scores(cal, dict(pred, Cu=np.zeros_like(pred["Cu"])), measured)
    np.testing.assert_allclose(negative["error_score"].to_numpy(), zero["error_score"].to_numpy(), rtol=1e-12)
    unknown = trust_scores(cal, dict(pred, **{"Cu:spread": np.full_like(pred["Cu:spread"], np.nan)}), measured)
    np.testing.assert_array_equal(unknown["error_score"].to_numpy(), 1.0)
    assert (flagged["error_score"] > 0.9).all() and typical["flag"].any() and not typical["flag"].all()
    assert (calm["error_score"].to_numpy() < 0.5).all()
    with pytest.raises(ValueError, match="Cu:spread"):
        trust_scores(cal, {k: v for k, v in pred.items() if k != "Cu:spread"}, measured)


def test_single_network_or_switched_off_has_no_spread_part(ensemble_setup):
    model, train, validation = ensemble_setup
    single = calibrate_model_trust(model.members[0], train, validation, TrustConfig(spectral_parts=False))
    assert "spread" not in single.part_names() and single.error_parts() == single.part_names()
    assert single.disabled_parts["spread"] == "the model is a single network: no ensemble spread to check"
    off = calibrate_model_trust(model, train, validation, TrustConfig(spectral_parts=False, spread_part=False))
    assert off.disabled_parts["spread"] == "switched off (TrustConfig.spread_part is false)"


def test_bad_spread_scale_in_trust_json_is_named(ensemble_setup):
    model, train, validation = ensemble_setup
    d = calibrate_model_trust(model, train, validation, TrustConfig(spectral_parts=False)).to_dict()
    d["spread_scale"]["spread"] = -1.0
    with pytest.raises(ValueError, match="field 'spread_scale.spread' must be positive"):
        TrustCalibration.from_dict(d)
    d["spread_scale"] = "wide"
    with pytest.raises(ValueError, match="field 'spread_scale' must be an object"):
        TrustCalibration.from_dict(d)
