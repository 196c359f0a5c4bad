"""The recalibrate flow on a temporary Prefect server: promote / skip / keep / fail paths, artifacts, registry state."""

from __future__ import annotations

from pathlib import Path

import pytest

from libs_pipeline.config import RecalibrationConfig
from libs_pipeline.registry import ModelRegistry
from libs_pipeline.spectra.store import SpectraStore
from libs_pipeline.testing import toy_campaign
from libs_pipeline.testing.recalibration_fakes import (
    NO_SYNTHESIS,
    TINY_TRAINING,
    make_store,
    register_fake_champion,
    tiny_config,
)
from tests.flows.flow_doubles import fake_training, run_artifacts

pytestmark = pytest.mark.usefixtures("prefect_harness")

@pytest.mark.slow
def test_first_run_promotes_second_run_skips(tmp_path):
    from flows.recalibrate import recalibrate

    version = make_store(tmp_path)
    config = tiny_config(tmp_path)
    registry = ModelRegistry(tmp_path)

    first = recalibrate(config)
    assert first["status"] == "promoted", first["reason"]
    champion = registry.resolve("toy", "champion")
    assert first["champion_before"] is None and first["champion_after"] == champion == first["challenger"]
    manifest = registry.manifest("toy", "champion")
    assert manifest["prefect_flow_run_id"] == first["flow_run_id"]
    assert manifest["data"]["spectra"] == {"name": "toy", "version": version}
    assert manifest["data"]["synthetic"]["uri"].endswith(".zarr")
    assert manifest["data"]["synthetic"]["realism_passed"] is True and first["synthetic"]["realism_passed"] is True
    assert manifest["data"]["train_spectra"]["name"] == "toy.train"
    assert set(manifest["data"]["heldout_samples"]).isdisjoint(manifest["metrics"]["training"]["train_samples"])
    assert manifest["config_hash"] == first["config_hash"]
    assert manifest["trust_threshold"] > 0 and "trust.json" in manifest["files"]
    assert manifest["metrics"]["rmsep"] == pytest.approx(first["metrics"]["challenger"]["rmsep"])
    assert set(first["metrics"]) == {"challenger", "univariate", "pls"}
    report = Path(first["report_dir"])
    assert {"summary.md", "outcome.json", "parity.png", "residuals.png", "metrics.csv", "data_validation.md"} <= {
        p.name for p in report.iterdir()
    }
    assert not (tmp_path / "staging" / report.name).exists()
    arts = run_artifacts(first["flow_run_id"])
    assert {"toy-recalibration-summary", "toy-recalibration-metrics", "toy-model-version", "toy-data-validation",
            "toy-recalibration-parity-plot", "toy-recalibration-residuals-plot"} <= set(arts)
    assert "promoted" in arts["toy-recalibration-summary"].data
    assert champion in arts["toy-model-version"].data
    assert "schema validation of the stored data: passed" in arts["toy-data-validation"].data

    second = recalibrate(config)
    assert second["status"] == "skipped" and "nothing changed" in second["reason"]
    assert second["heldout_samples"] == first["heldout_samples"]  # the champion's own held-out samples
    assert registry.resolve("toy", "champion") == champion
    assert registry.versions("toy") == [champion]
    assert "skipped" in run_artifacts(second["flow_run_id"])["toy-recalibration-summary"].data

    from libs_pipeline.candidates import load_servable
    from libs_pipeline.registry import CorruptModelError
    from libs_pipeline.trust.calibration import load_trust

    served = registry.path("toy", "champion")
    model = load_servable(served)  # the default challenger: a deep ensemble of 5 networks on one split
    assert len(model.members) == 5 and model.analyte == "Cu" and model.wavelength.size == 256
    assert [m.config.seed for m in model.members] == [config.seed + k for k in range(5)]
    assert manifest["metrics"]["training"]["n_networks"] == 5
    trust = load_trust(served)  # the tiny toy split is too small to calibrate parts, but the spread was offered
    assert "spread" in trust.part_names() or "single network" not in trust.disabled_parts["spread"]
    with open(served / "member-0" / "weights.pt", "r+b") as fh:  # a truncated champion is reported, never loaded
        fh.truncate(100)
    with pytest.raises(CorruptModelError, match="weights.pt: 100 bytes"):
        registry.path("toy", "champion")


