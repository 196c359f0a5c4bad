"""LOSO and nested LOSO on toy candidates: leak checks, fold choices, served model, fit sharing, results."""

from __future__ import annotations

import json
from itertools import combinations

import numpy as np
import pytest

from libs_pipeline.candidates import MeanCandidate, PLSCandidate, UnivariateCandidate
from libs_pipeline.evaluation.leak_check import MemorisingCandidate, assert_protocol_leaks_nothing
from libs_pipeline.evaluation.nested import loso_predictions, nested_loso
from libs_pipeline.evaluation.protocol import Candidate, FittedCandidate, LeakError
from libs_pipeline.features.lines import default_lines
from libs_pipeline.spectra.dataset import sample_labels
from libs_pipeline.testing import toy_campaign


@pytest.fixture(scope="module")
def toy():
    """5 samples x 3 shots, Cu 0.1..5 wt%, Cu lines proportional to the label."""
    return toy_campaign(n_samples=5, n_shots=3)


def _univariate():
    return UnivariateCandidate(lines=[default_lines("Cu")[0].to_dict()])


def _mean_of_others(labels: dict[str, float], *left_out: str) -> float:
    return float(np.mean([v for s, v in labels.items() if s not in left_out]))


# -- leak checks -------------------------------------------------------------------------------------------


def _leaky_loso(ds, analyte, candidate):
    """A wrong evaluator: fits on the whole dataset, held-out spectra included."""
    return candidate.fit(ds, analyte).predict_dataset(ds)


def _leaky_by_label_rows(ds, analyte, candidate):
    """A subtler wrong evaluator: holds out by spectrum index, so shots of a sample sit on both sides."""
    out = np.empty(ds.sizes["spectrum"])
    for i in range(ds.sizes["spectrum"]):
        keep = [j for j in range(ds.sizes["spectrum"]) if j != i]
        out[i] = candidate.fit(ds.isel(spectrum=keep), analyte).predict_dataset(ds.isel(spectrum=[i]))[0]
    return out


def test_loso_leaks_nothing():
    assert_protocol_leaks_nothing(lambda ds, a, c: loso_predictions(ds, a, c).predictions)


def test_nested_outer_and_served_leak_nothing():
    assert_protocol_leaks_nothing(lambda ds, a, c: nested_loso(ds, a, {"memo": c}).candidates["memo"].predictions)
    assert_protocol_leaks_nothing(
        lambda ds, a, c: nested_loso(ds, a, {"memo": c, "mean": MeanCandidate()}).served.predictions
    )


@pytest.mark.parametrize("leaky", [_leaky_loso, _leaky_by_label_rows])
def test_leaky_evaluators_fail_the_check(leaky):
    with pytest.raises(AssertionError, match="held-out spectra reached fit"):
        assert_protocol_leaks_nothing(leaky)


def test_memoriser_scores_exactly_the_mean_predictor():
    from libs_pipeline.evaluation.leak_check import memory_campaign

    ds = memory_campaign(n_samples=4)
    result = nested_loso(ds, "Na", {"memo": MemorisingCandidate(), "mean": MeanCandidate()})
    labels = np.array(list(sample_labels(ds, "Na").values()))
    m = result.metrics()
    assert m["memo"]["rmsep_sample"] == pytest.approx(4 / 3 * np.std(labels), rel=1e-12)
    assert m["memo"]["errors"] == pytest.approx(m["mean"]["errors"], rel=1e-12)
    assert {c.winner for c in result.choices.values()} == {"memo"}  # exact tie -> first listed


class _Liar:
    """Declares every sample of the campaign as used, held-out one included."""

    name = "liar"

    def __init__(self, all_samples):
        self.all_samples = all_samples

    def fit(self, train, analyte):
        fitted = MeanCandidate().fit(train, analyte)
        fitted.train_samples = list(self.all_samples)
        return fitted


def test_declared_heldout_sample_is_a_leak_error(toy):
    samples = list(sample_labels(toy, "Cu"))
    with pytest.raises(LeakError, match=r"candidate 'liar', fold leaving out \['S00'\].*train_samples \['S00'\]"):
        loso_predictions(toy, "Cu", _Liar(samples))
    with pytest.raises(LeakError, match=r"candidate 'cheat', fold leaving out \['S00'\]"):
        nested_loso(toy, "Cu", {"mean": MeanCandidate(), "cheat": _Liar(samples)})


def test_missing_train_samples_is_refused(toy):
    class Anonymous:
        name = "anon"

        def fit(self, train, analyte):
            class Fitted:
                def predict_dataset(self, ds):
                    return np.zeros(ds.sizes["spectrum"])
            return Fitted()

    with pytest.raises(TypeError, match="candidate 'anon'.*no train_samples list"):
        loso_predictions(toy, "Cu", Anonymous())


