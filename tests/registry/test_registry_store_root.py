"""The model registry on a store URL: the same tests on a local root and on an S3 root (moto server on loopback).

Registration publishes a version only with its manifest, aliases and history change under a lock on the store,
object-store versions load through a verified local cache, and no credential is ever written to the store."""

from __future__ import annotations

import hashlib
import multiprocessing
import threading
from pathlib import Path

import pytest

from libs_pipeline.registry import CorruptModelError, ModelRegistry, RegistryError
from libs_pipeline.registry.model_registry import ALIASES_FILE, MANIFEST_FILE, cache_root
from libs_pipeline.spectra.location import Location, open_location
from libs_pipeline.testing.registry_fakes import TOY_MANIFEST, stage_model_dir


@pytest.fixture(autouse=True)
def model_cache(tmp_path, monkeypatch) -> Path:
    """Every test gets its own model cache (``$LIBS_PIPELINE_CACHE``)."""
    cache = tmp_path / "model-cache"
    monkeypatch.setenv("LIBS_PIPELINE_CACHE", str(cache))
    return cache


def _staged(tmp_path: Path, tag: str) -> Path:
    base = tmp_path / f"stage-{tag}"
    base.mkdir()
    return stage_model_dir(base, tag)


def test_register_list_resolve_and_load_equal_bytes(store_root, tmp_path):
    reg = ModelRegistry(store_root)
    staged = _staged(tmp_path, "a")
    version = reg.register("cu", staged, TOY_MANIFEST)
    assert reg.names() == ["cu"] and reg.versions("cu") == [version]
    [row] = reg.list("cu")
    assert row.problem is None and row.metrics == {"rmsep": 0.5}
    reg.promote("cu", version)
    assert reg.resolve("cu", "champion") == version
    loaded = reg.path("cu", "champion")
    assert isinstance(loaded, Path) and loaded.is_dir()
    for name in ("weights.pt", "normalisation.json", "config.json", "metrics.json"):
        assert (loaded / name).read_bytes() == (staged / name).read_bytes()
    assert reg.verify("cu", version) == []
    stored = open_location(store_root) / "models" / "cu" / version
    assert stored.join("weights.pt").read_bytes() == (staged / "weights.pt").read_bytes()
    assert reg.version_url("cu", "champion") == stored.url
    if not stored.is_local:  # an object-store version is loaded from the local cache, never a folder named like the URL
        assert loaded == reg.cache_dir("cu", version) and cache_root() in loaded.parents
        assert not Path("s3:").exists()
    # registering the same files again is a no-op
    assert reg.register("cu", staged, TOY_MANIFEST) == version
    assert [e["action"] for e in reg.history("cu")] == ["register", "promote"]


def _fail_on_write(monkeypatch, nth: int) -> list[str]:
    """Make the ``nth`` whole-object write fail (as a crash or a lost connection would); returns the URLs written."""
    written: list[str] = []
    original = Location.write_bytes

    def flaky(self, data):
        written.append(self.url)
        if len(written) == nth:
            raise OSError(f"simulated interruption writing {self.url}")
        return original(self, data)

    monkeypatch.setattr(Location, "write_bytes", flaky)
    return written


def test_interrupted_registration_is_invisible_and_a_retry_succeeds(store_root, tmp_path, monkeypatch):
    reg = ModelRegistry(store_root)
    staged = _staged(tmp_path, "a")
    with monkeypatch.context() as mp:
        written = _fail_on_write(mp, nth=3)
        with pytest.raises(OSError, match="simulated interruption"):
            reg.register("cu", staged, TOY_MANIFEST)
    assert len(written) == 3 and not any(url.endswith(MANIFEST_FILE) for url in written)
    assert reg.names() == [] and reg.versions("cu") == [] and reg.history("cu") == []
    version = hashlib.sha256(
        "".join(f"{p.name}\0{hashlib.sha256(p.read_bytes()).hexdigest()}\n" for p in sorted(staged.iterdir())).encode()
    ).hexdigest()[:16]
    with pytest.raises(RegistryError, match=f"has no version or alias '{version}'"):
        reg.resolve("cu", version)
    assert reg.register("cu", staged, TOY_MANIFEST) == version
    assert reg.versions("cu") == [version] and reg.verify("cu", version) == []
    assert [e["action"] for e in reg.history("cu")] == ["register"]


