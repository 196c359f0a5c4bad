"""ModelRegistry: immutable versions, sha256 verification, aliases, history, concurrency, no torch import."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys

import numpy as np
import pytest

from libs_pipeline.registry import CorruptModelError, ModelRegistry, RegistryError
from libs_pipeline.registry.model_registry import ALIASES_FILE, HISTORY_FILE
from libs_pipeline.testing.registry_fakes import TOY_MANIFEST, stage_model_dir


@pytest.fixture
def reg(tmp_path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "store")


def test_register_copies_files_and_writes_full_manifest(reg, tmp_path):
    staged = stage_model_dir(tmp_path, "a")
    version = reg.register("cu", staged, {**TOY_MANIFEST, "trust_threshold": 2.5, "metrics": {"rmsep": np.float32(0.25)}})
    assert len(version) == 16 and all(c in "0123456789abcdef" for c in version)
    vdir = reg.path("cu", version)
    assert vdir == tmp_path / "store" / "models" / "cu" / version
    assert (vdir / "weights.pt").read_bytes() == (staged / "weights.pt").read_bytes()
    m = reg.manifest("cu", version)
    assert m["name"] == "cu" and m["version"] == version
    assert set(m["files"]) == {"weights.pt", "normalisation.json", "config.json", "metrics.json"}
    assert m["files"]["weights.pt"]["bytes"] == 4096
    assert m["data"] == TOY_MANIFEST["data"] and m["seeds"] == {"train": 0}
    assert m["metrics"] == {"rmsep": 0.25}  # numpy scalar converted
    assert m["trust_threshold"] == 2.5
    assert m["code"]["package_version"] == "0.1.0"
    assert m["libraries"]["numpy"] == np.__version__
    assert m["prefect_flow_run_id"] is None
    assert m["created_at"].endswith("+00:00")
    assert reg.versions("cu") == [version] and reg.names() == ["cu"]
    assert [e["action"] for e in reg.history("cu")] == ["register"]


def test_register_same_files_is_idempotent(reg, tmp_path):
    weights = os.urandom(1000)
    v1 = reg.register("cu", stage_model_dir(tmp_path, "a", weights), TOY_MANIFEST)
    (tmp_path / "again").mkdir()
    v2 = reg.register("cu", stage_model_dir(tmp_path / "again", "a", weights), TOY_MANIFEST)
    assert v1 == v2
    assert len(reg.history("cu")) == 1
    assert not [p for p in (tmp_path / "store" / "models" / "cu").iterdir() if p.name.startswith(".tmp")]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: (d / "config.json").unlink(), "lacks required file(s): config.json"),
        (lambda d: (d / "manifest.json").write_text("{}"), "reserved for the registry"),
        (lambda d: (d / "link.pt").symlink_to(d / "weights.pt"), "symlinks are not allowed"),
    ],
)
def test_register_rejects_bad_staged_directories(reg, tmp_path, mutate, message):
    staged = stage_model_dir(tmp_path, "bad")
    mutate(staged)
    with pytest.raises(RegistryError, match=message.replace("(", r"\(").replace(")", r"\)")):
        reg.register("cu", staged, TOY_MANIFEST)
    assert reg.versions("cu") == []


def test_register_rejects_bad_manifests_and_names(reg, tmp_path):
    staged = stage_model_dir(tmp_path, "a")
    with pytest.raises(RegistryError, match="lacks required key\\(s\\): seeds"):
        reg.register("cu", staged, {"data": {}, "metrics": {}})
    with pytest.raises(RegistryError, match="registry-owned key\\(s\\): files"):
        reg.register("cu", staged, {**TOY_MANIFEST, "files": {}})
    with pytest.raises(RegistryError, match="object is not JSON-serialisable"):
        reg.register("cu", staged, {**TOY_MANIFEST, "metrics": {"x": object()}})
    with pytest.raises(RegistryError, match="invalid model name '../evil'"):
        reg.register("../evil", staged, TOY_MANIFEST)
    with pytest.raises(RegistryError, match="does not exist"):
        reg.register("cu", tmp_path / "nope", TOY_MANIFEST)
    assert not (tmp_path / "store" / "evil").exists()


def test_truncated_weights_are_reported_and_never_served(reg, tmp_path):
    v1 = reg.register("cu", stage_model_dir(tmp_path, "a"), TOY_MANIFEST)
    v2 = reg.register("cu", stage_model_dir(tmp_path, "b"), TOY_MANIFEST)
    reg.promote("cu", v1)
    weights = tmp_path / "store" / "models" / "cu" / v2 / "weights.pt"
    with open(weights, "r+b") as fh:
        fh.truncate(100)
    problems = reg.verify("cu", v2)
    assert len(problems) == 1 and "weights.pt: 100 bytes, manifest says 4096 (truncated or altered)" in problems[0]
    with pytest.raises(CorruptModelError, match=f"version {v2} is corrupt.*weights.pt: 100 bytes"):
        reg.path("cu", v2)
    with pytest.raises(CorruptModelError):
        reg.promote("cu", v2)
    assert reg.aliases("cu") == {"champion": v1}
    listed = {v.version: v for v in reg.list("cu")}
    assert listed[v2].problem == "weights.pt: missing or wrong size" and listed[v1].problem is None
    assert reg.path("cu", "champion") == tmp_path / "store" / "models" / "cu" / v1


def test_altered_extra_and_missing_files_are_detected(reg, tmp_path):
    v = reg.register("cu", stage_model_dir(tmp_path, "a"), TOY_MANIFEST)
    vdir = tmp_path / "store" / "models" / "cu" / v
    data = bytearray((vdir / "weights.pt").read_bytes())
    data[10] ^= 0xFF
    (vdir / "weights.pt").write_bytes(bytes(data))
    (vdir / "evil.pkl").write_bytes(b"x")
    (vdir / "metrics.json").unlink()
    problems = "\n".join(reg.verify("cu", v))
    assert "weights.pt: sha256" in problems and "does not match manifest" in problems
    assert "evil.pkl: not listed in manifest" in problems
    assert "metrics.json: missing" in problems
    (vdir / "manifest.json").unlink()
    with pytest.raises(CorruptModelError, match="manifest.json: missing \\(partial version\\)"):
        reg.path("cu", v)


def test_promote_rollback_and_history(reg, tmp_path):
    v1, v2, v3 = (reg.register("cu", stage_model_dir(tmp_path, t), TOY_MANIFEST) for t in "abc")
    assert reg.aliases("cu") == {}
    with pytest.raises(RegistryError, match="has no earlier version to roll back to"):
        reg.rollback("cu")
    reg.promote("cu", v1)
    reg.promote("cu", v2, reason="better")
    assert reg.promote("cu", v2) == {}  # already there: no event
    reg.promote("cu", v3, alias="challenger")
    reg.promote("cu", "challenger", alias="champion")
    assert reg.aliases("cu") == {"champion": v3, "challenger": v3}
    assert reg.resolve("cu", "champion") == v3
    event = reg.rollback("cu", reason="regression")
    assert event["version"] == v2 and event["previous"] == v3 and event["reason"] == "regression"
    assert reg.rollback("cu")["version"] == v1
    with pytest.raises(RegistryError, match=f"alias 'champion' \\(now {v1}\\) has no earlier version"):
        reg.rollback("cu")
    assert reg.aliases("cu") == {"champion": v1, "challenger": v3}
    history = reg.history("cu")
    assert [e["seq"] for e in history] == list(range(1, 10))
    assert [(e["action"], e.get("alias"), e["version"]) for e in history[3:]] == [
        ("promote", "champion", v1),
        ("promote", "champion", v2),
        ("promote", "challenger", v3),
        ("promote", "champion", v3),
        ("rollback", "champion", v2),
        ("rollback", "champion", v1),
    ]
    stored = json.loads((tmp_path / "store" / "models" / "cu" / ALIASES_FILE).read_text())
    assert stored["revision"] == 9
    assert {v.version: v.aliases for v in reg.list("cu")} == {v1: ("champion",), v2: (), v3: ("challenger",)}


def test_rollback_to_corrupt_version_is_refused(reg, tmp_path):
    v1, v2 = (reg.register("cu", stage_model_dir(tmp_path, t), TOY_MANIFEST) for t in "ab")
    reg.promote("cu", v1)
    reg.promote("cu", v2)
    (tmp_path / "store" / "models" / "cu" / v1 / "weights.pt").write_bytes(b"")
    with pytest.raises(CorruptModelError, match=v1):
        reg.rollback("cu")
    assert reg.aliases("cu") == {"champion": v2}


def test_unknown_references_and_bad_aliases(reg, tmp_path):
    v = reg.register("cu", stage_model_dir(tmp_path, "a"), TOY_MANIFEST)
    reg.promote("cu", v)
    with pytest.raises(RegistryError, match="has no version or alias 'prod' \\(aliases: champion"):
        reg.path("cu", "prod")
    with pytest.raises(RegistryError, match="looks like a version id"):
        reg.promote("cu", v, alias="0123456789abcdef")
    with pytest.raises(RegistryError, match="invalid alias 'a/b'"):
        reg.promote("cu", v, alias="a/b")
    assert reg.list("other") == [] and reg.aliases("other") == {}


def test_torn_history_line_is_dropped_on_next_write(reg, tmp_path):
    v1, v2 = (reg.register("cu", stage_model_dir(tmp_path, t), TOY_MANIFEST) for t in "ab")
    reg.promote("cu", v1)
    history = tmp_path / "store" / "models" / "cu" / HISTORY_FILE
    with open(history, "a") as fh:
        fh.write('{"seq": 99, "action": "prom')  # crash mid-append
    assert len(reg.history("cu")) == 3
    reg.promote("cu", v2)
    lines = history.read_text().splitlines()
    assert len(lines) == 4 and json.loads(lines[-1])["seq"] == 4
    history.write_text(history.read_text() + "garbage\n" + lines[-1] + "\n")
    with pytest.raises(RegistryError, match=f"{HISTORY_FILE}, line 5: not a JSON event"):
        reg.history("cu")


def _promote_many(root: str, alias: str, versions: list[str], n: int, barrier) -> None:
    reg = ModelRegistry(root)
    barrier.wait()
    for i in range(n):
        reg.promote("cu", versions[i % 2], alias=alias)


def test_concurrent_promotes_lose_no_update(reg, tmp_path):
    v1, v2 = (reg.register("cu", stage_model_dir(tmp_path, t), TOY_MANIFEST) for t in "ab")
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    n = 40
    procs = [
        ctx.Process(target=_promote_many, args=(str(reg.root), "champion", [v1, v2], n, barrier)),
        ctx.Process(target=_promote_many, args=(str(reg.root), "challenger", [v2, v1], n, barrier)),
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    history = reg.history("cu")
    promotes = [e for e in history if e["action"] == "promote"]
    assert len(promotes) == 2 * n
    assert sorted(e["seq"] for e in history) == list(range(1, 2 * n + 3))
    assert len({e["pid"] for e in promotes}) == 2
    # both processes' last updates survive: n is even, so each alias ends on its second version
    assert reg.aliases("cu") == {"champion": v2, "challenger": v1}
    stored = json.loads((reg.root / "models" / "cu" / ALIASES_FILE).read_text())
    assert stored["revision"] == 2 * n + 2


def test_registry_import_does_not_import_torch():
    code = (
        "import sys, libs_pipeline.registry; "
        "print('torch' in sys.modules, 'prefect' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
