"""`libs-pipeline ingest` and `libs-pipeline spectra list|show`: thin wrappers, readable output, exit codes."""

from __future__ import annotations

from typer.testing import CliRunner

from libs_pipeline.cli import app
from libs_pipeline.spectra.store import SpectraStore

runner = CliRunner()


def test_cli_ingest_list_show(campaign, local_root):
    (campaign.parent / "bad.txt").write_text("300,1\n301,x\n")
    with campaign.open("a") as fh:
        fh.write("- sample_id: B\n  file: bad.txt\n  labels: {Cu: 1.0}\n")
    res = runner.invoke(app, ["ingest", str(campaign), "--store", str(local_root), "--name", "cli_toy", "--dark-tolerance", "50"])
    assert res.exit_code == 3, res.output  # partial: bad.txt rejected, the rest landed
    version = SpectraStore(local_root).latest("cli_toy")
    assert f"version {version}  status partial  dataset cli_toy" in res.output
    assert "12 spectra (12 new); files: 3 accepted, 0 already ingested, 1 rejected" in res.output
    assert "bad.txt" in res.output and "non_numeric" in res.output and "quarantine:" in res.output
    listed = runner.invoke(app, ["spectra", "list", "--store", str(local_root)])
    assert listed.exit_code == 0 and "cli_toy" in listed.output and version in listed.output
    shown = runner.invoke(app, ["spectra", "show", "cli_toy", "--store", str(local_root)])
    assert shown.exit_code == 0 and "Cu_wt%" in shown.output and "S02.txt" in shown.output
    missing = runner.invoke(app, ["spectra", "show", "cli_toy", "0123456789abcdef", "--store", str(local_root)])
    assert missing.exit_code == 1


def test_cli_exit_codes(tmp_path, local_root):
    (tmp_path / "bad.txt").write_text("")
    (tmp_path / "m.yaml").write_text("units: ppm\nsamples:\n  - {sample_id: A, file: bad.txt, labels: {Na: 10}}\n")
    res = runner.invoke(app, ["ingest", str(tmp_path / "m.yaml"), "--store", str(local_root)])
    assert res.exit_code == 1 and "status rejected" in res.output and "empty_file" in res.output
    res = runner.invoke(app, ["ingest", str(tmp_path / "m.yaml"), "--store", str(local_root), "--max-file-mb", "-1"])
    assert res.exit_code == 2