def test_s3_upload_interrupted_at_the_manifest_leaves_no_version(s3_root, tmp_path, monkeypatch):
    reg = ModelRegistry(s3_root)
    staged = _staged(tmp_path, "a")

    def lost(self, data):
        raise OSError(f"connection lost creating {self.url}")

    with monkeypatch.context() as mp:
        mp.setattr(Location, "create_bytes", lost)
        with pytest.raises(OSError, match="connection lost creating .*manifest.json"):
            reg.register("cu", staged, TOY_MANIFEST)
    uploaded = (open_location(s3_root) / "models" / "cu").children()
    assert len(uploaded) == 1  # the files are there, but without a manifest they are not a version
    assert reg.versions("cu") == [] and reg.names() == []
    version = reg.register("cu", staged, TOY_MANIFEST)
    assert version == uploaded[0] and reg.verify("cu", version) == []


def _promote_many(reg: ModelRegistry, alias: str, versions: list[str], n: int, barrier) -> None:
    barrier.wait()
    for i in range(n):
        reg.promote("cu", versions[i % 2], alias=alias)


def test_concurrent_promotes_from_threads_lose_no_update(store_root, tmp_path):
    reg = ModelRegistry(store_root)
    v1, v2 = (reg.register("cu", _staged(tmp_path, t), TOY_MANIFEST) for t in "ab")
    n = 6
    barrier = threading.Barrier(3)
    errors: list[BaseException] = []

    def run(alias, versions):
        try:
            _promote_many(ModelRegistry(store_root), alias, versions, n, barrier)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(alias, vs)) for alias, vs in
               (("champion", [v1, v2]), ("challenger", [v2, v1]), ("staging", [v1, v2]))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    history = reg.history("cu")
    assert [e["seq"] for e in history] == list(range(1, 3 * n + 3))
    assert sum(e["action"] == "promote" for e in history) == 3 * n
    assert reg.aliases("cu") == {"champion": v2, "challenger": v1, "staging": v2}
    stored = (open_location(store_root) / "models" / "cu" / ALIASES_FILE).read_json()
    assert stored["revision"] == 3 * n + 2


def _promote_in_process(root: str, alias: str, versions: list[str], n: int, barrier) -> None:
    _promote_many(ModelRegistry(root), alias, versions, n, barrier)


def test_concurrent_promotes_from_processes_on_s3(s3_root, tmp_path):
    reg = ModelRegistry(s3_root)
    v1, v2 = (reg.register("cu", _staged(tmp_path, t), TOY_MANIFEST) for t in "ab")
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    n = 4
    procs = [ctx.Process(target=_promote_in_process, args=(s3_root, alias, vs, n, barrier))
             for alias, vs in (("champion", [v1, v2]), ("challenger", [v2, v1]))]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    history = reg.history("cu")
    assert [e["seq"] for e in history] == list(range(1, 2 * n + 3))
    assert len({e["pid"] for e in history if e["action"] == "promote"}) == 2
    assert reg.aliases("cu") == {"champion": v2, "challenger": v1}


def test_rollback_on_the_store(store_root, tmp_path):
    reg = ModelRegistry(store_root)
    v1, v2 = (reg.register("cu", _staged(tmp_path, t), TOY_MANIFEST) for t in "ab")
    reg.promote("cu", v1)
    reg.promote("cu", v2, reason="better")
    event = reg.rollback("cu", reason="regression")
    assert (event["version"], event["previous"], event["reason"]) == (v1, v2, "regression")
    assert reg.aliases("cu") == {"champion": v1}
    assert reg.path("cu", "champion").joinpath("normalisation.json").read_text() == '{"tag": "a"}'
    with pytest.raises(RegistryError, match=f"alias 'champion' \\(now {v1}\\) has no earlier version"):
        reg.rollback("cu")


