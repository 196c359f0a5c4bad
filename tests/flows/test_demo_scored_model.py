"""Which model the demo evaluates and scores fresh batches with: the champion, else the refused first challenger."""

from __future__ import annotations

import pytest

from flows.demo import scored_model

METRICS = {"challenger": {"rmsep": 0.15}, "champion": {"rmsep": 0.12}}


def test_a_promoted_challenger_is_scored_as_the_champion_with_its_heldout_rmsep():
    outcome = {"status": "promoted", "champion_after": "v2", "champion_path": "/r/v2", "challenger": "v2",
               "challenger_path": "/r/v2", "metrics": METRICS}
    assert scored_model(outcome) == {"model": "champion", "version": "v2", "path": "/r/v2", "role": "champion",
                                     "rmsep": 0.15}


def test_a_kept_champion_is_scored_with_the_champions_rmsep():
    outcome = {"status": "kept-champion", "champion_after": "v1", "champion_path": "/r/v1", "challenger": "v2",
               "challenger_path": "/r/v2", "metrics": METRICS}
    assert scored_model(outcome)["model"] == "champion" and scored_model(outcome)["rmsep"] == 0.12


def test_without_a_champion_the_refused_challenger_is_scored_by_version_and_labelled():
    reason = "champion kept: the challenger's synthetic training spectra failed the realism report"
    outcome = {"status": "kept-champion", "reason": reason, "champion_after": None, "champion_path": None,
               "challenger": "v1", "challenger_path": "/r/v1", "metrics": METRICS}
    scored = scored_model(outcome)
    assert (scored["model"], scored["version"], scored["path"], scored["rmsep"]) == ("v1", "v1", "/r/v1", 0.15)
    assert scored["role"] == f"challenger, not promoted ({reason}); no champion yet"


def test_a_run_that_registered_nothing_names_its_status_and_reason():
    with pytest.raises(RuntimeError, match=r"recalibration \(failed: boom\) registered no model to evaluate"):
        scored_model({"status": "failed", "error": "boom", "champion_after": None, "challenger": None})
