"""Trust on small campaigns and analyte-only models: out-of-fold calibration, disabled parts and their reasons."""

from __future__ import annotations

import json

import numpy as np
import pytest

from libs_pipeline.config import TrustConfig
from libs_pipeline.features.line_features import line_features
from libs_pipeline.features.lines import LineWindow, default_lines
from libs_pipeline.testing import toy_campaign
from libs_pipeline.trust.calibration import TRUST_FILE, load_trust, save_trust
from libs_pipeline.trust.measurements import measure_spectra
from libs_pipeline.trust.prediction import (
    calibrate_model_trust,
    calibrate_trust_from_oof,
    predict_with_trust,
)
from libs_pipeline.trust.scores import trust_scores

from libs_pipeline.testing.trust_fakes import RidgeStandIn, toy


class LineAreaModel:
    """Univariate baseline (tests only): analyte = intercept + slope * area of ``lines[0]``, least squares per shot.

    Duck-typed like a servable model: ``analyte``, ``lines`` (LineWindow dicts), ``wavelength``, ``predict``;
    no ``predict_with_uncertainty``. With ``echo_area`` it also returns the line's measured area as its output.
    """

    def __init__(self, analyte: str, lines: list[LineWindow], echo_area: bool = False) -> None:
        self.analyte = analyte
        self.lines = [ln.to_dict() for ln in lines]
        self._line = lines[0]
        self.echo_area = echo_area

    def _area(self, intensity: np.ndarray) -> np.ndarray:
        return line_features(np.asarray(intensity), self.wavelength, [self._line])[f"{self._line.name}:area"].to_numpy()

    def fit(self, ds):
        self.wavelength = np.asarray(ds["wavelength"].values, dtype=np.float64)
        self.slope, self.intercept = np.polyfit(self._area(ds["intensity"].values), ds[self.analyte].values, 1)
        return self

    def predict(self, intensity: np.ndarray) -> dict[str, np.ndarray]:
        area = self._area(intensity)
        out = {self.analyte: (self.intercept + self.slope * area).astype(np.float32)}
        if self.echo_area:
            out[f"{self._line.name}:area"] = area.astype(np.float32)
        return out


def loso_predictions(make_model, ds) -> dict[str, np.ndarray]:
    """Leave-one-sample-out predictions aligned with ``ds``'s rows (each sample predicted by a model without it)."""
    sids = np.asarray(ds["sample_id"].values).astype(str)
    out: dict[str, np.ndarray] = {}
    for sid in dict.fromkeys(sids.tolist()):
        held = sids == sid
        model = make_model().fit(ds.isel(spectrum=np.flatnonzero(~held)))
        for task, values in model.predict(ds["intensity"].values[held]).items():
            out.setdefault(task, np.full(sids.size, np.nan))[held] = values
    return out


def shifted(ds, channels: int = 3, gain: float = 0.5):
    """The same spectra with the wavelength axis off by ``channels`` and the counts scaled by ``gain``."""
    return ds.assign(intensity=(("spectrum", "wavelength"), np.roll(ds["intensity"].values, channels, axis=1) * gain))


@pytest.fixture(scope="module")
def cu_lines_():
    return default_lines("Cu")


@pytest.fixture(scope="module")
def small(cu_lines_):
    """A 7-sample toy campaign, the univariate model fitted on all of it, and its out-of-fold calibration."""
    train = toy_campaign(n_samples=7, n_shots=20, seed=21)
    model = LineAreaModel("Cu", cu_lines_).fit(train)
    oof = loso_predictions(lambda: LineAreaModel("Cu", cu_lines_), train)
    return model, train, calibrate_trust_from_oof(model, train, oof)


def test_out_of_fold_calibration_disables_what_an_analyte_only_model_cannot_check(small):
    _, train, cal = small
    first, second = "Cu I 324.75", "Cu I 327.40"  # the model uses the first line
    assert cal.part_names() == [f"cons:{second}", "intensity", "wavelength", "shape", "noise"]
    assert cal.disabled_parts[f"aux:{first}"] == f"model predicts no {first} area"
    assert cal.disabled_parts[f"aux:{second}"] == f"model predicts no {second} area"
    assert cal.disabled_parts[f"cons:{first}"].startswith("residuals are identically zero")
    assert cal.disabled_parts["spread"] == "the model is a single network: no ensemble spread to check"
    assert set(cal.disabled_parts) == {f"aux:{first}", f"aux:{second}", f"cons:{first}", "spread"}
    assert cal.active and cal.threshold > 0
    assert cal.extra["threshold_method"] == "cross-fitted by sample, 7 folds (leave one sample out)"
    assert cal.extra["out_of_sample_flag_rate"] == pytest.approx(0.05, abs=0.01)
    assert cal.n_validation_spectra == 140 and cal.n_validation_samples == 7
    assert cal.units == "wt%" and set(cal.line_calibrations) == {first, second}


