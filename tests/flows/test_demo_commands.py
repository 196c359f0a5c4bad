"""The follow-up commands the demo prints point at the demo's store (not the default root `runs`) and work."""

from __future__ import annotations

import json
import shlex

from typer.testing import CliRunner

from libs_pipeline.cli import app, demo_follow_up_commands, demo_synthetic_line
from libs_pipeline.registry import ModelRegistry
from libs_pipeline.testing.registry_fakes import TOY_MANIFEST, stage_model_dir


def test_demo_follow_up_commands_find_the_demo_models(tmp_path, monkeypatch):
    store = tmp_path / "demo output" / "store"  # a space: the printed commands quote the path
    registry = ModelRegistry(store)
    version = registry.register("virtual-aluminium", stage_model_dir(tmp_path, "a"), TOY_MANIFEST)
    registry.promote("virtual-aluminium", version)
    monkeypatch.chdir(tmp_path)  # no runs/ here: the default root finds nothing
    runner = CliRunner()
    default = runner.invoke(app, ["models", "list", "virtual-aluminium"])
    assert version not in default.output

    commands = demo_follow_up_commands(str(store), "virtual-aluminium")
    assert commands[0] == f"libs-pipeline models list virtual-aluminium --root '{store}'"
    listed, shown, history = (runner.invoke(app, shlex.split(c)[1:]) for c in commands[:3])
    assert listed.exit_code == 0 and version in listed.output and "champion" in listed.output
    assert shown.exit_code == 0 and json.loads(shown.output)["manifest"]["version"] == version
    assert history.exit_code == 0 and f"promote champion {version}" in history.output


def test_without_a_champion_the_commands_show_the_scored_challenger_by_version(tmp_path):
    store = tmp_path / "store"
    version = ModelRegistry(store).register("virtual-aluminium", stage_model_dir(tmp_path, "a"), TOY_MANIFEST)
    commands = demo_follow_up_commands(str(store), "virtual-aluminium", version)
    assert commands[1] == f"libs-pipeline models show virtual-aluminium {version} --root {store}"
    shown = CliRunner().invoke(app, shlex.split(commands[1])[1:])
    assert shown.exit_code == 0 and json.loads(shown.output)["manifest"]["version"] == version
    missing = CliRunner().invoke(app, shlex.split(demo_follow_up_commands(str(store), "virtual-aluminium")[1])[1:])
    assert missing.exit_code != 0 and "no version or alias 'champion'" in missing.output


def test_demo_synthetic_line_says_when_no_store_was_drawn_instead_of_failing():
    uri = "/out/store/synthetic/virtual-aluminium/abc.zarr"
    assert demo_synthetic_line({"uri": uri, "realism_passed": True, "realism_failures": []}, "promoted") == (
        f"synthetic store {uri}: realism report PASSED")
    failed = {"uri": uri, "realism_passed": False, "realism_failures": ["AL03: shape chi2 4.7", "residual PCs"]}
    assert demo_synthetic_line(failed, "kept-champion") == (
        f"synthetic store {uri}: realism report FAILED (AL03: shape chi2 4.7; residual PCs)")
    assert demo_synthetic_line(dict(failed, realism_failures=[]), "kept-champion") == (
        f"synthetic store {uri}: realism report FAILED")
    unchecked = demo_synthetic_line({"uri": uri, "realism_passed": None}, "promoted")
    assert unchecked == f"synthetic store {uri}: no realism report"
    # a re-run with nothing changed draws no synthetic spectra: not a failed realism report
    skipped = demo_synthetic_line(None, "skipped")
    assert skipped == "synthetic store: none drawn in this run (recalibration skipped)" and "FAILED" not in skipped
    assert demo_synthetic_line({"uri": None, "realism_passed": None}, "promoted") == (
        "synthetic store: none drawn in this run (recalibration promoted)")