class _Spy:
    """Mean candidate that records what fit and predict_dataset receive."""

    name = "spy"

    def __init__(self):
        self.fits: list[frozenset] = []
        self.predicted_vars: list[set] = []

    def fit(self, train, analyte):
        assert np.isfinite(train[analyte].values).all()
        self.fits.append(frozenset(np.unique(train["sample_id"].values).tolist()))
        fitted = MeanCandidate().fit(train, analyte)
        spy = self

        class Fitted:
            train_samples = fitted.train_samples

            def predict_dataset(self, ds):
                spy.predicted_vars.append(set(ds.data_vars))
                return fitted.predict_dataset(ds)
        return Fitted()


def test_predict_never_sees_labels_and_fit_never_sees_heldout(toy):
    spy = _Spy()
    result = loso_predictions(toy, "Cu", spy)
    all_samples = set(result.samples)
    assert sorted(spy.fits, key=sorted) == sorted((frozenset(all_samples - {s}) for s in all_samples), key=sorted)
    assert all("Cu" not in v and "intensity" in v for v in spy.predicted_vars)


def test_protocol_classes_describe_the_toy_candidates(toy):
    candidate = _univariate()
    assert isinstance(candidate, Candidate) and isinstance(MeanCandidate(), Candidate)
    assert isinstance(candidate.fit(toy, "Cu"), FittedCandidate)


# -- LOSO ----------------------------------------------------------------------------------------------------


def test_loso_mean_predictor_by_hand(toy):
    labels = sample_labels(toy, "Cu")
    result = loso_predictions(toy, "Cu", MeanCandidate())
    expected = np.array([_mean_of_others(labels, s) for s in toy["sample_id"].values])
    np.testing.assert_allclose(result.predictions, expected, rtol=1e-12)
    assert result.folds["S02"].left_out == ["S02"] and result.folds["S02"].train_samples == ["S00", "S01", "S03", "S04"]
    assert result.folds["S02"].description == {"candidate": "mean", "mean": pytest.approx(_mean_of_others(labels, "S02"))}
    assert result.folds["S02"].fit_seconds >= 0 and result.per_sample()["y_pred"].size == 5


def test_loso_univariate_on_a_toy_line(toy):
    result = loso_predictions(toy, "Cu", _univariate())
    m = result.metrics()
    assert m["n_samples"] == 5 and m["rel_rmsep"] < 0.1  # 3 shots with 8 % shot-to-shot gain
    assert result.folds["S00"].description["choice"]["line"] == "Cu I 324.75"


def test_unlabelled_spectra_are_ignored(toy):
    ds = toy.copy(deep=True)
    cu = ds["Cu"].values.copy()
    sids = ds["sample_id"].values
    cu[np.flatnonzero(sids == "S01")[0]] = np.nan  # one unknown shot
    cu[sids == "S04"] = np.nan  # a sample with no known label
    ds["Cu"] = ("spectrum", cu, ds["Cu"].attrs)
    spy = _Spy()
    result = loso_predictions(ds, "Cu", spy)
    assert result.samples == ["S00", "S01", "S02", "S03"] and len(spy.fits) == 4
    assert np.isnan(result.predictions[~np.isfinite(cu)]).all()
    assert np.isfinite(result.predictions[np.isfinite(cu)]).all()
    assert result.metrics()["n_spectra"] == 3 * 4 - 1
    with pytest.raises(ValueError, match="samples: 'S04' has no spectrum with a finite 'Cu' label"):
        loso_predictions(ds, "Cu", MeanCandidate(), samples=["S00", "S04"])


def test_samples_restrict_the_protocol(toy):
    labels = sample_labels(toy, "Cu")
    result = loso_predictions(toy, "Cu", MeanCandidate(), samples=["S00", "S01", "S02"])
    assert result.samples == ["S00", "S01", "S02"]
    assert result.metrics()["errors"]["S00"] == pytest.approx(_mean_of_others(
        {s: labels[s] for s in ("S00", "S01", "S02")}, "S00") - labels["S00"])
    with pytest.raises(ValueError, match="samples: 'S99' is not in the dataset"):
        loso_predictions(toy, "Cu", MeanCandidate(), samples=["S00", "S99"])
    with pytest.raises(ValueError, match="at least 2 labelled samples"):
        loso_predictions(toy, "Cu", MeanCandidate(), samples=["S00"])


def test_bad_predictions_are_named(toy):
    class Nan:
        name = "nan"

        def fit(self, train, analyte):
            fitted = MeanCandidate().fit(train, analyte)
            fitted.value = float("nan")
            return fitted

    with pytest.raises(ValueError, match=r"candidate 'nan', fold leaving out \['S00'\]: .*non-finite .*'S00'"):
        loso_predictions(toy, "Cu", Nan())


# -- nested LOSO ---------------------------------------------------------------------------------------------