def test_fresh_in_distribution_data_is_flagged_near_target_and_shifted_data_is_flagged(small):
    model, _, cal = small
    remeasured = toy_campaign(n_samples=7, n_shots=40, seed=22)
    new_samples = toy("N", n_samples=6, n_shots=40, seed=23, cu_range=(0.3, 4.7))
    for fresh in (remeasured, new_samples):
        tables = predict_with_trust(model, cal, fresh)  # the model has no predict_with_uncertainty
        assert 0.005 <= tables.spectra["flag"].mean() <= 0.15  # target 0.05; cross-fitted scales err on the safe side
        assert tables.spectra["uncertainty"].isna().all() and tables.samples["uncertainty"].isna().all()
    bad = predict_with_trust(model, cal, shifted(remeasured))
    assert bad.spectra["flag"].mean() > 0.95 and bad.samples["flag"].all()
    assert bad.spectra["reason"].str.contains("wavelength axis shifted by").mean() > 0.9
    gained = predict_with_trust(model, cal, remeasured.assign(intensity=remeasured["intensity"] * 0.5))
    assert gained.spectra["top_part"].isin(["intensity", "noise"]).mean() > 0.9 and gained.samples["flag"].all()


def test_disabled_parts_round_trip_through_trust_json_and_old_files_still_load(small, trust_setup, tmp_path):
    _, _, cal = small
    save_trust(cal, tmp_path)
    loaded = load_trust(tmp_path)
    assert loaded.to_dict() == cal.to_dict()
    assert loaded.disabled_parts == cal.disabled_parts and loaded.part_names() == cal.part_names()
    # written before disabled_parts existed: every line part is present and required
    old = trust_setup[1].to_dict()
    old.pop("disabled_parts")
    (tmp_path / TRUST_FILE).write_text(json.dumps(old))
    assert load_trust(tmp_path).part_names() == trust_setup[1].part_names()
    old["aux_scales"].pop("Cu I 324.75")
    (tmp_path / TRUST_FILE).write_text(json.dumps(old))
    with pytest.raises(ValueError, match=r"field 'aux_scales.Cu I 324.75' is missing"):
        load_trust(tmp_path)


def test_few_validation_spectra_switch_parts_off_instead_of_raising(cu_lines_, tmp_path):
    """The old recalibration failure: trust scales and threshold from 10 validation spectra of one sample."""
    train = toy("T", n_samples=6, n_shots=10, seed=24)
    validation = toy("V", n_samples=1, n_shots=10, seed=25, cu_range=(2.0, 2.0))
    model = LineAreaModel("Cu", cu_lines_).fit(train)
    cal = calibrate_model_trust(model, train, validation)
    assert not cal.active and cal.part_names() == []
    assert cal.disabled_parts["intensity"].startswith("only 10 spectra with finite values, need >= 12")
    assert cal.disabled_parts["cons:Cu I 327.40"] == "only 1 sample(s) with finite values, need >= 2"
    assert cal.extra["threshold_method"].startswith("none: every part is disabled")
    save_trust(cal, tmp_path)
    assert load_trust(tmp_path).to_dict() == cal.to_dict() and not load_trust(tmp_path).active
    tables = predict_with_trust(model, cal, train)
    assert not tables.spectra["flag"].any() and (tables.spectra["trust_score"] == 0).all()
    assert (tables.spectra["reason"] == "").all() and not tables.samples["flag"].any()
    # with a looser per-part minimum the line part is calibrated, but 10 scores cannot set a threshold
    loose = calibrate_model_trust(model, train, validation, TrustConfig(min_part_samples=1))
    assert not loose.active
    assert loose.disabled_parts["cons:Cu I 327.40"] == "threshold: only 10 finite validation scores, need >= 20"


