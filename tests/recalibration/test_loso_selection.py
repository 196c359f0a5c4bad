"""Leave-one-sample-out candidate comparison, choice of the served model, and its refit with trust."""

from __future__ import annotations

import json

import numpy as np
import pytest

from libs_pipeline.candidates import MeanCandidate, UnivariateCandidate, load_servable
from libs_pipeline.recalibration import choose_served, compare_by_loso, fit_served
from libs_pipeline.testing import toy_campaign


class Broken:
    name = "broken"

    def fit(self, train, analyte):
        raise RuntimeError("cannot fit (test)")


@pytest.fixture(scope="module")
def toy():
    return toy_campaign(n_samples=7, n_shots=8, seed=5)


@pytest.fixture(scope="module")
def comparison(toy):
    return compare_by_loso(toy, "Cu", {"mean": MeanCandidate(), "univariate": UnivariateCandidate(),
                                       "broken": Broken()})


def test_every_candidate_is_scored_on_the_same_samples_and_failures_are_recorded(comparison):
    assert set(comparison.results) == {"mean", "univariate"}
    assert comparison.errors == {"broken": "RuntimeError: cannot fit (test)"}
    assert comparison.samples == [f"S{i:02d}" for i in range(7)]
    table = comparison.table()
    assert list(table.index) == ["mean", "univariate", "broken"]
    assert table.loc["univariate", "sample_rmsep"] < 0.2 * table.loc["mean", "sample_rmsep"]
    assert np.isnan(table.loc["broken", "sample_rmsep"]) and "cannot fit" in table.loc["broken", "error"]
    # paired with the univariate on the same 7 samples: the mean predictor is worse beyond its interval
    assert table.loc["univariate", ["minus_univariate", "minus_univariate_ci_low", "minus_univariate_ci_high"]].tolist() \
        == [0.0, 0.0, 0.0]
    gap = table.loc["mean", "sample_rmsep"] - table.loc["univariate", "sample_rmsep"]
    assert table.loc["mean", "minus_univariate"] == pytest.approx(gap)
    assert 0 < table.loc["mean", "minus_univariate_ci_low"] < gap < table.loc["mean", "minus_univariate_ci_high"]
    assert np.isnan(table.loc["broken", "minus_univariate"])


def test_the_lowest_loso_rmsep_is_served_and_the_reason_says_why(comparison):
    selection = choose_served(comparison)
    assert selection.winner == "univariate" and selection.best_baseline == "univariate"
    assert "lowest per-sample leave-one-sample-out RMSEP" in selection.reason and "failed: broken" in selection.reason
    excluded = choose_served(comparison, excluded={"univariate": "realism failed (test)"})
    assert excluded.winner == "mean" and "not eligible: univariate (realism failed (test))" in excluded.reason


def test_nothing_to_serve_is_an_error(toy):
    nothing = compare_by_loso(toy, "Cu", {"broken": Broken()})
    with pytest.raises(RuntimeError, match="no candidate could be evaluated.*broken: RuntimeError"):
        choose_served(nothing)


def test_served_model_is_refitted_on_everything_with_cross_fitted_trust(tmp_path, toy, comparison):
    served = fit_served(toy, "Cu", "univariate", UnivariateCandidate(), comparison.results["univariate"],
                        tmp_path / "staged" / "m")
    model = load_servable(served.model_dir)
    assert model.metrics["train_samples"] == comparison.samples  # refitted on every labelled sample
    trust = json.loads((served.model_dir / "trust.json").read_text())
    assert trust["threshold"] == pytest.approx(served.trust_threshold)
    assert served.trust["method"].startswith("cross-fitted by sample, 7 folds")
    assert served.trust["disabled_parts"]["aux:Cu I 324.75"] == "model predicts no Cu I 324.75 area"
    assert {"intensity", "wavelength", "shape"} <= set(served.trust["parts"])


def test_family_choice_prefers_the_simpler_unless_clearly_beaten():
    from libs_pipeline.evaluation.nested import choose_family

    simple = np.array([100.0, -120.0, 90.0, -110.0, 105.0, -95.0])
    noisy_better = np.array([10.0, -200.0, 20.0, -30.0, 15.0, -140.0])  # lower RMSEP, but within the noise
    clearly_better = simple / 5.0
    assert np.sqrt(np.mean(noisy_better**2)) < np.sqrt(np.mean(simple**2))
    assert choose_family(["univariate", "pls"], {"univariate": simple, "pls": noisy_better}) == "univariate"
    assert choose_family(["univariate", "pls"], {"univariate": simple, "pls": clearly_better}) == "pls"
    assert choose_family(["pls", "univariate"], {"univariate": simple, "pls": clearly_better}) == "pls"
