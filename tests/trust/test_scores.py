"""Trust scores on toy data: the calibrated rate holds on fresh data, shifts are flagged, reasons name the line."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from libs_pipeline.features.line_features import line_features
from libs_pipeline.testing import toy_campaign
from libs_pipeline.trust.ood_evaluation import auroc
from libs_pipeline.trust.scores import combine_parts, sample_trust, trust_parts, trust_scores


@pytest.fixture(scope="module")
def fresh():
    """Fresh in-distribution data: new samples (other concentrations, other seed) from the same instrument."""
    return toy_campaign(n_samples=13, n_shots=80, seed=12, cu_range=(0.12, 4.95))


def _score(setup, ds, intensity=None):
    model, cal, _, _ = setup
    x = ds["intensity"].values if intensity is None else intensity
    return trust_scores(cal, model.predict(x), line_features(x, ds["wavelength"].values, model.lines))


def test_calibrated_threshold_holds_on_fresh_in_distribution_data(trust_setup, fresh):
    table = _score(trust_setup, fresh)
    assert len(table) == 13 * 80
    rate = table["flag"].mean()
    assert 0.03 <= rate <= 0.07, rate
    assert (table.loc[~table["flag"], "reason"] == "").all()
    assert (table.loc[table["flag"], "reason"] != "").all()


def test_output_columns_and_parts(trust_setup, fresh):
    cal = trust_setup[1]
    table = _score(trust_setup, fresh.isel(spectrum=slice(0, 5)))
    names = ["aux:Cu I 324.75", "aux:Cu I 327.40", "cons:Cu I 324.75", "cons:Cu I 327.40"]
    assert list(table.columns[:6]) == ["prediction", "score", "error_score", "flag", "reason", "top_part"]
    for col in names + ["implied:Cu I 324.75", "implied:Cu I 327.40"]:
        assert col in table.columns
    assert cal.part_names() == names and cal.combine == "max"
    # the score is the max over parts of |z| / the part's cross-fitted tail factor (>= 1)
    tails = np.array([cal.part_tails.get(p, 1.0) for p in names])
    assert (tails >= 1.0).all()
    np.testing.assert_allclose(table["score"], (table[names].abs() / tails).max(axis=1))


def test_gain_change_is_flagged_with_areas_above_prediction(trust_setup, fresh):
    base = _score(trust_setup, fresh)
    gained = _score(trust_setup, fresh, fresh["intensity"].values * 1.5)
    assert auroc(base["score"], gained["score"]) > 0.9
    assert gained["flag"].mean() > 0.8
    flagged = gained.loc[gained["flag"], "reason"]
    assert flagged.str.contains("area .*σ above prediction|σ below the .* implied by", regex=True).mean() > 0.9


def test_interfering_line_explanation_names_the_interfered_line(trust_setup, fresh):
    """An unexpected emission line on Cu I 327.40 only: the explanation must name 327.40, not 324.75.

    The model sees the clean spectrum (its prediction is unaffected), the measured features come from the
    interfered one, as when the model is robust to the extra line but the line window is not.
    """
    model, cal, _, _ = trust_setup
    wl = fresh["wavelength"].values
    clean = fresh["intensity"].values
    interfered = clean + 3000.0 * np.exp(-0.5 * ((wl - 327.40) / 0.106) ** 2)
    table = trust_scores(cal, model.predict(clean), line_features(interfered, wl, model.lines))
    assert table["flag"].mean() > 0.9
    flagged = table[table["flag"]]
    first = flagged["reason"].str.split(";").str[0]
    assert flagged["top_part"].str.endswith("Cu I 327.40").mean() > 0.97
    assert first.str.contains("Cu I 327.40").mean() > 0.97
    assert (flagged["aux:Cu I 327.40"] > 3).mean() > 0.9  # measured above prediction
    # every clearly flagged spectrum (score > 2x threshold) blames 327.40 first, never 324.75
    clear = flagged["score"] > 2 * cal.threshold
    assert clear.mean() > 0.5
    assert flagged.loc[clear, "top_part"].str.endswith("Cu I 327.40").all()
    assert not first[clear].str.contains("324.75").any()


def test_wavelength_shift_drops_measured_areas_below_prediction(trust_setup, fresh):
    model, cal, _, _ = trust_setup
    wl = fresh["wavelength"].values
    shifted = np.roll(fresh["intensity"].values, 2, axis=1)
    table = trust_scores(cal, model.predict(shifted), line_features(shifted, wl, model.lines))
    assert table["flag"].mean() > 0.95
    assert table["reason"].str.contains("area .*σ below prediction", regex=True).mean() > 0.9


def test_unmeasurable_line_makes_score_infinite_and_says_so(trust_setup, fresh):
    model, cal, _, _ = trust_setup
    x = fresh["intensity"].values[:3]
    areas = line_features(x, fresh["wavelength"].values, model.lines)
    areas.loc[1, "Cu I 324.75:area"] = np.nan
    table = trust_scores(cal, model.predict(x), areas)
    assert np.isinf(table["score"].iat[1]) and table["flag"].iat[1]
    assert table["reason"].iat[1].startswith("Cu I 324.75 area could not be measured")
    preds = model.predict(x)
    preds["Cu"][2] = np.nan
    table = trust_scores(cal, preds, line_features(x, fresh["wavelength"].values, model.lines))
    assert "model output for Cu is not a finite number" in table["reason"].iat[2]


def test_input_errors(trust_setup, fresh):
    model, cal, _, _ = trust_setup
    x = fresh["intensity"].values[:4]
    areas = line_features(x, fresh["wavelength"].values, model.lines)
    preds = model.predict(x)
    with pytest.raises(ValueError, match="measured has 3 rows but predictions have 4"):
        trust_parts(cal, preds, areas.iloc[:3])
    with pytest.raises(ValueError, match="measured has no column 'Cu I 327.40:area'"):
        trust_parts(cal, preds, areas.drop(columns="Cu I 327.40:area"))
    with pytest.raises(ValueError, match="no auxiliary task 'Cu I 324.75:area'"):
        trust_parts(cal, {"Cu": preds["Cu"]}, areas)
    with pytest.raises(ValueError, match="no analyte task 'Cu'"):
        trust_parts(cal, {"Zn": preds["Cu"]}, areas)
    with pytest.raises(ValueError, match="predictions\\['Cu I 324.75:area'\\] has 3 rows, expected 4"):
        trust_parts(cal, {**preds, "Cu I 324.75:area": preds["Cu"][:3]}, areas)
    with pytest.raises(ValueError, match="combine must be"):
        combine_parts(trust_parts(cal, preds, areas), cal.part_names(), "mean")


def test_combine_max_and_rms():
    parts = pd.DataFrame({"a": [3.0, -4.0, np.inf], "b": [4.0, 0.0, 1.0]})
    np.testing.assert_allclose(combine_parts(parts, ["a", "b"], "max")[:2], [4.0, 4.0])
    np.testing.assert_allclose(combine_parts(parts, ["a", "b"], "rms")[:2], [np.sqrt(12.5), np.sqrt(8.0)])
    assert np.isinf(combine_parts(parts, ["a", "b"], "rms")[2])


def test_sample_trust_aggregates_shots(trust_setup, fresh):
    model, cal, _, _ = trust_setup
    sub = fresh.isel(spectrum=slice(0, 160))  # samples S00, S01: 80 shots each
    x = sub["intensity"].values.copy()
    x[80:] *= 1.6  # S01 gain-shifted: most of its shots are flagged
    table = trust_scores(cal, model.predict(x), line_features(x, sub["wavelength"].values, model.lines))
    unc = np.full(160, 0.1)
    samples = sample_trust(table, sub["sample_id"].values, cal, uncertainty=unc)
    assert list(samples["sample_id"]) == ["S00", "S01"]
    assert list(samples["n_spectra"]) == [80, 80]
    s0, s1 = samples.iloc[0], samples.iloc[1]
    assert s0["flagged_fraction"] == pytest.approx(table["flag"].iloc[:80].mean())
    assert not s0["flag"] and s0["reason"] == ""
    assert s1["flag"] and s1["flagged_fraction"] > 0.5
    assert s1["reason"].startswith(f"{int(table['flag'].iloc[80:].sum())}/80 shots flagged; ")
    assert s0["prediction"] == pytest.approx(table["prediction"].iloc[:80].mean())
    assert s0["score"] == pytest.approx(table["score"].iloc[:80].median())
    expected = np.sqrt(0.01 + table["prediction"].iloc[:80].var(ddof=1) / 80)
    assert s0["uncertainty"] == pytest.approx(expected)
    with pytest.raises(ValueError, match="sample_ids has 3 entries but the table has 160 rows"):
        sample_trust(table, ["a", "b", "c"], cal)


def _full_score(setup, ds, intensity=None):
    from libs_pipeline.trust.measurements import measure_spectra

    model, cal, _, _ = setup
    x = ds["intensity"].values if intensity is None else intensity
    return trust_scores(cal, model.predict(x), measure_spectra(x, ds["wavelength"].values, model.lines, cal.spectral))


def test_full_parts_hold_the_rate_and_name_the_cause(full_trust_setup, fresh):
    """With mean intensity and the spectral reference: gain -> intensity part, axis shift -> wavelength part
    (named first), a foreign element's lines -> shape part; the in-distribution rate still holds."""
    model, cal, _, _ = full_trust_setup
    assert cal.part_names()[-4:] == ["intensity", "wavelength", "shape", "noise"] and not cal.per_total_areas
    base = _full_score(full_trust_setup, fresh)
    assert 0.03 <= base["flag"].mean() <= 0.07
    x = fresh["intensity"].values
    gained = _full_score(full_trust_setup, fresh, x * 0.6)
    assert gained["flag"].mean() > 0.9 and (gained["intensity"] < -3).mean() > 0.9
    # the stand-in predicts absolute areas, so the line-area parts see the gain too at high Cu
    # (and the noise part: shot noise per count drops with the gain)
    assert gained["top_part"].isin(["intensity", "noise", "aux:Cu I 324.75", "aux:Cu I 327.40"]).all()
    assert gained["noise_per_count_ratio"].median() == pytest.approx(0.6, abs=0.05)
    assert gained["intensity_ratio"].median() == pytest.approx(0.6, abs=0.03)
    low_cu = gained["prediction"] < 1.0  # where the line parts are weak, the level parts explain the flag
    assert gained.loc[low_cu, "top_part"].isin(["intensity", "noise"]).all()
    assert gained.loc[low_cu, "reason"].str.match(r"(intensity 0\.\d\dx the level expected|shot noise per count 0\.\d\dx)").all()
    shifted = _full_score(full_trust_setup, fresh, np.roll(x, 1, axis=1))
    nm = np.median(np.diff(fresh["wavelength"].values))
    np.testing.assert_allclose(shifted["wavelength_offset_nm"], nm, rtol=0.02)  # one channel, sub-channel precise
    assert shifted["flag"].all() and (shifted["wavelength"] > 10).all()
    assert shifted["reason"].str.match(r"wavelength axis shifted by \+0\.19\d nm").all()  # cause first
    assert (shifted["top_part"] == "wavelength").all()
    wl = fresh["wavelength"].values
    foreign = x + sum(4000.0 * np.exp(-0.5 * ((wl - c) / 0.106) ** 2) for c in (312.0, 338.5, 351.2, 371.9, 385.0))
    other = _full_score(full_trust_setup, fresh, foreign)
    assert auroc(base["score"], other["score"]) > 0.95
    assert auroc(base["shape"], other["shape"]) > 0.9  # the shape part alone sees the foreign lines
    assert other["spectral_correlation"].median() < base["spectral_correlation"].quantile(0.05)