def test_served_picks_the_clearly_better_candidate(toy):
    result = nested_loso(toy, "Cu", {"mean": MeanCandidate(), "univariate": _univariate()})
    assert {h: c.winner for h, c in result.choices.items()} == {s: "univariate" for s in result.samples}
    np.testing.assert_array_equal(result.served.predictions, result.candidates["univariate"].predictions)
    m = result.metrics()
    assert m["served"]["rmsep_sample"] == m["univariate"]["rmsep_sample"] < 0.1 * m["mean"]["rmsep_sample"]
    assert list(result.per_sample().columns) == ["sample_id", "y_true", "mean", "univariate", "served"]


def test_inner_rmsep_table_by_hand(toy):
    labels = sample_labels(toy, "Cu")
    result = nested_loso(toy, "Cu", {"mean": MeanCandidate()})
    for h, choice in result.choices.items():
        inner = [i for i in labels if i != h]
        errors = [_mean_of_others(labels, h, i) - labels[i] for i in inner]
        assert choice.inner_samples == inner
        assert choice.inner_rmsep["mean"] == pytest.approx(np.sqrt(np.mean(np.square(errors))), rel=1e-12)


def test_ties_go_to_the_first_listed(toy):
    candidates = {"a": MeanCandidate(), "b": MeanCandidate()}
    assert {c.winner for c in nested_loso(toy, "Cu", candidates).choices.values()} == {"a"}
    assert {c.winner for c in nested_loso(toy, "Cu", candidates, served=["b", "a"]).choices.values()} == {"b"}


def test_each_fit_is_computed_once(toy):
    spies = {"one": _Spy(), "two": _Spy()}
    calls = []
    result = nested_loso(toy, "Cu", spies, progress=lambda done, total, msg: calls.append((done, total, msg)))
    samples = set(result.samples)
    expected = {frozenset(samples - {s}) for s in samples} | {frozenset(samples - set(p)) for p in combinations(samples, 2)}
    for spy in spies.values():
        assert len(spy.fits) == len(set(spy.fits)) == 5 + 10 and set(spy.fits) == expected
    assert result.n_fits == 30 and [c[:2] for c in calls] == [(k, 30) for k in range(1, 31)]
    assert "candidate 'one', fold leaving out ['S00']" in calls[0][2]


def test_served_subset_and_unserved_candidates(toy):
    spies = {"mean": _Spy(), "other": _Spy()}
    result = nested_loso(toy, "Cu", spies, served=["mean"])
    assert len(spies["other"].fits) == 5 and len(spies["mean"].fits) == 15 and result.n_fits == 20
    assert set(next(iter(result.choices.values())).inner_rmsep) == {"mean"}
    no_served = nested_loso(toy, "Cu", {"mean": MeanCandidate()}, served=[])
    assert no_served.served is None and no_served.choices == {} and list(no_served.metrics()) == ["mean"]


def test_result_is_json_and_deterministic(toy):
    candidates = {"mean": MeanCandidate(), "univariate": _univariate(),
                  "pls": PLSCandidate(options={"max_components": 3})}
    a = nested_loso(toy, "Cu", candidates, served=["mean", "univariate"])
    b = nested_loso(toy, "Cu", candidates, served=["mean", "univariate"])
    da, db = a.to_dict(), b.to_dict()
    text = json.dumps(da, allow_nan=False)
    assert json.loads(text)["choices"]["S02"]["winner"] == "univariate"
    assert da["methods"]["pls"]["folds"]["S00"]["description"]["choice"]["n_components"] >= 1
    assert da["methods"]["served"]["metrics"] == db["methods"]["served"]["metrics"]
    assert da["methods"]["served"]["metrics"]["rmsep_sample_ci95"][0] <= da["methods"]["served"]["metrics"]["rmsep_sample"]


def test_nested_errors(toy):
    with pytest.raises(ValueError, match="at least 3 labelled samples"):
        nested_loso(toy, "Cu", {"mean": MeanCandidate()}, samples=["S00", "S01"])
    with pytest.raises(ValueError, match=r"served names \['pls'\] are not among the candidates \['mean'\]"):
        nested_loso(toy, "Cu", {"mean": MeanCandidate()}, served=["pls"])
    with pytest.raises(ValueError, match="'served' is reserved"):
        nested_loso(toy, "Cu", {"served": MeanCandidate()})
    with pytest.raises(ValueError, match="no label variable 'Zn'"):
        nested_loso(toy, "Zn", {"mean": MeanCandidate()})


def test_fit_failure_names_the_fold(toy):
    # The selected univariate needs >= 3 training samples for its inner LOSO: the error says where it happened.
    with pytest.raises(ValueError, match="needs at least 3 samples, got 2") as info:
        nested_loso(toy, "Cu", {"univariate": _univariate()}, samples=["S00", "S01", "S02"])
    assert any("candidate 'univariate', fold leaving out" in note for note in info.value.__notes__)


def test_protocol_modules_never_import_torch():
    import subprocess
    import sys

    code = (
        "import sys; import libs_pipeline.evaluation.nested, "
        "libs_pipeline.evaluation.leak_check, libs_pipeline.evaluation.small_campaign;"
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr

