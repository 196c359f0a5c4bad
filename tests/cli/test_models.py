"""`libs-pipeline models list|show|promote|rollback|history` against a temporary registry."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from libs_pipeline.cli import app
from libs_pipeline.registry import ModelRegistry
from libs_pipeline.testing.registry_fakes import TOY_MANIFEST, stage_model_dir

runner = CliRunner()


def test_models_cli_round_trip(tmp_path):
    root = tmp_path / "store"
    reg = ModelRegistry(root)
    v1, v2 = (reg.register("cu", stage_model_dir(tmp_path, t), TOY_MANIFEST) for t in "ab")

    out = runner.invoke(app, ["models", "promote", "cu", v1, "--root", str(root)])
    assert out.exit_code == 0, out.output
    assert f"cu: champion (none) -> {v1}" in out.output
    out = runner.invoke(app, ["models", "promote", "cu", v2, "--reason", "better", "--root", str(root)])
    assert f"champion {v1} -> {v2}" in out.output

    out = runner.invoke(app, ["models", "list", "--root", str(root)])
    assert out.exit_code == 0 and v1 in out.output and v2 in out.output and "champion" in out.output

    out = runner.invoke(app, ["models", "show", "cu", "--root", str(root)])
    shown = json.loads(out.output)
    assert shown["status"] == "verified" and shown["manifest"]["version"] == v2

    out = runner.invoke(app, ["models", "rollback", "cu", "--root", str(root)])
    assert out.exit_code == 0 and f"champion {v2} -> {v1} (rolled back)" in out.output
    out = runner.invoke(app, ["models", "history", "cu"], env={"LIBS_PIPELINE_ROOT": str(root)})
    assert out.exit_code == 0 and "rollback champion" in out.output and ": better" in out.output

    out = runner.invoke(app, ["models", "rollback", "cu", "--root", str(root)])
    assert out.exit_code == 1 and "no earlier version to roll back to" in out.output


def test_models_show_corrupt_version_exits_2(tmp_path):
    root = tmp_path / "store"
    reg = ModelRegistry(root)
    v = reg.register("cu", stage_model_dir(tmp_path, "a"), TOY_MANIFEST)
    (root / "models" / "cu" / v / "weights.pt").write_bytes(b"x")
    out = runner.invoke(app, ["models", "show", "cu", v, "--root", str(root)])
    assert out.exit_code == 2 and "is corrupt and will not be served" in out.output
    out = runner.invoke(app, ["models", "list", "cu", "--root", str(root)])
    assert out.exit_code == 0 and "wrong size" in out.output
    out = runner.invoke(app, ["models", "show", "cu", "nope", "--root", str(root)])
    assert out.exit_code == 1 and "has no version or alias 'nope'" in out.output
