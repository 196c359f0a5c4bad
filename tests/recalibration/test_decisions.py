"""Protocol choice and the promotion decision after a leave-one-sample-out comparison."""

from __future__ import annotations

import pytest

from libs_pipeline.config import PromotionPolicy
from libs_pipeline.recalibration import champion_family, choose_protocol, decide_loso_promotion

POLICY = PromotionPolicy()


@pytest.mark.parametrize(
    "n, fraction, expected",
    [(7, 0.25, "loso"), (11, 0.5, "loso"), (12, 0.25, "loso"), (16, 0.25, "holdout"), (40, 0.15, "holdout"),
     (2, 0.5, "loso")],
)
def test_auto_protocol_follows_the_rule(n, fraction, expected):
    protocol, reason = choose_protocol("auto", n, fraction)
    assert protocol == expected
    assert f"{n} labelled samples" in reason


def test_explicit_protocol_wins_and_bad_name_is_refused():
    assert choose_protocol("holdout", 7, 0.25)[0] == "holdout"
    assert choose_protocol("loso", 40, 0.25)[0] == "loso"
    with pytest.raises(ValueError, match="protocol must be"):
        choose_protocol("kfold", 7, 0.25)


def _challenger(candidate="pls", rmsep=500.0, flag_rate=0.05):
    return {"candidate": candidate, "rmsep": rmsep, "flag_rate": flag_rate}


def _manifest(candidate, rmsep=900.0):
    return {"version": "v1", "metrics": {"candidate": candidate, "rmsep": rmsep, "flag_rate": 0.0}}


def test_first_champion_is_promoted_when_flag_rate_is_on_target():
    decision = decide_loso_promotion(_challenger(), None, {}, POLICY)
    assert decision.promote and "no champion yet" in decision.reason
    refused = decide_loso_promotion(_challenger(flag_rate=0.5), None, {}, POLICY)
    assert not refused.promote and "flags 50.0%" in refused.reason


def test_champion_family_is_re_evaluated_on_the_same_samples():
    candidates = {"univariate": {"rmsep": 800.0}, "pls": {"rmsep": 500.0}}
    better = decide_loso_promotion(_challenger("pls", 500.0), _manifest("univariate", 100.0), candidates, POLICY)
    assert better.promote  # the champion's recorded 100 is not used: its family scores 800 on this version
    assert better.details["champion_rmsep"] == 800.0
    assert "re-evaluated" in better.reason
    close = decide_loso_promotion(_challenger("pls", 795.0), _manifest("univariate"), {"univariate": {"rmsep": 800.0}},
                                  POLICY)
    assert not close.promote and "below the required" in close.reason


def test_same_family_is_refitted_and_promoted():
    decision = decide_loso_promotion(_challenger("univariate", 950.0), _manifest("univariate"), {}, POLICY)
    assert decision.promote and "again the best" in decision.reason


def test_unknown_family_falls_back_to_the_recorded_figure():
    decision = decide_loso_promotion(_challenger("pls", 500.0), _manifest("mystery", 400.0), {"pls": {"rmsep": 500.0}},
                                     POLICY)
    assert not decision.promote and "recorded figure" in decision.reason


def test_old_champions_are_multitask_cnns():
    assert champion_family({"metrics": {"rmsep": 1.0}}) == "multitask_aug"
    assert champion_family(None) is None
