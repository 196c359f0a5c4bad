"""The typed outcome of a recalibration run and the plain steps around it (skip, register, fail, staging,
manifests, served baseline, summary), without Prefect."""

from __future__ import annotations

import datetime as dt
import json
import math

import pytest

from libs_pipeline.config import RecalibrationConfig
from libs_pipeline.recalibration import (
    CHALLENGER,
    CHAMPION,
    RecalibrationOutcome,
    TrainingSplit,
    baseline_to_serve,
    discard_staging,
    heldout_manifest,
    label_challenger,
    loso_manifest,
    metrics_rows,
    run_name,
    served_baseline_record,
    staging_dir,
    summary_markdown,
    synthesis_request,
    write_report,
)
from libs_pipeline.registry.promotion import Decision


def new_outcome(tmp_path) -> RecalibrationOutcome:
    return RecalibrationOutcome(model_name="toy", config_hash="abc", report_dir=str(tmp_path / "reports" / "run1"),
                                flow_run_id="1234", spectra={"name": "toy", "version": "v2"})


CHAMPION_MANIFEST = {
    "version": "m1",
    "data": {"heldout_samples": ["S01", "S04"]},
    "metrics": {"rmsep": 0.5, "flag_rate": 0.02, "training": {"steps": 10}},
}


def test_skip_reports_the_champions_recorded_metrics(tmp_path):
    outcome = new_outcome(tmp_path)
    outcome.record_champion({"version": "m1", "path": "/models/toy/m1", "manifest": CHAMPION_MANIFEST})
    outcome.skip(CHAMPION_MANIFEST, "nothing changed since m1")
    data = outcome.to_dict()
    assert data["status"] == "skipped" and data["reason"] == "skipped: nothing changed since m1"
    assert (data["champion_before"], data["champion_after"], data["champion_path"]) == ("m1", "m1", "/models/toy/m1")
    assert data["heldout_samples"] == ["S01", "S04"]
    assert data["metrics"] == {CHAMPION: {"rmsep": 0.5, "flag_rate": 0.02}}
    assert "step" not in data and data["roles"] == {CHAMPION: CHAMPION}


def test_skip_without_recorded_rmsep_has_no_metrics(tmp_path):
    outcome = new_outcome(tmp_path)
    outcome.skip({"metrics": {"flag_rate": 0.1}}, "same")
    assert outcome.metrics == {} and outcome.heldout_samples is None


def test_registered_then_promoted_or_kept(tmp_path):
    promoted = new_outcome(tmp_path)
    promoted.record_champion(None)
    promoted.record_registered({"version": "m2", "path": "/models/toy/m2"}, Decision(True, "no champion yet"))
    assert promoted.status is None and promoted.champion_after is None  # promotion not yet carried out
    promoted.record_decision(Decision(True, "no champion yet"))
    assert (promoted.status, promoted.reason) == ("promoted", "promoted: no champion yet")
    assert (promoted.champion_after, promoted.champion_path, promoted.challenger) == ("m2", "/models/toy/m2", "m2")
    assert promoted.decision == {"promote": True, "reason": "no champion yet", "details": {}}

    kept = new_outcome(tmp_path)
    kept.record_champion({"version": "m1", "path": "/m1", "manifest": {}})
    decision = Decision(False, "improvement -0.1 is below the required 0.01")
    kept.record_registered({"version": "m2", "path": "/m2"}, decision)
    kept.record_decision(decision)
    assert kept.status == "kept-champion" and kept.reason == "champion kept: improvement -0.1 is below the required 0.01"
    assert (kept.champion_after, kept.champion_path, kept.challenger) == ("m1", "/m1", "m2")


