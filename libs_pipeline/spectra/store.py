"""Versioned spectra store: ``<root>/spectra/<name>/<version>.zarr`` (immutable, version = content hash).

The root is a URL (local path, ``file://``, ``s3://bucket/prefix``, any fsspec protocol); all I/O goes through
``Location``. A version is committed by writing ``<version>.manifest.json`` beside its zarr, LAST: a version
without a manifest does not exist (``versions()``/``open()`` ignore it, a rerun overwrites the partial zarr,
which is content-addressed, so always the same bytes). ``LATEST`` names the current version and is moved under
the dataset lock, which works on the store (lock file locally, lease object on S3). URIs: a ``.zarr`` URL, a
local ``.nc``, or ``<root-url>#<name>@<version>`` (``@LATEST`` or no ``@`` = latest).
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from libs_pipeline.spectra.dataset import SCHEMA_VERSION
from libs_pipeline.spectra.file_lock import LockTimeoutError
from libs_pipeline.spectra.location import Location, open_location, redact
from libs_pipeline.spectra.schemas import (
    is_safe_id,
    sample_table_schema,
    validate_spectra,
    validate_table,
)

LATEST = "LATEST"
LOCK_NAME = ".lock"
MANIFEST_SUFFIX = ".manifest.json"
VERSION_LENGTH = 16
ANY_PARENT = object()
"""``write_version(expected_parent=ANY_PARENT)``: commit on top of whatever LATEST is."""
_CORE_MANIFEST_KEYS = (
    "name", "version", "created", "schema_version", "reader", "sources", "counts", "zarr", "parent", "wavelength_nm",
)


class VersionNotFoundError(KeyError):
    """The dataset name or version does not exist in the store."""


class DatasetLockedError(LockTimeoutError):
    """Another process held the dataset's lock for longer than the timeout."""


class ParentMovedError(RuntimeError):
    """LATEST moved (another writer committed) after the version being written was built on it."""


def _string_values(values: np.ndarray) -> list[str]:
    return [str(v) for v in np.asarray(values).tolist()]


def content_hash(ds: xr.Dataset, chunk: int = 1024) -> str:
    """Version id: first 16 hex of sha256 over the data (grid, ids, intensity, every per-spectrum var + units)."""
    sha = hashlib.sha256()

    def add(tag: str, arr: np.ndarray) -> None:
        arr = np.ascontiguousarray(arr)
        sha.update(f"{tag}|{arr.dtype.str}|{arr.shape}|".encode())
        sha.update(arr.tobytes())

    def add_strings(tag: str, values: np.ndarray) -> None:
        sha.update(f"{tag}|str|{len(values)}|".encode())
        for s in _string_values(values):
            b = s.encode("utf-8")
            sha.update(len(b).to_bytes(8, "little") + b)

    sha.update(f"schema_version={ds.attrs.get('schema_version', SCHEMA_VERSION)}|".encode())
    add("wavelength", np.asarray(ds["wavelength"].values, dtype=np.float64))
    add("spectrum", np.asarray(ds["spectrum"].values, dtype=np.int64))
    n = ds.sizes["spectrum"]
    sha.update(f"intensity|<f4|{(n, ds.sizes['wavelength'])}|".encode())
    for start in range(0, n, chunk):
        block = np.asarray(ds["intensity"].isel(spectrum=slice(start, start + chunk)).values, dtype=np.float32)
        sha.update(np.ascontiguousarray(block).tobytes())
    for name in sorted(str(k) for k in ds.data_vars if k != "intensity"):
        var = ds[name]
        sha.update(f"attrs:{name}:{json.dumps(var.attrs, sort_keys=True, default=str)}|".encode())
        values = np.asarray(var.values)
        if values.dtype.kind in "UOT":
            add_strings(name, values)
        else:
            add(name, values)
    return sha.hexdigest()[:VERSION_LENGTH]