def test_training_failure_fails_run_and_keeps_champion(tmp_path, monkeypatch):
    import libs_pipeline.models.training_run as training_run
    from flows.recalibrate import recalibrate

    make_store(tmp_path)
    old = register_fake_champion(tmp_path)

    def boom(*args, **kwargs):
        raise RuntimeError("training diverged (test)")

    monkeypatch.setattr(training_run, "train_model", boom)  # inside the real train subflow
    state = recalibrate(tiny_config(tmp_path, **NO_SYNTHESIS), return_state=True)
    assert state.is_failed()
    assert "failed at step train-challenger: RuntimeError: training diverged (test)" in state.message
    assert f"champion unchanged: {old}" in state.message
    registry = ModelRegistry(tmp_path)
    assert registry.aliases("toy") == {"champion": old}
    assert registry.versions("toy") == [old]
    arts = run_artifacts(str(state.state_details.flow_run_id))
    summary = arts["toy-recalibration-summary"].data
    assert "failed" in summary and "training diverged" in summary and "The champion was not changed." in summary


def test_worse_challenger_is_registered_but_not_promoted(tmp_path, monkeypatch):
    from flows.recalibrate import recalibrate

    make_store(tmp_path)
    old = register_fake_champion(tmp_path)
    fake_training(
        monkeypatch, {"challenger": {"rmsep": 0.6, "flag_rate": 0.0}, "champion": {"rmsep": 0.5, "flag_rate": 0.0}}
    )
    out = recalibrate(tiny_config(tmp_path, **NO_SYNTHESIS))
    assert out["status"] == "kept-champion"
    assert "improvement -0.1 is below the required 0.01" in out["reason"]
    registry = ModelRegistry(tmp_path)
    new = out["challenger"]
    assert registry.aliases("toy") == {"champion": old, "challenger": new}
    manifest = registry.manifest("toy", new)
    assert manifest["recalibration"]["decision"]["promote"] is False
    assert manifest["recalibration"]["compared_with"] == old
    assert manifest["data"]["synthetic"] is None and manifest["trust_threshold"] == 2.0


def test_failed_realism_blocks_promotion(tmp_path, monkeypatch):
    import flows.recalibrate as module
    from flows.recalibrate import recalibrate

    make_store(tmp_path)
    fake_training(monkeypatch, {"challenger": {"rmsep": 0.1, "flag_rate": 0.0}})
    monkeypatch.setattr(module, "run_synthesis_flow", lambda config, split: {
        "uri": str(tmp_path / "synthetic" / "x.zarr"), "realism": {"passed": False, "failures": ["S00: too smooth"]}})
    out = recalibrate(tiny_config(tmp_path, training={**TINY_TRAINING}))
    assert out["status"] == "kept-champion" and "failed the realism report" in out["reason"]
    assert out["synthetic"]["realism_failures"] == ["S00: too smooth"]
    assert "champion" not in ModelRegistry(tmp_path).aliases("toy")


def test_corrupt_champion_fails_run_before_training(tmp_path, monkeypatch):
    import flows.recalibrate as module
    from flows.recalibrate import recalibrate

    make_store(tmp_path)
    old = register_fake_champion(tmp_path)
    (tmp_path / "models" / "toy" / old / "weights.pt").write_text("")
    monkeypatch.setattr(module, "run_training_flow", lambda *a, **k: pytest.fail("must not train"))
    state = recalibrate(tiny_config(tmp_path), return_state=True)
    assert state.is_failed()
    assert "failed at step read-champion: CorruptModelError" in state.message
    assert "weights.pt: 0 bytes" in state.message


def test_missing_dataset_is_a_clear_failure(tmp_path):
    from flows.recalibrate import recalibrate

    state = recalibrate(tiny_config(tmp_path), return_state=True)
    assert state.is_failed()
    assert "failed at step find-latest-spectra: FileNotFoundError: no spectra version of dataset 'toy'" in state.message


