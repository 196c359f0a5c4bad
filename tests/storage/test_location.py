"""Location: the one way stores reach local folders and object stores (checked on a local root and on S3)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import xarray as xr

from libs_pipeline.spectra.file_lock import LockTimeoutError
from libs_pipeline.spectra.location import StoreUnreachableError, StoreURLError, open_location, redact


def test_whole_object_writes_and_listing(store_root):
    root = open_location(store_root)
    f = root / "spectra" / "x" / "LATEST"
    assert not f.exists()
    f.write_text("abc\n")
    assert f.read_text() == "abc\n" and f.is_file()
    assert root.children() == ["spectra"] and (root / "spectra" / "x").children() == ["LATEST"]
    f.write_text("def\n")
    assert f.read_text() == "def\n"
    (root / "spectra").remove()
    assert not f.exists() and root.children() == []


def test_create_only_if_absent(store_root):
    f = open_location(store_root) / "once"
    assert f.create_bytes(b"first") is True
    assert f.create_bytes(b"second") is False
    assert f.read_bytes() == b"first"


def test_compare_and_swap_on_s3(s3_root):
    f = open_location(s3_root) / "pointer"
    f.write_text("v1")
    tag = f.etag()
    assert f.replace_if(b"v2", tag) is True
    assert f.replace_if(b"v3", tag) is False  # someone changed it since we read it
    assert f.read_text() == "v2"


def test_lock_excludes_a_second_holder_and_is_released(store_root):
    lock = open_location(store_root) / ".lock"
    held = []
    with lock.lock(timeout_s=5):
        with pytest.raises(LockTimeoutError, match="still locked"):
            with lock.lock(timeout_s=0.3):
                pass
        t = threading.Thread(target=lambda: held.append(_hold(lock)))
        t.start()
        time.sleep(0.3)
        assert held == []  # the other thread waits
    t.join(10)
    assert held == ["got it"]


def _hold(lock) -> str:
    with lock.lock(timeout_s=10):
        return "got it"


def test_stale_object_store_lock_is_taken_over(s3_root):
    lock = open_location(s3_root) / ".lock"
    lock.write_text('{"owner": "dead", "expires": 0}')  # a holder that died without releasing
    with lock.lock(timeout_s=2):
        assert "dead" not in lock.read_text()
    assert not lock.exists()


def test_zarr_round_trip(store_root):
    loc = open_location(store_root) / "d.zarr"
    xr.Dataset({"a": ("x", np.arange(5))}).to_zarr(loc.zarr_store(), zarr_format=3, consolidated=False)
    back = xr.open_zarr(loc.zarr_store(read_only=True), consolidated=False)
    assert back["a"].values.tolist() == [0, 1, 2, 3, 4]


def test_directory_upload_and_download(store_root, tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("A")
    (src / "sub" / "b.bin").write_bytes(b"\x00\x01")
    remote = open_location(store_root) / "models" / "m1"
    remote.put_directory(src)
    got = remote.get_directory(tmp_path / "dst")
    assert (got / "a.txt").read_text() == "A" and (got / "sub" / "b.bin").read_bytes() == b"\x00\x01"


def test_unknown_scheme_and_malformed_urls_fail_clearly():
    with pytest.raises(StoreURLError, match="scheme 'nosuch' is not known"):
        open_location("nosuch://bucket/x")
    with pytest.raises(StoreURLError, match="malformed"):
        open_location("s3:/bucket/x")
    with pytest.raises(StoreURLError, match="no bucket"):
        open_location("s3://")


def test_unreachable_endpoint_fails_before_writing(monkeypatch, tmp_path):
    from libs_pipeline.testing.services import free_port

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with pytest.raises(StoreUnreachableError, match="cannot reach the object store"):
        open_location("s3://unreachable-bucket/store", storage_options={"skip_instance_cache": True})
    assert list(tmp_path.iterdir()) == []


def test_missing_bucket_is_named(s3):
    with pytest.raises(StoreUnreachableError, match="bucket 'no-such-bucket' does not exist"):
        open_location("s3://no-such-bucket/store")


def test_credentials_never_kept_in_the_url():
    assert redact("s3://KEY:SECRET@bucket/store") == "s3://bucket/store"
    assert redact("/plain/path") == "/plain/path"


def test_local_roots_are_absolute_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert open_location("rel/store").url == str(tmp_path / "rel" / "store")
    assert open_location(f"file://{tmp_path}/x").local_path == tmp_path / "x"