def _with_str_vars(ds: xr.Dataset) -> xr.Dataset:
    """Per-spectrum string variables as plain numpy ``<U`` arrays (zarr returns variable-length strings)."""
    for name, var in list(ds.data_vars.items()):
        if var.dtype.kind in "OT" or type(var.dtype).__name__ == "StringDType":
            ds[name] = (var.dims, np.asarray(_string_values(var.values), dtype=str), var.attrs)
    return ds


def _write_zarr(ds: xr.Dataset, target: Location, chunk_spectra: int) -> None:
    """Write ``ds`` as zarr 3 at ``target`` (strings variable-length UTF-8, intensity chunked along spectrum,
    consolidated).

    The store is encoded in memory, then every object is written whole through the Location, chunks before
    metadata. Nothing is ever deleted: a partial write of the same content (a crash, or a concurrent writer of
    the same version) is overwritten object by object with identical bytes, so a committed version never has
    a missing chunk (zarr's own ``mode="w"`` would first delete everything under the prefix).
    """
    from zarr.storage import MemoryStore

    out = ds.load().copy()
    for var in out.variables.values():
        var.encoding = {}
    for name, var in list(out.data_vars.items()):
        if var.dtype.kind == "U":
            out[name] = var.astype(object)
    n, m = out.sizes["spectrum"], out.sizes["wavelength"]
    encoding = {"intensity": {"chunks": (max(1, min(chunk_spectra, n)), m)}}
    objects: dict = {}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
        out.to_zarr(MemoryStore(store_dict=objects), zarr_format=3, mode="w-", consolidated=True, encoding=encoding)
    for key in sorted(objects, key=lambda k: (posixpath.basename(k) == "zarr.json", k.count("/") * -1, k)):
        (target / key).write_bytes(objects[key].to_bytes())


def open_zarr_spectra(path: str | Path | Location) -> xr.Dataset:
    """Open a spectra .zarr (a path, URL or Location) lazily (intensity as dask), string variables as ``<U``."""
    location = path if isinstance(path, Location) else open_location(path)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Failed to open Zarr store with consolidated metadata")
        ds = xr.open_zarr(location.zarr_store(read_only=True), consolidated=None)
    return _with_str_vars(ds)


NETCDF_SUFFIXES = (".nc", ".nc4", ".h5")


def open_spectra(uri_or_path: str | Path) -> xr.Dataset:
    """Open spectra lazily from a ``.zarr`` (local path, ``file://`` or any store URL such as ``s3://.../x.zarr``),
    a local ``.nc``, or a store URI ``<root-url>#<name>@<version>``.

    Raises FileNotFoundError for a missing path and ValueError (naming the URI) for anything that is not
    a dataset in the canonical layout.
    """
    text = str(uri_or_path)
    if "#" in text:
        root, _, ref = text.partition("#")
        name, _, version = ref.partition("@")
        ds = SpectraStore(root).open(name, version or LATEST)
    else:
        location = open_location(text)
        suffix = posixpath.splitext(location.name)[1].lower()
        is_zarr = suffix == ".zarr" or (location / "zarr.json").exists()
        if not is_zarr and suffix not in NETCDF_SUFFIXES:
            raise ValueError(f"cannot open spectra from {location.url!r}: expected a .zarr, a .nc or "
                             "'<root>#<name>@<version>'")
        if not is_zarr and not location.is_local:
            raise ValueError(f"cannot open spectra from {location.url!r}: netCDF files are read from the local disk "
                             "only; store spectra on object storage as .zarr")
        if not location.exists():
            raise FileNotFoundError(f"spectra {location.url!r}: no such file or directory")
        try:
            ds = open_zarr_spectra(location) if is_zarr else _with_str_vars(xr.open_dataset(location.local_path))
        except Exception as exc:
            raise ValueError(f"cannot open spectra from {location.url!r}: {exc}") from exc
    for var in ("intensity", "sample_id"):
        if var not in ds:
            raise ValueError(f"spectra {redact(text)!r}: no variable {var!r} (not in the canonical spectra layout)")
    return ds


