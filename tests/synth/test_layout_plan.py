"""The dry-run planner: the layout it prints is the one a store gets, 10^8 spectra within the file goal, nothing
is written. Its time and memory goals are checked by benchmarks/cluster_synthesis.py in a process of its own
(this test process holds the whole test session's memory)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from libs_pipeline.cli import app
from libs_pipeline.synth.generate import generate_synthetic, open_measured
from libs_pipeline.synth.layout_plan import plan_layout, ratio_from_model
from libs_pipeline.synth.noise_model import fit_noise_model
from libs_pipeline.testing.stores import tree_bytes


def test_plan_of_1e8_spectra_meets_the_goals():
    plan = plan_layout(10**8, 4096, n_samples=8, chunk_size=1024, shard_chunks=8)
    layout = plan["layout"]
    assert plan["n_spectra"] == 10**8 and layout["n_chunks"] == 97_657 and layout["n_shards"] == 12_208
    assert layout["tasks"] == layout["n_shards"]  # one task per shard
    assert layout["intensity"]["shards"] == [8192, 4096] and layout["intensity"]["chunks"] == [1024, 4096]
    assert plan["files"] == 3 * 12_208 + 18 and plan["files_during_run"] == plan["files"] + 12_208 + 2
    assert plan["files_during_run"] <= 100_000
    assert plan["raw_bytes"] == 10**8 * (4096 * 4 + 1 + 8)
    assert plan["bytes"] == pytest.approx(0.755 * 10**8 * 4096 * 4, rel=0.01)  # intensity dominates
    assert plan["planning_s"] >= 0 and plan["planning_peak_mb"] > 0  # measured here; the goals: benchmarks/
    with pytest.raises(ValueError, match="n_spectra, n_channels and n_samples must be >= 1"):
        plan_layout(0)


def test_the_planned_layout_is_the_written_one(toy_zarr, tmp_path):
    model = fit_noise_model(open_measured(toy_zarr))
    ratio = ratio_from_model(model, chunk_size=64)
    uri = generate_synthetic(toy_zarr, tmp_path, 400, seed=0, chunk_size=64, shard_chunks=4)  # 2400 spectra
    plan = plan_layout(2400, 512, n_samples=6, chunk_size=64, shard_chunks=4, n_labels=1, intensity_ratio=ratio)
    published = len(tree_bytes(uri)) + 2  # + noise model + manifest
    assert plan["layout"]["n_shards"] == 10 and published == plan["files"]
    stored = sum(len(v) for v in tree_bytes(uri).values())
    assert plan["bytes"] == pytest.approx(stored, rel=0.15)


def test_cli_prints_the_plan_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["plan-synthesis", "--n-spectra", "100000000"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    assert plan["files"] <= 100_000 and plan["layout"]["tasks"] == 12_208 and "meets_goals" in plan
    assert list(tmp_path.iterdir()) == []
    bad = CliRunner().invoke(app, ["plan-synthesis", "--n-spectra", "10", "--dataset", str(tmp_path / "none.zarr")])
    assert bad.exit_code == 2 and "none.zarr" in bad.output
