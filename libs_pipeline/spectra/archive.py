"""Content-addressed archive of every ingested source file: ``<root>/raw/<sha256>``, byte for byte.

A directory source (a .zarr) is archived as a deterministic tar of its files (sorted names, zeroed
times/owners), so its digest depends on content only.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tarfile
from pathlib import Path

from libs_pipeline.spectra.atomic import temporary_sibling
from libs_pipeline.spectra.file_hash import file_sha256

_BLOCK = 1 << 20


class _HashingSink(io.RawIOBase):
    """A write-only file that hashes (and optionally forwards) what is written to it."""

    def __init__(self, forward=None):
        self.sha = hashlib.sha256()
        self.size = 0
        self.forward = forward

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.size

    def write(self, b) -> int:
        self.sha.update(b)
        self.size += len(b)
        if self.forward is not None:
            self.forward.write(b)
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


class RawArchive:
    """``<root>/raw/<sha256>``: write-once copies of source files, verified against their digest."""

    def __init__(self, root: str | Path):
        self.dir = Path(root) / "raw"

    def path(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        return self.dir / sha256

    def __contains__(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def put(self, source: str | Path, expected_sha256: str | None = None) -> str:
        """Archive ``source`` (file or directory); returns its sha256. Idempotent; raises if the bytes changed."""
        source = Path(source)
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = temporary_sibling(self.dir / "incoming")
        try:
            with tmp.open("wb") as out:
                sink = _HashingSink(forward=out)
                if source.is_dir():
                    _write_tar(source, sink)
                else:
                    with source.open("rb") as fh:
                        for block in iter(lambda: fh.read(_BLOCK), b""):
                            sink.write(block)
                out.flush()
                os.fsync(out.fileno())
            digest = sink.sha.hexdigest()
            if expected_sha256 is not None and digest != expected_sha256:
                raise ValueError(f"{source}: content changed while ingesting (sha256 {digest} != {expected_sha256})")
            final = self.path(digest)
            if final.exists():
                tmp.unlink()
            else:
                os.replace(tmp, final)
                os.chmod(final, 0o444)
            return digest
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def verify(self, sha256: str) -> bool:
        """True when the archived bytes still hash to their name."""
        path = self.path(sha256)
        return path.is_file() and source_sha256(path) == sha256

    def restore(self, sha256: str, destination: str | Path) -> Path:
        """Copy archived bytes to ``destination`` (a tar for directory sources)."""
        destination = Path(destination)
        shutil.copyfile(self.path(sha256), destination)
        return destination