class SpectraStore:
    """Immutable, content-addressed versions of named spectra datasets under ``<root>/spectra/``.

    ``root``: a store root URL (local path, ``file://``, ``s3://bucket/prefix``, ...) or a Location;
    ``storage_options`` go to fsspec (credentials otherwise come from the environment or a profile).
    """

    def __init__(self, root: str | Path | Location, storage_options: Mapping[str, Any] | None = None):
        self.root = open_location(root, storage_options)

    # --- locations ---------------------------------------------------------------------------------------
    def _dir(self, name: str) -> Location:
        if not is_safe_id(name):
            raise ValueError(f"dataset name {name!r} is not a safe id (letters, digits, . _ + -; no '/', no '..')")
        return self.root / "spectra" / name

    def _manifest_location(self, name: str, version: str) -> Location:
        return self._dir(name) / f"{version}{MANIFEST_SUFFIX}"

    def _resolve(self, name: str, version: str) -> str:
        if version == LATEST:
            latest = self.latest(name)
            if latest is None:
                raise VersionNotFoundError(f"dataset {name!r} has no versions in {self.root.url}")
            return latest
        if not (len(version) == VERSION_LENGTH and all(c in "0123456789abcdef" for c in version)):
            raise VersionNotFoundError(f"{version!r} is not a version id (16 hex digits) or 'LATEST'")
        if not self._manifest_location(name, version).is_file():
            raise VersionNotFoundError(f"dataset {name!r} has no version {version!r} in {self.root.url}")
        return version

    def location(self, name: str, version: str = LATEST) -> Location:
        """The version's .zarr as a Location (resolved; VersionNotFoundError if it does not exist)."""
        return self._dir(name) / f"{self._resolve(name, version)}.zarr"

    def uri(self, name: str, version: str = LATEST) -> str:
        """URL of the version's .zarr (what ``open_spectra`` accepts): a local path or e.g. ``s3://b/s/spectra/x/v.zarr``."""
        return self.location(name, version).url

    def ref(self, name: str, version: str = LATEST) -> str:
        """Store URI ``<root-url>#<name>@<version>`` with the version resolved."""
        return f"{self.root.url}#{name}@{self._resolve(name, version)}"

    # --- reading -----------------------------------------------------------------------------------------
    def names(self) -> list[str]:
        """Datasets with at least one complete version."""
        return [n for n in (self.root / "spectra").children() if is_safe_id(n) and self.versions(n)]

    def latest(self, name: str) -> str | None:
        try:
            version = (self._dir(name) / LATEST).read_text().strip()
        except FileNotFoundError:
            return None
        return version or None

    def versions(self, name: str) -> list[str]:
        """Complete versions (manifest present, zarr beside it), oldest first."""
        d = self._dir(name)
        found = []
        for child in d.children():
            if not child.endswith(MANIFEST_SUFFIX):
                continue
            version = child.removesuffix(MANIFEST_SUFFIX)
            if (d / f"{version}.zarr").is_dir():
                found.append(((d / child).read_json().get("created", ""), version))
        return [v for _, v in sorted(found)]

    def manifest(self, name: str, version: str = LATEST) -> dict:
        return self._manifest_location(name, self._resolve(name, version)).read_json()

    def open(self, name: str, version: str = LATEST) -> xr.Dataset:
        """The version's dataset, lazily (intensity as dask chunks along spectrum)."""
        return open_zarr_spectra(self.location(name, version))

    def samples(self, name: str, version: str = LATEST) -> pd.DataFrame:
        """The version's per-sample table (sample_id, file, matrix, n_spectra, ``<El>_<unit>`` labels)."""
        records = self.manifest(name, version).get("samples", [])
        df = pd.DataFrame.from_records(records)
        first = [c for c in ("sample_id", "file", "matrix", "n_spectra") if c in df.columns]
        return df[first + sorted(c for c in df.columns if c not in first)]

    # --- writing -----------------------------------------------------------------------------------------
    @contextmanager
    def lock(self, name: str, timeout_s: float | None = None) -> Iterator[None]:
        """Exclusive lock on one dataset name, on the store itself (a lock file locally, a lease object on S3).

        ``write_version`` holds it for read LATEST -> write manifest -> move LATEST. ``timeout_s``: give up after
        that many seconds with DatasetLockedError (None = wait forever).
        """
        lock = self._dir(name) / LOCK_NAME
        waited = "" if timeout_s is None else f"{timeout_s:g}"  # the message is only shown after a timeout
        message = (f"dataset '{name}' in {self.root.url} is locked by another ingest; gave up after {waited} s "
                   f"(lock {lock.url}; raise lock_timeout_s to wait longer)")
        with lock.lock(timeout_s, timeout_message=message, error=DatasetLockedError):
            yield

    def write_version(
        self,
        name: str,
        ds: xr.Dataset,
        sources: list[dict],
        reader: str,
        extra: dict | None = None,
        chunk_spectra: int = 256,
        expected_parent: str | None | object = ANY_PARENT,
        lock_timeout_s: float | None = None,
    ) -> str:
        """Write ``ds`` as a new immutable version and move LATEST to it; same content -> existing version.

        The dataset must pass the spectra schema; ``extra`` keys are added to the manifest (``samples``:
        the per-sample table as records, validated). The data is written first, without the lock (an earlier
        partial write of the same content is overwritten: same bytes); then, under the dataset lock, the
        manifest (last: a version without it does not exist) and LATEST. An existing identical version writes
        no data; LATEST is moved to it if it was not already there. ``expected_parent``: the LATEST that ``ds``
        was built on; ParentMovedError (nothing committed) if another writer moved LATEST meanwhile. The written
        dataset carries attrs ``name`` and ``version`` (attrs are not part of the content hash).
        """
        d = self._dir(name)
        failures = validate_spectra(ds, dark_tolerance=float("inf"))
        if failures:
            raise ValueError(f"dataset {name!r} is not in the canonical layout: " + "; ".join(f.reason for f in failures[:5]))
        extra = dict(extra or {})
        clash = set(extra) & set(_CORE_MANIFEST_KEYS)
        if clash:
            raise ValueError(f"extra manifest keys {sorted(clash)} would overwrite core keys")
        if "samples" in extra:
            table = pd.DataFrame.from_records(extra["samples"])
            problems = validate_table(table, sample_table_schema())
            if problems:
                raise ValueError("sample table invalid: " + "; ".join(p.reason for p in problems[:5]))
        version = content_hash(ds)
        zarr_location = d / f"{version}.zarr"
        manifest_location = self._manifest_location(name, version)
        self._check_parent(name, expected_parent, self.latest(name))  # fail before writing data when already stale
        if not manifest_location.is_file():
            _write_zarr(ds.assign_attrs(name=name, version=version), zarr_location, chunk_spectra)
        with self.lock(name, lock_timeout_s):
            parent = self.latest(name)
            self._check_parent(name, expected_parent, parent)
            if not manifest_location.is_file():
                _write_manifest(manifest_location, {
                    "name": name,
                    "version": version,
                    "created": datetime.now(timezone.utc).isoformat(timespec="microseconds"),
                    "schema_version": str(ds.attrs.get("schema_version", SCHEMA_VERSION)),
                    "reader": reader,
                    "zarr": zarr_location.name,
                    "parent": parent,
                    "sources": sources,
                    "counts": {
                        "n_spectra": int(ds.sizes["spectrum"]),
                        "n_samples": len(set(_string_values(ds["sample_id"].values))),
                        "n_channels": int(ds.sizes["wavelength"]),
                        "n_sources": len(sources),
                    },
                    "wavelength_nm": {
                        "min": float(ds["wavelength"].values[0]),
                        "max": float(ds["wavelength"].values[-1]),
                    },
                    **extra,
                })
            if parent != version:
                (d / LATEST).write_text(version + "\n")
        return version

    def _check_parent(self, name: str, expected: str | None | object, latest: str | None) -> None:
        if expected is not ANY_PARENT and latest != expected:
            raise ParentMovedError(f"dataset {name!r} in {self.root.url}: LATEST moved from {expected} to {latest} "
                                   "while this version was being built; rebuild it on the new LATEST")


def _write_manifest(location: Location, manifest: dict) -> None:
    """The commit point of a version: one whole-object write of its manifest."""
    location.write_json(manifest)
