"""Error-based trust metrics on cases whose answer is known by hand."""

from __future__ import annotations

import numpy as np
import pytest

from libs_pipeline.trust.error_metrics import (
    clopper_pearson,
    design_effect,
    error_auroc,
    error_tolerance,
    flag_rate,
    flagged_vs_kept,
    risk_coverage,
)


def test_tolerance_is_k_times_rmsep_or_absolute():
    assert error_tolerance(0.5) == 1.0
    assert error_tolerance(0.5, k=3) == 1.5
    assert error_tolerance(0.5, absolute=0.2) == 0.2
    with pytest.raises(ValueError, match="positive"):
        error_tolerance(float("nan"))
    with pytest.raises(ValueError, match="absolute tolerance"):
        error_tolerance(0.5, absolute=0.0)


def test_error_auroc_perfect_inverted_and_one_class():
    errors = np.array([0.1, -0.2, 3.0, -4.0])  # the last two are wrong at tolerance 1
    assert error_auroc(np.array([0.0, 1.0, 2.0, 3.0]), errors, 1.0) == 1.0
    assert error_auroc(np.array([3.0, 2.0, 1.0, 0.0]), errors, 1.0) == 0.0
    # wrong ones score 2 and 5, right ones 0 and 3: pairs (2>0), (2<3), (5>0), (5>3) -> 3 of 4
    assert error_auroc(np.array([0.0, 3.0, 2.0, 5.0]), errors, 1.0) == 0.75
    assert error_auroc(np.zeros(4), errors, 10.0) is None  # nobody is wrong
    # a NaN score counts as most suspect
    assert error_auroc(np.array([0.0, 1.0, np.nan, np.nan]), errors, 1.0) == 1.0


def test_risk_coverage_by_hand():
    errors = np.array([1.0, 2.0, 3.0, 4.0])
    rc = risk_coverage(np.array([0.1, 0.2, 0.3, 0.4]), errors)  # already in the oracle order
    expected = [1.0, np.sqrt(2.5), np.sqrt(14 / 3), np.sqrt(7.5)]
    np.testing.assert_allclose(rc.rmsep, expected)
    assert rc.at(1.0) == pytest.approx(np.sqrt(7.5))
    assert rc.at(0.75) == pytest.approx(np.sqrt(14 / 3))
    assert rc.at(0.5) == pytest.approx(np.sqrt(2.5))
    assert rc.aurc == pytest.approx(np.mean(expected))
    assert rc.aurc == pytest.approx(rc.aurc_oracle)
    assert rc.aurc_random == pytest.approx(np.sqrt(7.5))
    worst = risk_coverage(np.array([0.4, 0.3, 0.2, 0.1]), errors)
    assert worst.at(0.25) == 4.0 and worst.aurc > rc.aurc_random > rc.aurc
    assert worst.at(0.25, oracle=True) == 1.0 and worst.at(0.75, oracle=True) == pytest.approx(np.sqrt(14 / 3))
    assert worst.summary()["oracle_rmsep_at_coverage"]["1.0"] == pytest.approx(np.sqrt(7.5))
    summary = rc.summary()
    assert set(summary["rmsep_at_coverage"]) == {"1.0", "0.9", "0.8"}
    # ceil(0.9 * 4) = 4, ceil(0.8 * 4) = 4
    assert summary["rmsep_at_coverage"]["0.8"] == pytest.approx(np.sqrt(7.5))
    with pytest.raises(ValueError, match="coverage"):
        rc.at(0.0)
    with pytest.raises(ValueError, match="errors"):
        risk_coverage(np.zeros(3), np.zeros(2))


def test_clopper_pearson_known_values():
    low, high = clopper_pearson(0, 10)
    assert low == 0.0 and high == pytest.approx(0.3085, abs=1e-4)
    low, high = clopper_pearson(5, 10)
    assert low == pytest.approx(0.1871, abs=1e-4) and high == pytest.approx(0.8129, abs=1e-4)
    with pytest.raises(ValueError):
        clopper_pearson(11, 10)


def test_design_effect_independent_vs_clustered():
    groups = np.repeat(["a", "b", "c", "d"], 10)
    clustered = np.repeat([True, False, False, False], 10)  # a whole sample flagged, the others never
    assert design_effect(clustered, groups) == pytest.approx(10.0)
    rng = np.random.default_rng(0)
    spread = np.zeros(40, bool)
    spread[[0, 12, 25, 37]] = True  # one flag in each sample: no clustering
    assert design_effect(spread, groups) == pytest.approx(1.0)
    assert design_effect(rng.random(40) < 0.1, np.repeat("a", 40)) == 1.0


def test_flag_rate_per_spectrum_and_per_sample():
    groups = np.repeat(["a", "b", "c", "d"], 10)
    clustered = np.repeat([True, False, False, False], 10)
    out = flag_rate(clustered, groups)
    assert out["per_spectrum"]["rate"] == 0.25
    assert out["per_spectrum"]["effective_n"] == pytest.approx(4.0)
    assert out["per_spectrum"]["ci"] == pytest.approx(list(clopper_pearson(1, 4)))
    assert out["per_sample"] == {"rate": 0.25, "n": 4, "ci": list(clopper_pearson(1, 4))}
    given = flag_rate(clustered, groups, sample_flags=np.array([False, False, False, False]))
    assert given["per_sample"]["rate"] == 0.0
    with pytest.raises(ValueError, match="sample flags"):
        flag_rate(clustered, groups, sample_flags=np.array([True]))


def test_flagged_vs_kept():
    out = flagged_vs_kept(np.array([1.0, -1.0, 3.0]), np.array([False, False, True]))
    assert out == {"rmsep_flagged": 3.0, "rmsep_kept": 1.0, "rmsep_all": pytest.approx(np.sqrt(11 / 3)),
                   "n_flagged": 1, "n_kept": 2}
    assert flagged_vs_kept(np.array([1.0]), np.array([False]))["rmsep_flagged"] is None


def test_flagged_vs_kept_counts_the_wrong_answers_caught_and_kept():
    errors = np.array([0.1, -2.5, 3.0, 0.2, -4.0])
    flags = np.array([False, True, False, True, False])
    out = flagged_vs_kept(errors, flags, tolerance=1.0)  # wrong: -2.5 (flagged), 3.0 and -4.0 (kept)
    assert (out["n_wrong"], out["n_wrong_flagged"], out["n_wrong_kept"]) == (3, 1, 2)
    assert out["wrong_flagged_fraction"] == pytest.approx(1 / 3)
    assert out["kept_wrong_fraction"] == pytest.approx(2 / 3)
    nobody = flagged_vs_kept(np.array([0.1, 0.2]), np.array([True, True]), tolerance=1.0)
    assert nobody["wrong_flagged_fraction"] is None and nobody["kept_wrong_fraction"] is None
    assert "n_wrong" not in flagged_vs_kept(errors, flags)
