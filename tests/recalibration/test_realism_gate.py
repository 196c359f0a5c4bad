"""Augmented families may be served only when their noise model passes the out-of-sample realism check."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

import libs_pipeline.recalibration.realism_gate as realism_gate
from libs_pipeline.candidates import CNNCandidate, UnivariateCandidate
from libs_pipeline.recalibration import RealismEligibility, augmented_families, realism_exclusions
from libs_pipeline.spectra.dataset import select_samples
from libs_pipeline.testing import toy_campaign

CANDIDATES = {"univariate": UnivariateCandidate(), "multitask_aug": CNNCandidate(per_sample=4)}


def _fake_report(passed: bool, calls: list):
    def holdout_realism(ds, analyte, seed=0, model_options=None):
        calls.append((tuple(sorted(set(ds["sample_id"].values.astype(str)))), dict(model_options or {})))
        failures = [] if passed else ["sample S01: split-shot checks failed: variance"]
        return SimpleNamespace(passed=passed, failures=failures, summary=lambda: {"passed": passed},
                               save=lambda d: None)
    return holdout_realism


def test_only_augmented_families_are_checked():
    assert augmented_families(CANDIDATES) == ["multitask_aug"]
    assert realism_exclusions({"univariate": UnivariateCandidate()}, toy_campaign(n_samples=3), "Cu") == (None, {})


@pytest.mark.parametrize("passed", [True, False])
def test_exclusion_follows_the_check(monkeypatch, passed):
    calls = []
    monkeypatch.setattr(realism_gate, "holdout_realism", _fake_report(passed, calls))
    summary, excluded = realism_exclusions(CANDIDATES, toy_campaign(n_samples=4), "Cu")
    assert summary == {"passed": passed}
    assert calls[0][1] == {"max_shape_modes": 0}  # the noise model the family draws from
    if passed:
        assert excluded == {}
    else:
        assert list(excluded) == ["multitask_aug"] and "failed the out-of-sample realism check" in excluded[
            "multitask_aug"] and "S01" in excluded["multitask_aug"]


def test_eligibility_is_judged_on_each_folds_training_samples_once(monkeypatch):
    calls = []
    monkeypatch.setattr(realism_gate, "holdout_realism", _fake_report(False, calls))
    ds = toy_campaign(n_samples=4)
    eligible = RealismEligibility(CANDIDATES, "Cu")
    fold = select_samples(ds, ["S00", "S01", "S02"])
    assert eligible("univariate", fold) and not eligible("multitask_aug", fold)
    assert not eligible("multitask_aug", fold)
    assert [c[0] for c in calls] == [("S00", "S01", "S02")]  # cached per sample set