def test_missing_measurements_for_enabled_parts_are_errors(full_trust_setup, fresh):
    model, cal, _, _ = full_trust_setup
    x = fresh["intensity"].values[:4]
    areas = line_features(x, fresh["wavelength"].values, model.lines)
    with pytest.raises(ValueError, match="measured has no column 'mean_intensity'"):
        trust_parts(cal, model.predict(x), areas)
    from libs_pipeline.trust.measurements import measure_spectra

    no_reference = measure_spectra(x, fresh["wavelength"].values, model.lines)
    with pytest.raises(ValueError, match="no column 'wavelength_offset_channels'"):
        trust_parts(cal, model.predict(x), no_reference)


def test_part_tails_equalise_a_part_whose_out_of_sample_scores_are_wide():
    from libs_pipeline.trust.fitting import NOMINAL_TAIL, part_tails

    rng = np.random.default_rng(0)
    good = rng.normal(size=2000)
    wide = 3.0 * rng.normal(size=2000)
    frames = [pd.DataFrame({"good": good[:1000], "wide": wide[:1000]}),
              pd.DataFrame({"good": good[1000:], "wide": wide[1000:]})]
    tails = part_tails(frames, 0.05)
    assert tails["good"] == pytest.approx(1.0, abs=0.06)  # a normal's 95 % |z| quantile is 1.96: no change
    assert tails["wide"] == pytest.approx(3.0 * 1.96 / NOMINAL_TAIL, rel=0.08)
    narrow = part_tails([pd.DataFrame({"narrow": 0.1 * good})], 0.05)
    assert narrow["narrow"] == 1.0  # never sharpened beyond its scale
