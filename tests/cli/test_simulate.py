"""`libs-pipeline simulate`: writes a campaign and prints its manifest path; bad options fail clearly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml
from typer.testing import CliRunner

from libs_pipeline.cli import app


def test_simulate_writes_campaign_and_prints_manifest(tmp_path):
    out = tmp_path / "campaign"
    config = tmp_path / "campaign.yaml"
    config.write_text("wavelength_start_nm: 300\nwavelength_stop_nm: 340\nn_samples: 5\nbasis_temperatures: 2\n")
    result = CliRunner().invoke(
        app, ["simulate", str(out), "--samples", "2", "--shots", "3", "--channels", "256", "--seed", "4",
              "--scenario", "gain_change", "--severity", "strong", "--workers", "1", "--config", str(config)],
    )
    assert result.exit_code == 0, result.output
    manifest_path = Path(result.stdout.strip().splitlines()[-1])
    assert manifest_path == out / "manifest.yaml" and manifest_path.is_file()
    manifest = yaml.safe_load(manifest_path.read_text())
    assert manifest["name"] == "virtual-aluminium-gain_change-strong"
    assert len(manifest["samples"]) == 2  # --samples overrides the config file
    table = np.loadtxt(out / manifest["samples"][0]["file"], delimiter=",")
    assert table.shape == (256, 4) and table[0, 0] == 300.0 and table[-1, 0] == 340.0
    assert (out / "ground_truth_shots.csv").is_file() and (out / "ground_truth_samples.csv").is_file()


def test_simulate_rejects_unknown_scenario_and_bad_config(tmp_path):
    result = CliRunner().invoke(app, ["simulate", str(tmp_path), "--scenario", "fog", "--workers", "1"])
    assert result.exit_code == 2
    assert "unknown scenario 'fog'" in result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("n_sample: 3\n")
    result = CliRunner().invoke(app, ["simulate", str(tmp_path), "--config", str(bad)])
    assert result.exit_code == 2 and "n_sample" in result.output
    assert not (tmp_path / "manifest.yaml").exists()
