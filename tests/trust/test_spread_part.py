"""The ensemble-spread trust part: an ensemble reports its members' disagreement, trust scales it on
in-distribution spectra and flags a spectrum the members disagree on, with a reason that says so."""

from __future__ import annotations

import copy

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
from libs_pipeline.trust.scales import area_column
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
    # the error score: the spread scaled by the predicted concentration, plus the consistency parts' excess over
    # their in-distribution range; the flag does not enter
    consistency = [p for p in cal.part_names() if p.startswith("cons:")]
    assert len(consistency) == 2 and cal.error_parts() == ["spread", *consistency]
    for table in (typical, flagged, calm):
        err = table["error_score"].to_numpy()
        assert ((err >= 0) & (err <= 1)).all()
    # known answer, by hand: z = ((log s - c) / σ + ½ (log(max(ĉ, 0) + e^c) - c) / σ) / tail
    #                            + max(0, max over lines |z_cons| / tail_cons - 1.96), score Φ(z)
    scale, tail = cal.spread_scale, cal.part_tails.get("spread", 1.0)
    s, c_hat = pred["Cu:spread"].astype(float), np.clip(pred["Cu"].astype(float), 0, None)
    excess = np.clip(np.max([np.abs(typical[p].to_numpy()) / cal.part_tails.get(p, 1.0) for p in consistency], axis=0)
                     - 1.96, 0, None)
    assert (excess > 0).any() and (excess == 0).any()  # both branches of the excess are exercised
    z = ((np.log(s) - scale.center) / scale.spread
         + 0.5 * (np.log(c_hat + np.exp(scale.center)) - scale.center) / scale.spread) / tail + excess
    expected = ndtr(z)
    np.testing.assert_allclose(typical["error_score"].to_numpy(), expected, rtol=1e-12)

    # more disagreement at the same prediction, or a larger prediction at the same disagreement: more suspect
    wider = trust_scores(cal, dict(pred, **{"Cu:spread": pred["Cu:spread"] * 1.5}), measured)
    assert (wider["error_score"].to_numpy() > typical["error_score"].to_numpy()).all()
    larger = trust_scores(cal, dict(pred, Cu=np.abs(pred["Cu"]) * 2 + 0.1), measured)
    smaller = trust_scores(cal, dict(pred, Cu=np.abs(pred["Cu"])), measured)
    assert (larger["error_score"].to_numpy() > smaller["error_score"].to_numpy()).all()
    # in the size factor a negative prediction counts as zero, not as a certain one (consistency parts off, since
    # the line areas contradict a negative number more than zero); an unknown spread is the most suspect
    size_only = copy.deepcopy(cal)
    size_only.consistency_scales = {}
    negative = trust_scores(size_only, dict(pred, Cu=-np.abs(pred["Cu"]) - 1), measured)
    zero = trust_scores(size_only, dict(pred, Cu=np.zeros_like(pred["Cu"])), measured)
    np.testing.assert_allclose(negative["error_score"].to_numpy(), zero["error_score"].to_numpy(), rtol=1e-12)
    assert (trust_scores(cal, dict(pred, Cu=-np.abs(pred["Cu"]) - 1), measured)["error_score"]
            >= zero["error_score"]).all()
    unknown = trust_scores(cal, dict(pred, **{"Cu:spread": np.full_like(pred["Cu:spread"], np.nan)}), measured)
    np.testing.assert_array_equal(unknown["error_score"].to_numpy(), 1.0)
    assert (flagged["error_score"] > 0.9).all() and typical["flag"].any() and not typical["flag"].all()
    assert (calm["error_score"].to_numpy() < 0.5).all()
    with pytest.raises(ValueError, match="Cu:spread"):
        trust_scores(cal, {k: v for k, v in pred.items() if k != "Cu:spread"}, measured)


def test_error_score_ranks_a_prediction_the_line_areas_contradict_higher(ensemble_setup):
    """Every member predicts the same, but the measured line areas imply another concentration (what a change
    moving all members alike does): the spread is unchanged, the consistency excess ranks the number as more
    suspect; inside the in-distribution range the consistency parts change nothing."""
    model, train, validation = ensemble_setup
    cal = calibrate_model_trust(model, train, validation, TrustConfig(spectral_parts=False))
    x = validation["intensity"].values[:30]
    pred = model.predict(x)
    measured = measure_spectra(x, model.wavelength, model_lines(model))
    typical = trust_scores(cal, pred, measured)
    contradicted = measured.copy()
    for line in cal.lines:
        contradicted[area_column(line)] = measured[area_column(line)] * 4.0
    off = trust_scores(cal, pred, contradicted)
    consistency = [p for p in cal.part_names() if p.startswith("cons:")]
    assert (off[consistency].abs().max(axis=1) > 1.96).all()
    np.testing.assert_array_equal(off["spread"].to_numpy(), typical["spread"].to_numpy())
    assert (off["error_score"].to_numpy() > typical["error_score"].to_numpy()).all()
    inside = typical[consistency].abs().max(axis=1).to_numpy() <= 1.96
    assert inside.any()
    scale, tail = cal.spread_scale, cal.part_tails.get("spread", 1.0)
    s, c_hat = pred["Cu:spread"].astype(float), np.clip(pred["Cu"].astype(float), 0, None)
    spread_only = ndtr(((np.log(s) - scale.center) + 0.5 * np.log1p(c_hat / np.exp(scale.center))) / scale.spread / tail)
    np.testing.assert_allclose(typical["error_score"].to_numpy()[inside], spread_only[inside], rtol=1e-12)


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
