"""One name for the store root on the command line: ``--root`` (older ``--store`` / ``--registry`` still accepted),
defaulting from LIBS_PIPELINE_ROOT."""

from __future__ import annotations

from typer.testing import CliRunner

from libs_pipeline.cli import app
from libs_pipeline.registry import ModelRegistry
from libs_pipeline.spectra.store import SpectraStore
from libs_pipeline.testing import toy_campaign
from libs_pipeline.testing.registry_fakes import TOY_MANIFEST, stage_model_dir

runner = CliRunner()


def test_spectra_commands_take_root_its_old_name_and_the_environment(tmp_path, monkeypatch):
    version = SpectraStore(tmp_path).write_version("toy", toy_campaign(n_samples=2, n_shots=2, n_channels=32),
                                                   sources=[{}], reader="dataset")
    for args in (["--root", str(tmp_path)], ["--store", str(tmp_path)]):
        listed = runner.invoke(app, ["spectra", "list", *args])
        assert listed.exit_code == 0, listed.output
        assert version in listed.output
    monkeypatch.setenv("LIBS_PIPELINE_ROOT", str(tmp_path))
    from_env = runner.invoke(app, ["spectra", "list"])
    assert from_env.exit_code == 0, from_env.output
    assert version in from_env.output


def test_models_and_predict_use_the_same_root(tmp_path, monkeypatch):
    registry = ModelRegistry(tmp_path)
    version = registry.register("toy", stage_model_dir(tmp_path, "a"), TOY_MANIFEST)
    listed = runner.invoke(app, ["models", "list", "--root", str(tmp_path)])
    assert listed.exit_code == 0 and version in listed.output
    # a registered version is resolved in the --root registry (here it is no real model: loading it fails)
    for flag in ("--root", "--registry"):
        out = runner.invoke(app, ["predict", str(tmp_path / "x.zarr"), "--model", version, flag, str(tmp_path),
                                  "--name", "toy"])
        assert out.exit_code == 1 and "--root ROOT --name NAME" not in out.output, out.output
    missing = runner.invoke(app, ["predict", str(tmp_path / "x.zarr"), "--model", version, "--name", "toy"])
    assert missing.exit_code == 1 and "--root ROOT --name NAME" in missing.output
    monkeypatch.setenv("LIBS_PIPELINE_ROOT", str(tmp_path))
    from_env = runner.invoke(app, ["predict", str(tmp_path / "x.zarr"), "--model", version, "--name", "toy"])
    assert from_env.exit_code == 1 and "--root ROOT --name NAME" not in from_env.output