def test_failure_names_the_step_the_error_and_the_champion(tmp_path):
    outcome = new_outcome(tmp_path)
    outcome.record_champion({"version": "m1", "path": "/m1", "manifest": {}})
    outcome.step = "train-challenger"
    outcome.fail(RuntimeError("training diverged"), seconds=1.5)
    assert (outcome.status, outcome.failed_step, outcome.error, outcome.reason, outcome.seconds) == (
        "failed", "train-challenger", "RuntimeError: training diverged", "failed at step train-challenger", 1.5)
    assert outcome.failure_message() == (
        "recalibration of 'toy' failed at step train-challenger: RuntimeError: training diverged "
        "(champion unchanged: m1)"
    )
    outcome.champion_after = "m2"
    assert outcome.failure_message().endswith("(champion now m2, before m1)")
    first = new_outcome(tmp_path)
    first.step = "find-latest-spectra"
    first.fail(FileNotFoundError("no spectra"), seconds=0.1)
    assert first.failure_message().endswith("FileNotFoundError: no spectra (champion unchanged: None)")


def test_write_report_writes_summary_and_outcome_json(tmp_path):
    outcome = new_outcome(tmp_path)
    outcome.record_registered({"version": "m2", "path": str(tmp_path / "m2")}, Decision(True, "better"))
    outcome.record_decision(Decision(True, "better"))
    outcome.metrics = {CHALLENGER: {"rmsep": 0.25, "flag_rate": math.nan}}
    outcome.seconds = 2.0
    write_report(outcome)
    report = tmp_path / "reports" / "run1"
    stored = json.loads((report / "outcome.json").read_text())
    assert stored["status"] == "promoted" and stored["challenger"] == "m2" and stored["seconds"] == 2.0
    assert stored["metrics"]["challenger"]["rmsep"] == 0.25
    summary = (report / "summary.md").read_text()
    assert summary.startswith("# Recalibration of `toy`: promoted\n") and "**promoted: better**" in summary
    assert "| challenger | baseline | 0.25 | n/a |" in summary
    assert "Wall time: 2.0 s" in summary


def test_failure_report_has_no_outcome_json(tmp_path):
    outcome = new_outcome(tmp_path)
    outcome.step = "synthesize"
    outcome.fail(ValueError("bad"), seconds=0.2)
    write_report(outcome, with_outcome_json=False)
    report = tmp_path / "reports" / "run1"
    assert [p.name for p in report.iterdir()] == ["summary.md"]
    text = (report / "summary.md").read_text()
    assert "Failed at step `synthesize`: `ValueError: bad`" in text and "The champion was not changed." in text


def test_record_loso_and_synthesis(tmp_path):
    outcome = new_outcome(tmp_path)
    outcome.protocol = {"name": "loso", "reason": "8 labelled samples"}
    loso = {
        "challenger_metrics": {"rmsep": 0.2, "candidate": "pls"},
        "candidate_metrics": {"univariate": {"rmsep": 0.3}, "pls": {"rmsep": 0.2}},
        "selection": {"winner": "pls", "reason": "pls has the lowest RMSEP"},
        "figures": {"parity": "/r/parity.png"},
        "candidate_errors": {},
        "trust": {"threshold": 3.0},
    }
    outcome.record_loso(loso)
    assert list(outcome.metrics) == [CHALLENGER, "univariate", "pls"]
    assert outcome.roles == {CHALLENGER: "challenger (pls)", "univariate": "candidate", "pls": "candidate"}
    assert outcome.heldout_samples == [] and outcome.trust == {"threshold": 3.0}
    assert outcome.notes[:2] == ["comparison: 8 labelled samples", "pls has the lowest RMSEP"]

    outcome.record_synthesis({"uri": "/s/x.zarr", "realism": {"passed": False, "failures": ["S00: too smooth"]}})
    assert outcome.synthetic == {"uri": "/s/x.zarr", "realism_passed": False, "realism_failures": ["S00: too smooth"]}
    outcome.record_synthesis(None)
    assert outcome.synthetic == {"uri": None, "realism_passed": None, "realism_failures": None}


