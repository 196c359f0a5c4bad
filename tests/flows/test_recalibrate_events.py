"""The recalibrate flow's events (champion changed, degraded champion kept) and its figures embedded in the UI
artifacts; fast fakes for training and comparison (tests/flows/test_recalibrate_flow.py has the real paths)."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from flows.events import CHAMPION_CHANGED, DEGRADED_CHAMPION_KEPT, degradation_reasons
from libs_pipeline.recalibration import Comparison, heldout_comparison
from libs_pipeline.testing.recalibration_fakes import NO_SYNTHESIS, make_store, register_fake_champion, tiny_config
from tests.flows.flow_doubles import fake_training, run_artifacts

pytestmark = pytest.mark.usefixtures("prefect_harness")
DATA_URI = re.compile(r"!\[[^\]]*\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)")


def ours(events) -> list:
    return [e for e in events if e.event.startswith("libs-pipeline.")]


def test_promotion_emits_champion_changed_and_embeds_the_figures(tmp_path, monkeypatch, recorded_events):
    from flows.recalibrate import recalibrate

    make_store(tmp_path)
    old = register_fake_champion(tmp_path)
    fake_training(monkeypatch, {"challenger": {"rmsep": 0.1, "flag_rate": 0.0},
                                "champion": {"rmsep": 0.5, "flag_rate": 0.0}})
    figures = {}
    for name in ("parity", "residuals"):
        figures[name] = str(tmp_path / f"{name}.png")
        Image.fromarray(np.full((200, 300, 3), 200, dtype=np.uint8)).save(figures[name])

    def compare_with_figures(split, models, out_dir):
        import pandas as pd

        return Comparison(table=pd.DataFrame(), figures=figures,
                          metrics={"challenger": {"rmsep": 0.1, "flag_rate": 0.0},
                                   "champion": {"rmsep": 0.5, "flag_rate": 0.0}})

    monkeypatch.setattr(heldout_comparison, "compare_on_heldout", compare_with_figures)
    out = recalibrate(tiny_config(tmp_path, **NO_SYNTHESIS))
    assert out["status"] == "promoted"
    (event,) = ours(recorded_events())
    assert event.event == CHAMPION_CHANGED and event.resource.id == "libs-pipeline.model.toy"
    assert event.payload["version"] == out["champion_after"] == out["challenger"]
    assert event.payload["previous"] == old and event.payload["reason"].startswith("promoted: challenger RMSEP 0.1")

    arts = run_artifacts(out["flow_run_id"])
    summary = arts["toy-recalibration-summary"].data
    assert "file://" not in summary
    pngs = [base64.b64decode(b) for b in DATA_URI.findall(summary)]
    assert len(pngs) == 2 and all(p.startswith(b"\x89PNG\r\n\x1a\n") for p in pngs)
    for name in ("parity", "residuals"):
        (png,) = [base64.b64decode(b) for b in DATA_URI.findall(arts[f"toy-recalibration-{name}-plot"].data)]
        assert png == Path(figures[name]).read_bytes()


def test_kept_degraded_champion_emits_an_event(tmp_path, monkeypatch, recorded_events):
    from flows.recalibrate import recalibrate

    make_store(tmp_path)
    old = register_fake_champion(tmp_path)
    fake_training(monkeypatch, {"challenger": {"rmsep": 0.6, "flag_rate": 0.0},
                                "champion": {"rmsep": 0.5, "flag_rate": 0.4}, "pls": {"rmsep": 0.3}})
    out = recalibrate(tiny_config(tmp_path, **NO_SYNTHESIS, promotion={"max_flag_rate": 0.2}))
    assert out["status"] == "kept-champion"
    (event,) = ours(recorded_events())
    assert event.event == DEGRADED_CHAMPION_KEPT and event.resource.id == "libs-pipeline.model.toy"
    assert event.payload["champion"] == old
    assert event.payload["reasons"] == [
        "champion flags 40.0% of in-distribution spectra, above the target 20.0%",
        "pls baseline RMSEP 0.3 beats the champion's 0.5",
    ]
    assert event.payload["metrics"] == {"rmsep": 0.5, "flag_rate": 0.4}


def test_kept_healthy_champion_emits_nothing(tmp_path, monkeypatch, recorded_events):
    from flows.recalibrate import recalibrate

    make_store(tmp_path)
    register_fake_champion(tmp_path)
    fake_training(monkeypatch, {"challenger": {"rmsep": 0.6, "flag_rate": 0.0},
                                "champion": {"rmsep": 0.5, "flag_rate": 0.0}, "pls": {"rmsep": 0.7}})
    assert recalibrate(tiny_config(tmp_path, **NO_SYNTHESIS))["status"] == "kept-champion"
    assert ours(recorded_events()) == []


def test_degradation_reasons():
    assert degradation_reasons({}, 0.1) == []
    assert degradation_reasons({"champion": {"rmsep": float("nan")}}, 0.1) == ["champion RMSEP on the new data is nan"]
    loso = {"pls": {"rmsep": 0.2, "flag_rate": 0.0}, "univariate": {"rmsep": 0.1}}
    assert degradation_reasons(loso, 0.1, champion_key="pls") == ["univariate baseline RMSEP 0.1 beats the champion's 0.2"]
