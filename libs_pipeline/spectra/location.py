"""Store roots are URLs: one ``Location`` type for local folders, ``file://``, ``s3://`` and whatever fsspec opens.

Every store (spectra, synthetic, raw archive, quarantine, registry, reports) reads and writes through a
``Location`` so nothing depends on a POSIX folder and nothing silently lands on the local disk:

- ``open_location(url)`` parses the root: a plain path or ``file://`` is local; any other scheme goes to
  fsspec. An unknown scheme or a missing optional dependency (``s3fs`` for ``s3://``) raises
  ``StoreURLError``; an object store that cannot be reached raises ``StoreUnreachableError`` before anything
  is written.
- Commit rule on every backend: an object is written whole (local: temp + ``os.replace``; object stores: one
  PUT, which S3 makes visible atomically), and a dataset version becomes visible only when its manifest, the
  last object written, exists.
- ``create_bytes`` writes an object only if it does not exist (local: ``os.link`` of a temp file; S3:
  ``If-None-Match: *``); ``lock()`` is an exclusive lock that works on the store (local: ``filelock``; object
  stores: a lease object created with a conditional write, taken over by compare-and-swap on its ETag when
  its holder died), so pointer files (``LATEST``, model aliases) change safely under concurrent writers.
- Credentials come from the usual places (environment, AWS profile, ``FSSPEC_S3_*`` variables, or
  ``storage_options``) and never from the URL text kept in manifests: ``Location.url`` has any
  ``user:password@`` part removed.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import shutil
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import fsspec

from libs_pipeline.spectra.atomic import atomic_write_bytes, write_temporary
from libs_pipeline.spectra.file_lock import LockTimeoutError, exclusive_lock

LOCAL_SCHEMES = ("", "file", "local")
S3_PROBE_CONFIG = {"connect_timeout": 5, "read_timeout": 30, "retries": {"max_attempts": 3, "mode": "standard"}}
LEASE_S = 60.0  # an object-store lock older than this belongs to a dead holder (holds are a pointer update: milliseconds)


class StoreURLError(ValueError):
    """A store root that cannot name a store: unknown scheme, missing dependency, malformed URL."""


class StoreUnreachableError(OSError):
    """The object store behind a root URL cannot be reached (endpoint, credentials or bucket)."""


def redact(url: str) -> str:
    """``url`` without a ``user:password@`` part (what manifests, logs and artifacts may show)."""
    parts = urlsplit(str(url))
    if not parts.scheme or "@" not in parts.netloc:
        return str(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def scheme_of(url: str | Path) -> str:
    """The URL scheme (``""`` for a plain path; a Windows drive letter is not a scheme)."""
    text = str(url)
    if "://" not in text:
        return ""
    return text.split("://", 1)[0].lower()


def is_local_url(url: str | Path) -> bool:
    return scheme_of(url) in LOCAL_SCHEMES


def _default_options(scheme: str) -> dict[str, Any]:
    if scheme in ("s3", "s3a"):
        return {"config_kwargs": dict(S3_PROBE_CONFIG)}
    return {}


def _filesystem(scheme: str, options: Mapping[str, Any]) -> fsspec.AbstractFileSystem:
    try:
        cls = fsspec.get_filesystem_class(scheme)
    except ValueError:
        raise StoreURLError(
            f"store root scheme {scheme!r} is not known (known: {', '.join(sorted(fsspec.available_protocols())[:12])}, ...); "
            "use a local path, file://, s3:// or another fsspec protocol"
        ) from None
    except ImportError as exc:
        raise StoreURLError(f"store root scheme {scheme!r} needs a package that is not installed: {exc}") from None
    return cls(**{**_default_options(scheme), **dict(options)})


@dataclass(frozen=True)
class Location:
    """One place in a store: a filesystem and a path on it (``url`` is the credential-free text)."""

    url: str
    fs: fsspec.AbstractFileSystem = field(repr=False, compare=False)
    path: str
    storage_options: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    # --- naming --------------------------------------------------------------------------------------------
    @property
    def is_local(self) -> bool:
        return is_local_url(self.url)

    @property
    def local_path(self) -> Path:
        """The local folder or file (only for local locations)."""
        if not self.is_local:
            raise StoreURLError(f"{self.url} is not on the local disk")
        return Path(self.path)

    @property
    def name(self) -> str:
        return posixpath.basename(self.path.rstrip("/"))

    @property
    def parent(self) -> Location:
        parent_path = posixpath.dirname(self.path.rstrip("/"))
        parent_url = self.url.rstrip("/").rsplit("/", 1)[0] if not self.is_local else parent_path
        return Location(parent_url, self.fs, parent_path, self.storage_options)

    def join(self, *parts: str) -> Location:
        clean = [str(p).strip("/") for p in parts if str(p).strip("/")]
        if not clean:
            return self
        return Location(
            "/".join([self.url.rstrip("/"), *clean]), self.fs, "/".join([self.path.rstrip("/"), *clean]),
            self.storage_options,
        )

    def __truediv__(self, part: str) -> Location:
        return self.join(part)

    def __str__(self) -> str:
        return self.url

    # --- reading -------------------------------------------------------------------------------------------
    def _fresh(self) -> None:
        if not self.is_local:
            self.fs.invalidate_cache(self.path)

    def exists(self) -> bool:
        self._fresh()
        return bool(self.fs.exists(self.path))

    def is_file(self) -> bool:
        self._fresh()
        return bool(self.fs.isfile(self.path))

    def is_dir(self) -> bool:
        self._fresh()
        return bool(self.fs.isdir(self.path))

    def read_bytes(self) -> bytes:
        try:
            return self.fs.cat_file(self.path)
        except FileNotFoundError:
            raise FileNotFoundError(f"{self.url}: no such file") from None

    def read_text(self) -> str:
        return self.read_bytes().decode("utf-8")

    def read_json(self) -> Any:
        return json.loads(self.read_text())

    def etag(self) -> str | None:
        """The object's ETag (object stores) or None (local files, or no such object)."""
        if self.is_local:
            return None
        try:
            return self.fs.info(self.path, refresh=True).get("ETag")
        except FileNotFoundError:
            return None

    def children(self) -> list[str]:
        """Names directly under this folder (files and folders), sorted; [] if it does not exist."""
        self._fresh()
        try:
            entries = self.fs.ls(self.path, detail=False)
        except FileNotFoundError:
            return []
        base = self.path.rstrip("/")
        return sorted({posixpath.basename(str(e).rstrip("/")) for e in entries if str(e).rstrip("/") != base})

    # --- writing -------------------------------------------------------------------------------------------
    def write_bytes(self, data: bytes) -> None:
        """Replace the object whole: readers see the old one or the new one, never a part."""
        if self.is_local:
            atomic_write_bytes(self.path, data)
        else:
            self.fs.pipe_file(self.path, data)

    def write_text(self, text: str) -> None:
        self.write_bytes(text.encode("utf-8"))

    def write_json(self, obj: object) -> None:
        self.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")

    def create_bytes(self, data: bytes) -> bool:
        """Write the object only if it does not exist yet; False (nothing written) if it does."""
        if self.is_local:
            tmp = write_temporary(self.path, data)
            try:
                os.link(tmp, self.path)  # fails if the name exists: the exclusive create
                return True
            except FileExistsError:
                return False
            finally:
                tmp.unlink(missing_ok=True)
        try:
            self.fs.pipe_file(self.path, data, mode="create")
            return True
        except FileExistsError:
            return False
        except OSError as exc:
            if _precondition_failed(exc):
                return False
            raise

    def replace_if(self, data: bytes, etag: str) -> bool:
        """Object stores: overwrite only if the object still has ``etag`` (compare-and-swap); False if not."""
        try:
            self.fs.pipe_file(self.path, data, IfMatch=etag)
            return True
        except (FileNotFoundError, OSError) as exc:
            if isinstance(exc, FileNotFoundError) or _precondition_failed(exc):
                return False
            raise

    def remove(self, recursive: bool = True) -> None:
        """Delete the object or folder (no error if it is not there)."""
        if self.is_local:
            path = Path(self.path)
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            return
        self._fresh()
        try:
            self.fs.rm(self.path, recursive=recursive)
        except FileNotFoundError:
            pass

    def put_directory(self, local_dir: str | Path) -> None:
        """Copy a local folder's files under this location (object stores; a local target is copied too)."""
        local_dir = Path(local_dir)
        for path in sorted(p for p in local_dir.rglob("*") if p.is_file()):
            self.join(*path.relative_to(local_dir).parts).write_bytes(path.read_bytes())

    def get_directory(self, local_dir: str | Path) -> Path:
        """Copy every file under this location into ``local_dir`` (created); returns it."""
        local_dir = Path(local_dir)
        local_dir.mkdir(parents=True, exist_ok=True)
        self._fresh()
        base = self.path.rstrip("/")
        for remote in self.fs.find(base):
            rel = str(remote)[len(base):].lstrip("/")
            target = local_dir / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(self.fs.cat_file(remote))
        return local_dir

    # --- zarr ----------------------------------------------------------------------------------------------
    def zarr_store(self, read_only: bool = False):
        """A zarr 3 store rooted here (LocalStore for local folders, FsspecStore otherwise)."""
        from zarr.storage import FsspecStore, LocalStore

        if self.is_local:
            return LocalStore(self.path, read_only=read_only)
        return FsspecStore.from_url(
            self.fs.unstrip_protocol(self.path), storage_options=dict(self.storage_options), read_only=read_only
        )

    # --- locking -------------------------------------------------------------------------------------------
    @contextmanager
    def lock(
        self,
        timeout_s: float | None = 60.0,
        *,
        poll_s: float = 0.05,
        timeout_message: str | None = None,
        error: type[LockTimeoutError] = LockTimeoutError,
        lease_s: float = LEASE_S,
    ) -> Iterator[None]:
        """Hold an exclusive lock on this location (a lock file/object) for the ``with`` block."""
        if self.is_local:
            with exclusive_lock(self.path, timeout_s, poll_s=poll_s, timeout_message=timeout_message, error=error):
                yield
            return
        owner = uuid.uuid4().hex
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while not self._try_lease(owner, lease_s):
            if deadline is not None and time.monotonic() > deadline:
                raise error(timeout_message or f"{self.url}: still locked by another writer after {timeout_s:g} s")
            time.sleep(max(poll_s, 0.05))
        try:
            yield
        finally:
            try:
                if json.loads(self.read_text()).get("owner") == owner:
                    self.remove()
            except (FileNotFoundError, ValueError):
                pass

    def _try_lease(self, owner: str, lease_s: float) -> bool:
        lease = json.dumps({"owner": owner, "expires": time.time() + lease_s}).encode()
        if self.create_bytes(lease):
            return True
        etag = self.etag()
        try:
            held = json.loads(self.read_text())
        except (FileNotFoundError, ValueError):
            return False
        if etag and float(held.get("expires", 0)) < time.time():  # its holder died: take it over, once
            return self.replace_if(lease, etag)
        return False


