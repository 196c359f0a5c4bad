"""decide_promotion / decide_retraining: every branch, without Prefect."""

from __future__ import annotations

import math

import pytest

from libs_pipeline.config import PromotionPolicy, RecalibrationConfig
from libs_pipeline.registry import decide_promotion, decide_retraining

POLICY = PromotionPolicy(min_improvement=0.05, improvement_mode="relative", max_flag_rate=0.10)


def test_no_champion_promotes_when_flag_rate_on_target():
    d = decide_promotion({"rmsep": 0.3, "flag_rate": 0.05}, None, POLICY)
    assert d.promote and d.reason.startswith("no champion yet")
    assert d.details["challenger_rmsep"] == 0.3


def test_flag_rate_above_target_blocks_even_without_champion():
    d = decide_promotion({"rmsep": 0.1, "flag_rate": 0.25}, None, POLICY)
    assert not d.promote and "flags 25.0% of in-distribution held-out spectra, above the target 10.0%" in d.reason


def test_relative_margin():
    # champion 1.0, margin 5 % -> needs rmsep <= 0.95
    assert decide_promotion({"rmsep": 0.95, "flag_rate": 0.0}, {"rmsep": 1.0}, POLICY).promote
    d = decide_promotion({"rmsep": 0.96, "flag_rate": 0.0}, {"rmsep": 1.0}, POLICY)
    assert not d.promote
    assert "improvement 0.04 is below the required 0.05 (5.0% of the champion's)" in d.reason
    assert d.details["required_improvement"] == pytest.approx(0.05)


def test_absolute_margin_and_zero_margin_needs_strict_improvement():
    policy = PromotionPolicy(min_improvement=0.2, improvement_mode="absolute", max_flag_rate=0.1)
    assert decide_promotion({"rmsep": 0.8, "flag_rate": 0.0}, {"rmsep": 1.0}, policy).promote
    assert not decide_promotion({"rmsep": 0.81, "flag_rate": 0.0}, {"rmsep": 1.0}, policy).promote
    zero = PromotionPolicy(min_improvement=0.0, max_flag_rate=0.1)
    assert not decide_promotion({"rmsep": 1.0, "flag_rate": 0.0}, {"rmsep": 1.0}, zero).promote
    assert decide_promotion({"rmsep": 0.999, "flag_rate": 0.0}, {"rmsep": 1.0}, zero).promote


def test_accepts_recalibration_config_and_rejects_non_finite():
    cfg = RecalibrationConfig(dataset="toy", promotion=POLICY)
    d = decide_promotion({"rmsep": math.nan, "flag_rate": 0.0}, {"rmsep": 1.0}, cfg)
    assert not d.promote and "not a finite number" in d.reason
    assert decide_promotion({"rmsep": 1.0, "flag_rate": 0.0}, {"rmsep": math.inf}, cfg).promote


def test_missing_metrics_are_a_clear_error():
    with pytest.raises(ValueError, match="challenger metrics lack 'flag_rate' \\(have: rmsep\\)"):
        decide_promotion({"rmsep": 1.0}, None, POLICY)
    with pytest.raises(ValueError, match="champion metrics lack 'rmsep'"):
        decide_promotion({"rmsep": 1.0, "flag_rate": 0.0}, {}, POLICY)


def test_decide_retraining():
    champion = {"version": "v1", "data": {"spectra": {"name": "toy", "version": "d1"}}, "config_hash": "h1"}
    assert decide_retraining(None, "d1", "h1").retrain
    same = decide_retraining(champion, "d1", "h1")
    assert not same.retrain and "already trained on spectra version d1" in same.reason
    new_data = decide_retraining(champion, "d2", "h1")
    assert new_data.retrain and "latest spectra version d2, champion v1 was trained on d1" in new_data.reason
    new_cfg = decide_retraining(champion, "d1", "h2")
    assert new_cfg.retrain and "configuration changed" in new_cfg.reason


def test_failed_realism_blocks_unless_policy_allows():
    metrics = {"rmsep": 0.1, "flag_rate": 0.0, "synthetic_realism_passed": False}
    d = decide_promotion(metrics, {"rmsep": 1.0}, POLICY)
    assert not d.promote and "failed the realism report" in d.reason
    lenient = PromotionPolicy(min_improvement=0.05, max_flag_rate=0.1, require_realistic_synthetic=False)
    assert decide_promotion(metrics, {"rmsep": 1.0}, lenient).promote
    assert decide_promotion({**metrics, "synthetic_realism_passed": None}, {"rmsep": 1.0}, POLICY).promote