def test_run_name_and_staging(tmp_path):
    now = dt.datetime(2026, 12, 2, 1, 2, 3, tzinfo=dt.timezone.utc)
    assert run_name("abcdef1234", now) == "recalibrate-20261202T010203Z-abcdef12"
    assert run_name(None, now) == "recalibrate-20261202T010203Z"
    report = tmp_path / "reports" / "recalibrate-x"
    staged = staging_dir(tmp_path, report)
    assert staged == tmp_path / "staging" / "recalibrate-x" / "challenger"
    staged.mkdir(parents=True)
    (staged / "weights.pt").write_text("x")
    discard_staging(tmp_path, report)
    assert not staged.parent.exists() and (tmp_path / "staging").is_dir()
    discard_staging(tmp_path, report)  # nothing left: no error


def test_synthesis_request_and_challenger_label(tmp_path):
    off = RecalibrationConfig(root=str(tmp_path), dataset="toy", synthesis={"per_sample": 0})
    assert synthesis_request(off) is None
    on = RecalibrationConfig(root=str(tmp_path), dataset="toy",
                             synthesis={"per_sample": 16, "chunk_size": 64, "n_workers": 1})
    assert synthesis_request(on) == {"per_sample": 16, "chunk_size": 64, "n_workers": 1}
    assert label_challenger({"rmsep": 0.3}, {"uri": "/s.zarr", "realism_passed": True}) == {
        "rmsep": 0.3, "synthetic_realism_passed": True, "candidate": "multitask_aug"}
    assert label_challenger({"rmsep": 0.3}, {"uri": None, "realism_passed": None})["candidate"] == "multitask"


def test_baseline_served_only_when_better_fitted_and_configured():
    metrics = {CHALLENGER: {"rmsep": 0.4}, CHAMPION: {"rmsep": 0.1}, "univariate": {"rmsep": 0.3},
               "pls": {"rmsep": 0.2}}
    dirs = {"univariate": "/b/univariate", "pls": "/b/pls"}
    assert baseline_to_serve(metrics, dirs, ["multitask", "univariate", "pls"]) == "pls"
    assert baseline_to_serve(metrics, dirs, ["multitask"]) is None  # not a configured candidate
    assert baseline_to_serve(metrics, {"univariate": "/b/u"}, ["pls"]) is None  # pls was not fitted
    assert baseline_to_serve({**metrics, CHALLENGER: {"rmsep": 0.1}}, dirs, ["pls"]) is None  # challenger best
    challenger, trained, note = served_baseline_record(
        metrics, "pls", {"model_dir": "/staged", "trust_threshold": 2.5, "flag_rate": 0.05,
                         "training_metrics": {"candidate": "pls"}})
    assert challenger == {"rmsep": 0.2, "flag_rate": 0.05, "candidate": "pls"}
    assert trained == {"model_dir": "/staged", "trust_threshold": 2.5, "training_metrics": {"candidate": "pls"}}
    assert note.startswith("pls had a lower held-out RMSEP than the multitask network")


