"""Content-addressed archive of every ingested source file: ``<root>/raw/<sha256>``, byte for byte.

The root is a store URL (local, ``file://``, ``s3://``, ...); the sources are local files being ingested.

A directory source (a .zarr) is archived as a deterministic tar of its files (sorted names, zeroed
times/owners), so its digest depends on content only.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path

from libs_pipeline.spectra.file_hash import file_sha256
from libs_pipeline.spectra.location import Location, open_location


class _HashingSink(io.RawIOBase):
    """A write-only file that hashes what is written to it (the digest of a tar without keeping it)."""

    def __init__(self):
        self.sha = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.size

    def write(self, b) -> int:
        self.sha.update(b)
        self.size += len(b)
        return len(b)


def _write_tar(directory: Path, sink) -> None:
    with tarfile.open(fileobj=sink, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(p for p in directory.rglob("*")):
            if path.is_symlink():
                raise ValueError(f"{path}: symbolic links are not archived")
            rel = path.relative_to(directory).as_posix()
            info = tar.gettarinfo(str(path), arcname=rel)
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mode = 0o755 if path.is_dir() else 0o644
            if path.is_file():
                with path.open("rb") as fh:
                    tar.addfile(info, fh)
            else:
                tar.addfile(info)


def source_size(path: str | Path) -> int:
    """Bytes of a file, or the total of the files under a directory."""
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def source_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes, or of the deterministic tar of a directory."""
    path = Path(path)
    if path.is_dir():
        sink = _HashingSink()
        _write_tar(path, sink)
        return sink.sha.hexdigest()
    return file_sha256(path)


def source_bytes(source: str | Path | Location) -> bytes:
    """The bytes that are archived for ``source``: a local file's bytes, the deterministic tar of a local
    directory, or the object a Location names (e.g. a generated manifest already in the store)."""
    if isinstance(source, Location):
        if not source.is_local:
            return source.read_bytes()
        source = source.local_path
    source = Path(source)
    if source.is_dir():
        buffer = io.BytesIO()
        _write_tar(source, buffer)
        return buffer.getvalue()
    return source.read_bytes()


class RawArchive:
    """``<root>/raw/<sha256>``: write-once copies of source files, verified against their digest.

    ``root`` is the store root URL (or Location); the archive objects are created only if absent (local: an
    exclusive link of a complete temporary file; S3: a conditional PUT), so an archived object never changes.
    """

    def __init__(self, root: str | Path | Location):
        self.dir = open_location(root) / "raw"

    def path(self, sha256: str) -> Location:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        return self.dir / sha256

    def __contains__(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def put(self, source: str | Path | Location, expected_sha256: str | None = None) -> str:
        """Archive ``source`` (file or directory); returns its sha256. Idempotent; raises if the bytes changed."""
        data = source_bytes(source)
        digest = hashlib.sha256(data).hexdigest()
        if expected_sha256 is not None and digest != expected_sha256:
            raise ValueError(f"{source}: content changed while ingesting (sha256 {digest} != {expected_sha256})")
        target = self.path(digest)
        if not target.is_file() and target.create_bytes(data) and target.is_local:
            os.chmod(target.local_path, 0o444)
        return digest

    def verify(self, sha256: str) -> bool:
        """True when the archived bytes still hash to their name."""
        target = self.path(sha256)
        return target.is_file() and hashlib.sha256(target.read_bytes()).hexdigest() == sha256

    def restore(self, sha256: str, destination: str | Path) -> Path:
        """Copy archived bytes to the local file ``destination`` (a tar for directory sources)."""
        destination = Path(destination)
        destination.write_bytes(self.path(sha256).read_bytes())
        return destination
