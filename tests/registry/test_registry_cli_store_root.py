"""`libs-pipeline models ...` against a registry on an S3 root (moto server on loopback), and an S3 root whose
bucket does not exist: a clear message, exit 2, nothing written locally."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from libs_pipeline.cli import app
from libs_pipeline.registry import ModelRegistry
from libs_pipeline.spectra.location import open_location
from libs_pipeline.testing.registry_fakes import TOY_MANIFEST, stage_model_dir

runner = CliRunner()


def test_models_commands_on_an_s3_root(s3_root, tmp_path, monkeypatch):
    monkeypatch.setenv("LIBS_PIPELINE_CACHE", str(tmp_path / "cache"))
    reg = ModelRegistry(s3_root)
    v1, v2 = (reg.register("cu", stage_model_dir(tmp_path, t), TOY_MANIFEST) for t in "ab")

    out = runner.invoke(app, ["models", "promote", "cu", v1, "--root", s3_root])
    assert out.exit_code == 0 and f"cu: champion (none) -> {v1}" in out.output, out.output
    out = runner.invoke(app, ["models", "promote", "cu", v2, "--reason", "better", "--root", s3_root])
    assert f"champion {v1} -> {v2}" in out.output
    out = runner.invoke(app, ["models", "list", "--root", s3_root])
    assert out.exit_code == 0 and v1 in out.output and v2 in out.output and "champion" in out.output

    out = runner.invoke(app, ["models", "show", "cu", "--root", s3_root])
    shown = json.loads(out.output)
    assert shown["status"] == "verified" and shown["path"] == f"{s3_root}/models/cu/{v2}"
    assert not (tmp_path / "cache").exists()  # show verifies the stored objects, it downloads nothing

    out = runner.invoke(app, ["models", "rollback", "cu", "--root", s3_root])
    assert out.exit_code == 0 and f"champion {v2} -> {v1} (rolled back)" in out.output
    out = runner.invoke(app, ["models", "history", "cu"], env={"LIBS_PIPELINE_ROOT": s3_root})
    assert out.exit_code == 0 and "rollback champion" in out.output and ": better" in out.output

    (open_location(s3_root) / "models" / "cu" / v1 / "weights.pt").write_bytes(b"x")
    out = runner.invoke(app, ["models", "show", "cu", v1, "--root", s3_root])
    assert out.exit_code == 2 and "is corrupt and will not be served" in out.output
    assert f"{s3_root}/models/cu/{v1}/weights.pt: 1 bytes" in out.output


def test_models_list_on_a_missing_bucket_fails_clearly(s3, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = runner.invoke(app, ["models", "list", "--root", "s3://no-such-bucket-libs/store"])
    assert out.exit_code == 2
    assert "bucket 'no-such-bucket-libs' does not exist" in out.output and "nothing was written" in out.output
    assert list(tmp_path.iterdir()) == []
