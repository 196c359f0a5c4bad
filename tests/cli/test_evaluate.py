"""`libs-pipeline evaluate`: prints the summary table and the report path; errors exit 1 with one line."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from libs_pipeline.cli import app

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_evaluate_command(toy_zarr, tmp_path):
    result = CliRunner().invoke(
        app, ["evaluate", toy_zarr, "--root", str(tmp_path), "--run-name", "cli1", "--test-sample", "S03",
              "--test-sample", "S01", "--pls-max-components", "3"],
    )
    assert result.exit_code == 0, result.output
    report = tmp_path / "reports" / "cli1" / "report.md"
    assert f"report: {report}" in result.output and report.is_file()
    assert "| univariate |" in result.output and "| pls |" in result.output


def test_evaluate_command_errors(toy_zarr, tmp_path):
    runner = CliRunner()
    bad = runner.invoke(app, ["evaluate", toy_zarr, "--root", str(tmp_path), "--analyte", "Zn"])
    assert bad.exit_code == 1 and "error: " in bad.output and "no label variable 'Zn'" in bad.output
    bad = runner.invoke(app, ["evaluate", toy_zarr, "--root", str(tmp_path), "--protocol", "kfold"])
    assert bad.exit_code == 1 and "protocol" in bad.output