def test_verify_detects_a_corrupted_object_on_s3(s3_root, tmp_path):
    reg = ModelRegistry(s3_root)
    version = reg.register("cu", _staged(tmp_path, "a"), TOY_MANIFEST)
    reg.promote("cu", version)
    stored = open_location(s3_root) / "models" / "cu" / version
    weights = bytearray(stored.join("weights.pt").read_bytes())
    weights[7] ^= 0xFF
    stored.join("weights.pt").write_bytes(bytes(weights))  # same size, different bytes
    stored.join("extra.pkl").write_bytes(b"x")
    problems = "\n".join(reg.verify("cu", version))
    assert f"{stored.url}/weights.pt: sha256" in problems and "does not match manifest" in problems
    assert f"{stored.url}/extra.pkl: not listed in manifest" in problems
    with pytest.raises(CorruptModelError, match="corrupt and will not be served"):
        reg.path("cu", "champion")
    assert not reg.cache_dir("cu", version).exists()  # a corrupt download is never cached
    with pytest.raises(CorruptModelError):
        reg.promote("cu", version, alias="challenger")
    stored.join("weights.pt").remove()
    assert f"{stored.url}/weights.pt: missing" in "\n".join(reg.verify("cu", version))


def test_second_load_from_s3_uses_the_cache(s3_root, tmp_path, monkeypatch):
    reg = ModelRegistry(s3_root)
    version = reg.register("cu", _staged(tmp_path, "a"), TOY_MANIFEST)
    downloads: list[str] = []
    original = Location.get_directory

    def counting(self, local_dir):
        downloads.append(self.url)
        return original(self, local_dir)

    monkeypatch.setattr(Location, "get_directory", counting)
    first = reg.path("cu", version)
    mtimes = {p.name: p.stat().st_mtime_ns for p in first.iterdir()}
    second = ModelRegistry(s3_root).path("cu", version)
    assert second == first and len(downloads) == 1
    assert {p.name: p.stat().st_mtime_ns for p in second.iterdir()} == mtimes
    assert set(mtimes) == {"weights.pt", "normalisation.json", "config.json", "metrics.json", MANIFEST_FILE}
    (first / "weights.pt").write_bytes(b"damaged")  # a damaged cache copy is fetched again
    third = reg.path("cu", version)
    assert len(downloads) == 2 and reg.verify("cu", version) == []
    assert (third / "weights.pt").read_bytes() == (open_location(s3_root) / "models" / "cu" / version
                                                   / "weights.pt").read_bytes()


def test_credentials_are_never_written_to_the_store(s3, s3_root, tmp_path):
    key, secret = "AKIAREGISTRYTESTKEY", "registry-test-secret-value"
    reg = ModelRegistry(s3_root, storage_options={"key": key, "secret": secret}, flow_run_id="run-1")
    v1, v2 = (reg.register("cu", _staged(tmp_path, t), TOY_MANIFEST) for t in "ab")
    reg.promote("cu", v1)
    reg.promote("cu", v2)
    reg.rollback("cu")
    bucket = open_location(s3_root).path.split("/", 1)[0]
    root = open_location(f"s3://{bucket}")
    objects = root.fs.find(bucket)
    assert any(o.endswith("history.jsonl") for o in objects) and any(o.endswith(MANIFEST_FILE) for o in objects)
    for obj in objects:
        data = root.fs.cat_file(obj)
        assert key.encode() not in data and secret.encode() not in data, obj
    assert reg.manifest("cu", v1)["prefect_flow_run_id"] == "run-1"