def test_manifests(tmp_path):
    config = RecalibrationConfig(root=str(tmp_path), dataset="toy", seed=3, split_seed=4)
    decision = Decision(True, "better")
    loso = {"challenger_metrics": {"rmsep": 0.2, "candidate": "pls"}, "candidate_metrics": {"pls": {"rmsep": 0.2}},
            "selection": {"winner": "pls"}, "trust": {"threshold": 3.0}, "served_details": {"n": 1},
            "candidate_table": [{"candidate": "pls"}]}
    m = loso_manifest(config, "v2", loso, protocol={"name": "loso"}, decision=decision, config_hash="h",
                      compared_with="m1", report_dir=tmp_path / "r")
    assert m["data"] == {"spectra": {"name": "toy", "version": "v2"}, "train_spectra": None, "synthetic": None,
                         "heldout_samples": []}
    assert m["seeds"] == {"synthesis": 3, "training": 3} and m["trust_threshold"] == 3.0
    assert m["metrics"]["candidates"] == {"pls": {"rmsep": 0.2}} and m["metrics"]["served"] == {"n": 1}
    assert m["recalibration"] == {"decision": decision.to_dict(), "compared_with": "m1",
                                  "report_dir": str(tmp_path / "r"), "protocol": {"name": "loso"},
                                  "candidate_table": [{"candidate": "pls"}]}

    split = TrainingSplit(root=str(tmp_path), spectra={"name": "toy", "version": "v2", "uri": "u"},
                          train={"name": "toy.train", "version": "t1", "uri": "tu"}, analyte="Cu", units="wt%",
                          heldout=["S01"], train_samples=["S00", "S02"])
    h = heldout_manifest(config, "v2", split, synthetic={"uri": "/s/abc.zarr", "realism_passed": True},
                         challenger_metrics={"rmsep": 0.3}, trained={"trust_threshold": 2.0,
                                                                     "training_metrics": {"steps": 5}},
                         decision=decision, config_hash="h", compared_with=None, report_dir="/r")
    assert h["data"]["train_spectra"] == {"name": "toy.train", "version": "t1"}
    assert h["data"]["synthetic"] == {"uri": "/s/abc.zarr", "id": "abc", "realism_passed": True}
    assert h["data"]["heldout_samples"] == ["S01"]
    assert h["seeds"] == {"split": 4, "synthesis": 3, "training": 3}
    assert h["metrics"] == {"rmsep": 0.3, "training": {"steps": 5}} and h["trust_threshold"] == 2.0
    assert h["recalibration"] == {"decision": decision.to_dict(), "compared_with": None, "report_dir": "/r"}
    plain = heldout_manifest(config, "v2", split, synthetic={"uri": None, "realism_passed": None},
                             challenger_metrics={"rmsep": 0.3}, trained={"trust_threshold": 2.0,
                                                                         "training_metrics": {}},
                             decision=decision, config_hash="h", compared_with=None, report_dir="/r")
    assert plain["data"]["synthetic"] is None


def test_metrics_rows_and_summary_sections():
    rows = metrics_rows({CHALLENGER: {"rmsep": 0.2, "flag_rate": math.nan}, "pls": {"rmsep": 0.3}},
                        {CHALLENGER: CHALLENGER})
    assert rows[0] == {"method": CHALLENGER, "role": CHALLENGER, "rmsep": 0.2, "mae": None, "bias": None, "r2": None,
                       "sample_rmsep": None, "flag_rate": None, "rmsep_flagged": None, "rmsep_kept": None,
                       "error_auroc": None, "wrong_flagged_fraction": None, "minus_univariate": None,
                       "minus_univariate_ci95": None, "n_spectra": None}
    assert rows[1]["role"] == "baseline"
    paired = summary_markdown({"status": "promoted", "model_name": "toy",
                               "metrics": {"pls": {"rmsep": 1158.46, "minus_univariate": 173.8,
                                                   "minus_univariate_ci95": [-105.25, 560.0]}}})
    assert "| pls | baseline | 1158 |" in paired and "| 173.8 | [-105.2, 560] |" in paired
    text = summary_markdown({"status": "kept-champion", "model_name": "toy", "reason": "champion kept: worse",
                             "selection": {"winner": "pls", "reason": "lowest"},
                             "candidate_errors": {"cnn": "no torch"},
                             "trust": {"threshold": 2.0, "method": "oof", "parts": [], "disabled_parts": {"x": "y"}}})
    assert "**Served family: pls** — lowest" in text
    assert "- candidate `cnn` could not be evaluated: no torch" in text
    assert "Trust: threshold 2 (oof); parts in use: none (nothing is flagged)" in text and "- `x` off: y" in text


@pytest.mark.parametrize("status", ["promoted", "kept-champion", "skipped", "failed"])
def test_summary_title_carries_the_status(status):
    assert summary_markdown({"status": status, "model_name": "m"}).startswith(f"# Recalibration of `m`: {status}")