def test_retry_condition_only_retries_transient_io_errors():
    from prefect.states import Failed

    from flows.recalibrate import transient_io_error

    assert transient_io_error(None, None, Failed(data=OSError("disk hiccup")))
    assert transient_io_error(None, None, Failed(data=TimeoutError("lock busy")))
    assert not transient_io_error(None, None, Failed(data=FileNotFoundError("gone")))
    assert not transient_io_error(None, None, Failed(data=ValueError("bad input")))


def test_recalibrate_cli(tmp_path, monkeypatch, capsys):
    import typer
    from typer.testing import CliRunner

    import libs_pipeline.models.training_run as training_run
    from libs_pipeline.cli import app, recalibrate_command

    make_store(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("promotion: {max_flag_rate: 2}\n")
    out = CliRunner().invoke(app, ["recalibrate", "--config", str(bad), "--dataset", "toy", "--root", str(tmp_path)])
    assert out.exit_code == 1 and "invalid recalibration config" in out.output and "max_flag_rate" in out.output

    # flow runs: call the command function directly (CliRunner's swapped streams break Prefect's log handlers)
    fake_training(monkeypatch, {"challenger": {"rmsep": 0.3, "flag_rate": 0.02}})
    good = tmp_path / "good.yaml"
    good.write_text("synthesis: {per_sample: 0}\ntraining: {augmentation: false}\nprotocol: holdout\n"
                    "candidates: [multitask]\n")
    capsys.readouterr()
    recalibrate_command(dataset="toy", config=str(good), root=str(tmp_path))
    printed = capsys.readouterr().out
    assert "promoted: no champion yet" in printed
    assert f"champion: {ModelRegistry(tmp_path).aliases('toy')['champion']}" in printed

    monkeypatch.undo()

    def boom(*args, **kwargs):
        raise RuntimeError("no")

    monkeypatch.setattr(training_run, "train_model", boom)
    good.write_text("synthesis: {per_sample: 0}\ntraining: {augmentation: false}\nseed: 5\nprotocol: holdout\n"
                    "candidates: [multitask]\n")
    with pytest.raises(typer.Exit) as exit_info:
        recalibrate_command(dataset="toy", config=str(good), root=str(tmp_path))
    assert exit_info.value.exit_code == 1
    assert "failed at step train-challenger: RuntimeError: no" in capsys.readouterr().err


def test_small_campaign_compares_families_by_loso_and_serves_the_best(tmp_path):
    from flows.recalibrate import recalibrate

    from libs_pipeline.candidates import load_servable
    from libs_pipeline.prediction import run_prediction

    version = make_store(tmp_path)
    config = RecalibrationConfig(root=str(tmp_path), dataset="toy", candidates=["univariate", "pls"])
    first = recalibrate(config)
    assert first["status"] == "promoted", first["reason"]
    assert first["protocol"]["name"] == "loso" and "8 labelled samples" in first["protocol"]["reason"]
    winner = first["selection"]["winner"]
    assert winner in ("univariate", "pls") and set(first["metrics"]) == {"challenger", "univariate", "pls"}
    assert first["metrics"]["challenger"]["rmsep"] == min(first["metrics"][n]["rmsep"] for n in ("univariate", "pls"))
    registry = ModelRegistry(tmp_path)
    manifest = registry.manifest("toy", "champion")
    assert manifest["metrics"]["candidate"] == winner and manifest["data"]["spectra"]["version"] == version
    assert "baseline.json" in manifest["files"] and "trust.json" in manifest["files"]
    assert [r["candidate"] for r in manifest["recalibration"]["candidate_table"]] == ["univariate", "pls"]
    pls, uni = first["metrics"]["pls"], first["metrics"]["univariate"]
    assert uni["minus_univariate"] == 0.0 and uni["minus_univariate_ci95"] == [0.0, 0.0]
    assert pls["minus_univariate"] == pytest.approx(pls["rmsep"] - uni["rmsep"])
    low, high = pls["minus_univariate_ci95"]
    assert low <= pls["minus_univariate"] <= high
    report = Path(first["report_dir"])
    assert {"candidates.csv", "candidates.json", "loso_predictions.csv", "parity.png"} <= {p.name for p in report.iterdir()}
    assert load_servable(registry.path("toy", "champion")).kind == winner

    run = run_prediction("champion", SpectraStore(tmp_path).uri("toy", version), registry_root=tmp_path, name="toy")
    assert run.tables.samples["flag"].mean() <= 0.5 and run.tables.spectra["uncertainty"].isna().all()

    second = recalibrate(config)
    assert second["status"] == "skipped"


def test_unlabelled_dataset_is_refused_with_a_clear_message(tmp_path):
    import numpy as np

    from flows.recalibrate import recalibrate

    ds = toy_campaign(n_samples=4, n_shots=4, n_channels=256)
    ds["Cu"] = ds["Cu"] * np.nan
    SpectraStore(tmp_path).write_version("toy", ds, sources=[{"test": True}], reader="dataset")
    state = recalibrate(RecalibrationConfig(root=str(tmp_path), dataset="toy"), return_state=True)
    assert state.is_failed()
    assert "failed at step choose-protocol: NoLabelsError" in state.message
    assert "no spectrum has a certified 'Cu' value" in state.message


@pytest.mark.slow
def test_holdout_serves_a_baseline_that_beats_the_network(tmp_path):
    from flows.recalibrate import recalibrate

    make_store(tmp_path)
    config = tiny_config(tmp_path, candidates=["multitask", "univariate", "pls"], **NO_SYNTHESIS)
    out = recalibrate(config)
    assert out["status"] == "promoted", out["reason"]
    served = out["metrics"]["challenger"]["candidate"]
    assert served in ("univariate", "pls")  # a 10-step network cannot beat a clean line calibration
    assert out["metrics"]["challenger"]["rmsep"] == pytest.approx(out["metrics"][served]["rmsep"])
    assert any("lower held-out RMSEP than the multitask network" in n for n in out["notes"])
    path = ModelRegistry(tmp_path).path("toy", "champion")
    assert (path / "baseline.json").is_file() and (path / "trust.json").is_file()


def test_recalibration_lines_say_why_the_served_family_won():
    from libs_pipeline.cli import recalibration_lines

    outcome = {
        "reason": "promoted: no champion yet; challenger RMSEP 984.7, flag rate 5.7% within target",
        "protocol": {"reason": "7 labelled samples ... leave-one-sample-out"},
        "metrics": {"univariate": {"rmsep": 984.67, "flag_rate": None, "minus_univariate": 0.0},
                    "multitask_aug": {"rmsep": 808.5, "minus_univariate": -176.17,
                                      "minus_univariate_ci95": [-560.4, 120.0]},
                    "pls": {"rmsep": 1158.5, "minus_univariate": float("nan")}},
        "selection": {"winner": "univariate", "reason": "univariate has the lowest per-sample leave-one-sample-out "
                      "RMSEP (984.7 ppm); not eligible: multitask_aug (its synthetic spectra failed the realism check)"},
        "champion_after": "d6a6", "report_dir": "/r",
    }
    assert recalibration_lines(outcome) == [
        "promoted: no champion yet; challenger RMSEP 984.7, flag rate 5.7% within target",
        "comparison: 7 labelled samples ... leave-one-sample-out",
        "  univariate               RMSEP 984.7  flag rate n/a",
        "  multitask_aug            RMSEP 808.5  flag rate n/a  vs univariate -176.2 [-560.4, 120]",
        "  pls                      RMSEP 1158  flag rate n/a",
        "served family: univariate has the lowest per-sample leave-one-sample-out RMSEP (984.7 ppm); not eligible: "
        "multitask_aug (its synthetic spectra failed the realism check)",
        "champion: d6a6; report: /r",
    ]
    del outcome["selection"]  # the held-out protocol has no family selection line
    assert not any(line.startswith("served family") for line in recalibration_lines(outcome))
