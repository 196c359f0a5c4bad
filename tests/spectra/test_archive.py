"""Raw archive under a store root URL (local and S3): byte-for-byte, content-addressed, write-once; directories
as deterministic tars."""

from __future__ import annotations

import hashlib
import io
import tarfile

import pytest

from libs_pipeline.spectra.archive import RawArchive, source_sha256, source_size
from libs_pipeline.spectra.location import open_location


def test_file_is_archived_byte_for_byte(tmp_path, store_root):
    src = tmp_path / "a.txt"
    data = b"300.0,1\r\n301.0,2"
    src.write_bytes(data)
    archive = RawArchive(store_root)
    sha = archive.put(src)
    assert sha == hashlib.sha256(data).hexdigest() == source_sha256(src)
    assert archive.path(sha).url == f"{open_location(store_root).url}/raw/{sha}"
    assert archive.path(sha).read_bytes() == data and sha in archive and archive.verify(sha)
    assert archive.put(src) == sha  # idempotent
    assert archive.dir.children() == [sha]
    assert archive.restore(sha, tmp_path / "back.txt").read_bytes() == data


def test_archived_bytes_are_never_replaced(tmp_path, store_root):
    archive = RawArchive(store_root)
    src = tmp_path / "a.txt"
    src.write_bytes(b"original")
    sha = archive.put(src)
    archive.path(sha).remove()
    archive.path(sha).create_bytes(b"tampered")  # someone broke the archive object
    assert not archive.verify(sha)
    assert archive.put(src) == sha and archive.path(sha).read_bytes() == b"tampered"  # write-once: not overwritten


def test_changed_bytes_are_detected(tmp_path, store_root):
    src = tmp_path / "a.txt"
    src.write_bytes(b"one")
    archive = RawArchive(store_root)
    with pytest.raises(ValueError, match="content changed"):
        archive.put(src, expected_sha256=hashlib.sha256(b"two").hexdigest())
    assert archive.dir.children() == []


def test_directory_digest_depends_on_content_only(tmp_path, store_root):
    for name in ("d1", "d2"):
        d = tmp_path / name / "x.zarr"
        (d / "sub").mkdir(parents=True)
        (d / "zarr.json").write_text("{}")
        (d / "sub" / "c0").write_bytes(b"\x00\x01")
    assert source_sha256(tmp_path / "d1" / "x.zarr") == source_sha256(tmp_path / "d2" / "x.zarr")
    assert source_size(tmp_path / "d1" / "x.zarr") == 4
    archive = RawArchive(store_root)
    sha = archive.put(tmp_path / "d1" / "x.zarr")
    assert sha == source_sha256(tmp_path / "d1" / "x.zarr") and archive.verify(sha)
    with tarfile.open(fileobj=io.BytesIO(archive.path(sha).read_bytes())) as tar:
        assert tar.getnames() == ["sub", "sub/c0", "zarr.json"]
        assert tar.extractfile("sub/c0").read() == b"\x00\x01"
    (tmp_path / "d2" / "x.zarr" / "sub" / "c0").write_bytes(b"\x00\x02")
    assert source_sha256(tmp_path / "d2" / "x.zarr") != sha


def test_archive_rejects_bad_digests(tmp_path):
    with pytest.raises(ValueError, match="not a sha256"):
        RawArchive(tmp_path).path("../../etc/passwd")
