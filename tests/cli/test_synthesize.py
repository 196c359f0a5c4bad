"""`libs-pipeline synthesize`: resolves --dataset through the spectra store, writes the store and the report."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from typer.testing import CliRunner

from libs_pipeline.cli import app
from libs_pipeline.spectra.store import SpectraStore
from libs_pipeline.synth.synthetic_store import open_synthetic

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def store_root(tmp_path_factory, toy_ds):
    root = tmp_path_factory.mktemp("cli-store")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        version = SpectraStore(root).write_version("toy", toy_ds, sources=[], reader="dataset")
    return root, version


def test_synthesize_latest_version_of_a_store(store_root):
    root, version = store_root
    result = CliRunner().invoke(app, ["synthesize", "--store", str(root), "--name", "toy", "--dataset", "LATEST",
                                      "--per-sample", "30", "--chunk-size", "64", "--workers", "0", "--seed", "2"])
    assert result.exit_code == 0, result.output
    stores = list((root / "synthetic" / "toy").glob("*.zarr"))
    assert len(stores) == 1
    assert f"synthetic store: {stores[0]}" in result.output
    assert "realism report: PASSED" in result.output and "synthesizing" in result.output
    ds = open_synthetic(stores[0])
    assert ds.sizes["spectrum"] == 180 and ds.attrs["source"] == {"name": "toy", "version": version}
    assert (stores[0].parent / f"{stores[0].stem}.realism" / "realism.png").is_file()


def test_synthesize_path_dataset_to_explicit_zarr(toy_zarr, tmp_path):
    out = tmp_path / "mine.zarr"
    result = CliRunner().invoke(app, ["synthesize", "--dataset", toy_zarr, "--per-sample", "8", "--out", str(out),
                                      "--workers", "0", "--no-realism", "--interpolate-between", "1"])
    assert result.exit_code == 0, result.output
    assert open_synthetic(out).sizes["spectrum"] == 11 * 8
    assert "realism report" not in result.output


def test_synthesize_errors(store_root, tmp_path):
    root, _ = store_root
    missing = CliRunner().invoke(app, ["synthesize", "--store", str(root), "--name", "nope", "--dataset", "LATEST",
                                       "--per-sample", "5", "--workers", "0"])
    assert missing.exit_code == 2 and "error:" in missing.output
    no_name = CliRunner().invoke(app, ["synthesize", "--store", str(root), "--dataset", "LATEST", "--per-sample", "5"])
    assert no_name.exit_code == 2 and "--root needs --name" in no_name.output
    no_out = CliRunner().invoke(app, ["synthesize", "--dataset", str(tmp_path / "x.zarr"), "--per-sample", "5"])
    assert no_out.exit_code == 2 and "give --out" in no_out.output
    bad = CliRunner().invoke(app, ["synthesize", "--dataset", str(tmp_path / "x.zarr"), "--per-sample", "5",
                                   "--out", str(tmp_path), "--detector", "shared"])
    assert bad.exit_code == 2 and "detector" in bad.output
    assert not Path(tmp_path / "synthetic").exists()