def _precondition_failed(exc: BaseException) -> bool:
    text = f"{type(exc).__name__} {exc} {getattr(exc, '__cause__', '')}"
    return "PreconditionFailed" in text or "412" in text or "At least one of the pre-conditions" in text


def _probe(fs: fsspec.AbstractFileSystem, path: str, url: str) -> None:
    """Fail fast, with the cause, when the object store cannot be reached or the bucket does not exist."""
    bucket = path.split("/", 1)[0]
    try:
        fs.invalidate_cache(bucket)
        fs.ls(bucket, detail=False)
    except FileNotFoundError:
        raise StoreUnreachableError(
            f"store root {url}: bucket {bucket!r} does not exist (create it first; nothing was written)"
        ) from None
    except Exception as exc:  # endpoint, DNS, credentials: botocore raises many types
        raise StoreUnreachableError(
            f"store root {url}: cannot reach the object store ({type(exc).__name__}: {exc}); check the endpoint "
            "(AWS_ENDPOINT_URL_S3 / FSSPEC_S3_ENDPOINT_URL / storage_options) and the credentials; nothing was written"
        ) from None


def open_location(
    url: str | Path | Location, storage_options: Mapping[str, Any] | None = None, check: bool = True
) -> Location:
    """The ``Location`` a store root names: a local path, ``file://...``, ``s3://bucket/prefix``, ...

    ``check`` probes an object store once (bucket listing) so an unreachable endpoint fails here, clearly.
    """
    if isinstance(url, Location):
        return url
    text = str(url)
    if not text.strip():
        raise StoreURLError("store root is empty")
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]+:/?[^/]", text) and "://" not in text:  # s3:/bucket, s3:bucket
        raise StoreURLError(f"store root {redact(text)!r}: malformed URL (write scheme://bucket/path)")
    scheme = scheme_of(text)
    if scheme in LOCAL_SCHEMES:
        raw = text.split("://", 1)[1] if "://" in text else text
        if scheme and raw.startswith("//"):
            raw = raw[1:]
        path = str(Path(raw).expanduser().absolute())
        return Location(path, fsspec.filesystem("file"), path, {})
    options = dict(storage_options or {})
    fs = _filesystem(scheme, options)
    path = fs._strip_protocol(text)
    if not str(path).strip("/"):
        raise StoreURLError(f"store root {redact(text)!r}: no bucket or path after {scheme}://")
    clean = redact(text).rstrip("/")
    if check and scheme in ("s3", "s3a", "gs", "gcs", "az", "abfs"):
        _probe(fs, str(path), clean)
    return Location(clean, fs, str(path).rstrip("/"), options)


__all__ = [
    "Location",
    "StoreURLError",
    "StoreUnreachableError",
    "is_local_url",
    "open_location",
    "redact",
    "scheme_of",
]