def test_identically_zero_aux_residuals_switch_the_part_off(cu_lines_):
    """A model whose area output is the measured area itself: its aux part has nothing to check."""
    train = toy_campaign(n_samples=7, n_shots=10, seed=26)
    model = LineAreaModel("Cu", cu_lines_, echo_area=True).fit(train)
    oof = loso_predictions(lambda: LineAreaModel("Cu", cu_lines_, echo_area=True), train)
    cal = calibrate_trust_from_oof(model, train, oof, TrustConfig(spectral_parts=False))
    assert cal.disabled_parts["aux:Cu I 324.75"] == "residuals are identically zero, so there is nothing to check"
    assert cal.disabled_parts["wavelength"] == "switched off (TrustConfig.spectral_parts is false)"
    assert cal.part_names() == ["cons:Cu I 327.40", "intensity", "noise"]


def test_out_of_fold_input_errors(small):
    model, train, _ = small
    with pytest.raises(ValueError, match=r"oof_predictions\['Cu'\] has 3 rows, train has 140 spectra"):
        calibrate_trust_from_oof(model, train, {"Cu": np.zeros(3)})
    unlabelled = train.assign(Cu=train["Cu"].where(train["shot"] > 0))
    with pytest.raises(ValueError, match="must all be labelled: 7 of 140 have no finite 'Cu'"):
        calibrate_trust_from_oof(model, unlabelled, {"Cu": np.zeros(140)})
    with pytest.raises(ValueError, match="no analyte task 'Cu'"):
        calibrate_trust_from_oof(model, train, {"Zn": np.zeros(140)})


def test_real_oreas_campaign_calibrates_out_of_fold_and_flags_a_shifted_sample(oreas_dir):
    from libs_pipeline.config import IngestOptions
    from libs_pipeline.spectra.campaign_loading import load_campaign

    ds = load_campaign(oreas_dir / "Na_ppm_from_tutorial.csv", options=IngestOptions(saturation_level=38000))
    sids = np.asarray(ds["sample_id"].values).astype(str)
    held_out = "OREAS601"
    train = ds.isel(spectrum=np.flatnonzero(sids != held_out))
    test = ds.isel(spectrum=np.flatnonzero(sids == held_out))
    lines = default_lines("Na")
    model = LineAreaModel("Na", lines).fit(train)
    oof = loso_predictions(lambda: LineAreaModel("Na", lines), train)
    cal = calibrate_trust_from_oof(model, train, oof)
    assert cal.active and cal.n_validation_samples == 6
    assert cal.extra["threshold_method"] == "cross-fitted by sample, 6 folds (leave one sample out)"
    assert {"wavelength", "shape"} <= set(cal.part_names())
    assert cal.disabled_parts[f"aux:{lines[0].name}"] == f"model predicts no {lines[0].name} area"
    bad = predict_with_trust(model, cal, shifted(test, 3, 1.0))
    assert bad.spectra["flag"].mean() > 0.9 and bad.samples["flag"].all()
    assert (bad.spectra["wavelength"].abs() > 10).all()


def test_multitask_model_out_of_fold_keeps_every_part_and_drops_a_constant_output(cu_lines_):
    """A CNN-like model (analyte and both line areas): every part is calibrated from out-of-fold predictions;
    an output with zero spread is switched off with that reason."""
    train = toy_campaign(n_samples=7, n_shots=20, seed=27)
    model = RidgeStandIn("Cu", cu_lines_).fit(train)
    oof = loso_predictions(lambda: RidgeStandIn("Cu", cu_lines_), train)
    oof["T_K"] = np.full(train.sizes["spectrum"], 9000.0)
    cal = calibrate_trust_from_oof(model, train, oof)
    lines = ["Cu I 324.75", "Cu I 327.40"]
    assert cal.part_names() == [f"aux:{n}" for n in lines] + [f"cons:{n}" for n in lines] + [
        "intensity", "wavelength", "shape", "noise"]
    assert cal.disabled_parts == {"plasma:T_K": "values are all equal (9000): zero spread",
                                  "spread": "the model is a single network: no ensemble spread to check"}
    assert cal.intensity.features == ["Cu", "T_K"]
    fresh = toy("F", n_samples=6, n_shots=40, seed=28, cu_range=(0.3, 4.7))
    x = fresh["intensity"].values
    preds = {**model.predict(x), "T_K": np.full(len(x), 9000.0)}
    table = trust_scores(cal, preds, measure_spectra(x, fresh["wavelength"].values, cu_lines_, cal.spectral))
    assert table["flag"].mean() <= 0.15
