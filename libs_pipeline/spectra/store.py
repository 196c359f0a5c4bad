"""Versioned spectra store: ``<root>/spectra/<name>/<version>.zarr`` (immutable, version = content hash).

Each version has ``<version>.manifest.json`` beside it (written last: a version without it does not exist)
and ``LATEST`` names the current one; every step is temp-then-rename, so readers never see a partial
version. URIs: a ``.zarr``/``.nc`` path or ``<root>#<name>@<version>`` (``@LATEST`` or no ``@`` = latest).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from libs_pipeline.spectra.atomic import atomic_write_json, atomic_write_text, publish_directory, temporary_sibling
from libs_pipeline.spectra.dataset import SCHEMA_VERSION
from libs_pipeline.spectra.file_lock import LockTimeoutError, exclusive_lock
from libs_pipeline.spectra.schemas import is_safe_id, sample_table_schema, validate_spectra, validate_table

LATEST = "LATEST"
VERSION_LENGTH = 16
_CORE_MANIFEST_KEYS = (
    "name", "version", "created", "schema_version", "reader", "sources", "counts", "zarr", "parent", "wavelength_nm",
)


class VersionNotFoundError(KeyError):
    """The dataset name or version does not exist in the store."""


class DatasetLockedError(LockTimeoutError):
    """Another process held the dataset's lock for longer than the timeout."""


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


def _write_zarr(ds: xr.Dataset, path: Path, chunk_spectra: int) -> None:
    """Write ``ds`` as zarr 3 (strings variable-length UTF-8, intensity chunked along spectrum, consolidated)."""
    out = ds.load().copy()
    for var in out.variables.values():
        var.encoding = {}
    for name, var in list(out.data_vars.items()):
        if var.dtype.kind == "U":
            out[name] = var.astype(object)
    n, m = out.sizes["spectrum"], out.sizes["wavelength"]
    encoding = {"intensity": {"chunks": (max(1, min(chunk_spectra, n)), m)}}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
        out.to_zarr(path, zarr_format=3, mode="w-", consolidated=True, encoding=encoding)


def open_zarr_spectra(path: str | Path) -> xr.Dataset:
    """Open a spectra .zarr lazily (intensity as dask), with string variables as numpy ``<U``."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Failed to open Zarr store with consolidated metadata")
        ds = xr.open_zarr(path, consolidated=None)
    return _with_str_vars(ds)


def local_path(uri_or_path: str | Path) -> Path:
    """The local path a plain path or a ``file://`` URI names."""
    return Path(str(uri_or_path).removeprefix("file://"))


def open_spectra(uri_or_path: str | Path) -> xr.Dataset:
    """Open spectra lazily from a ``.zarr`` / ``.nc`` path (or ``file://`` URI) or a store URI
    ``<root>#<name>@<version>``.

    Raises FileNotFoundError for a missing path and ValueError (naming the URI) for anything that is not
    a dataset in the canonical layout.
    """
    text = str(uri_or_path)
    if "#" in text:
        root, _, ref = text.partition("#")
        name, _, version = ref.partition("@")
        ds = SpectraStore(root).open(name, version or LATEST)
    else:
        path = local_path(text)
        is_zarr = path.suffix == ".zarr" or (path / "zarr.json").exists()
        if not is_zarr and path.suffix not in (".nc", ".nc4", ".h5"):
            raise ValueError(f"cannot open spectra from {text!r}: expected a .zarr, a .nc or '<root>#<name>@<version>'")
        if not path.exists():
            raise FileNotFoundError(f"spectra {text!r}: no such file or directory")
        try:
            ds = open_zarr_spectra(path) if is_zarr else _with_str_vars(xr.open_dataset(path))
        except Exception as exc:
            raise ValueError(f"cannot open spectra from {text!r}: {exc}") from exc
    for var in ("intensity", "sample_id"):
        if var not in ds:
            raise ValueError(f"spectra {text!r}: no variable {var!r} (not in the canonical spectra layout)")
    return ds


class SpectraStore:
    """Immutable, content-addressed versions of named spectra datasets under ``<root>/spectra/``."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    # --- paths -------------------------------------------------------------------------------------------
    def _dir(self, name: str) -> Path:
        if not is_safe_id(name):
            raise ValueError(f"dataset name {name!r} is not a safe id (letters, digits, . _ + -; no '/', no '..')")
        return self.root / "spectra" / name

    def _resolve(self, name: str, version: str) -> str:
        if version == LATEST:
            latest = self.latest(name)
            if latest is None:
                raise VersionNotFoundError(f"dataset {name!r} has no versions in {self.root}")
            return latest
        if not (len(version) == VERSION_LENGTH and all(c in "0123456789abcdef" for c in version)):
            raise VersionNotFoundError(f"{version!r} is not a version id (16 hex digits) or 'LATEST'")
        if not (self._dir(name) / f"{version}.manifest.json").is_file():
            raise VersionNotFoundError(f"dataset {name!r} has no version {version!r} in {self.root}")
        return version

    def uri(self, name: str, version: str = LATEST) -> str:
        """Path of the version's .zarr (what ``xr.open_zarr`` and ``open_spectra`` accept)."""
        return str(self._dir(name) / f"{self._resolve(name, version)}.zarr")

    def ref(self, name: str, version: str = LATEST) -> str:
        """Store URI ``<root>#<name>@<version>`` with the version resolved."""
        return f"{self.root}#{name}@{self._resolve(name, version)}"

    # --- reading -----------------------------------------------------------------------------------------
    def names(self) -> list[str]:
        base = self.root / "spectra"
        return sorted(p.name for p in base.iterdir() if p.is_dir() and self.versions(p.name)) if base.is_dir() else []

    def latest(self, name: str) -> str | None:
        path = self._dir(name) / LATEST
        if not path.is_file():
            return None
        version = path.read_text().strip()
        return version or None

    def versions(self, name: str) -> list[str]:
        """Complete versions (zarr + manifest), oldest first."""
        d = self._dir(name)
        if not d.is_dir():
            return []
        found = []
        for m in d.glob("*.manifest.json"):
            version = m.name.removesuffix(".manifest.json")
            if (d / f"{version}.zarr").is_dir():
                found.append((json.loads(m.read_text()).get("created", ""), version))
        return [v for _, v in sorted(found)]

    def manifest(self, name: str, version: str = LATEST) -> dict:
        version = self._resolve(name, version)
        return json.loads((self._dir(name) / f"{version}.manifest.json").read_text())

    def open(self, name: str, version: str = LATEST) -> xr.Dataset:
        """The version's dataset, lazily (intensity as dask chunks along spectrum)."""
        return open_zarr_spectra(self.uri(name, version))

    def samples(self, name: str, version: str = LATEST) -> pd.DataFrame:
        """The version's per-sample table (sample_id, file, matrix, n_spectra, ``<El>_<unit>`` labels)."""
        records = self.manifest(name, version).get("samples", [])
        df = pd.DataFrame.from_records(records)
        first = [c for c in ("sample_id", "file", "matrix", "n_spectra") if c in df.columns]
        return df[first + sorted(c for c in df.columns if c not in first)]

    # --- writing -----------------------------------------------------------------------------------------
    @contextmanager
    def lock(self, name: str, timeout_s: float | None = None) -> Iterator[None]:
        """Exclusive lock on one dataset name (read LATEST -> write -> move LATEST is one step).

        ``timeout_s``: give up after that many seconds with DatasetLockedError (None = wait forever).
        """
        d = self._dir(name)
        waited = "" if timeout_s is None else f"{timeout_s:g}"  # the message is only shown after a timeout
        message = (f"dataset '{name}' in {self.root} is locked by another ingest; gave up after {waited} s "
                   f"(lock file {d / '.lock'}; raise lock_timeout_s to wait longer)")
        with exclusive_lock(d / ".lock", timeout_s, timeout_message=message, error=DatasetLockedError):
            yield

    def write_version(
        self,
        name: str,
        ds: xr.Dataset,
        sources: list[dict],
        reader: str,
        extra: dict | None = None,
        chunk_spectra: int = 256,
    ) -> str:
        """Write ``ds`` as a new immutable version and move LATEST to it; same content -> existing version.

        The dataset must pass the spectra schema; ``extra`` keys are added to the manifest (``samples``:
        the per-sample table as records, validated). An existing identical version writes no data; LATEST
        is moved to it if it was not already there. The written dataset carries attrs ``name`` and ``version``
        (attrs are not part of the content hash).
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
        final = d / f"{version}.zarr"
        manifest_path = d / f"{version}.manifest.json"
        parent = self.latest(name)
        if not manifest_path.is_file():
            if not final.is_dir():
                tmp = temporary_sibling(final)
                try:
                    _write_zarr(ds.assign_attrs(name=name, version=version), tmp, chunk_spectra)
                    publish_directory(tmp, final)
                except BaseException:
                    shutil.rmtree(tmp, ignore_errors=True)
                    raise
            manifest = {
                "name": name,
                "version": version,
                "created": datetime.now(timezone.utc).isoformat(timespec="microseconds"),
                "schema_version": str(ds.attrs.get("schema_version", SCHEMA_VERSION)),
                "reader": reader,
                "zarr": final.name,
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
            }
            atomic_write_json(manifest_path, manifest)
        if parent != version:
            atomic_write_text(d / LATEST, version + "\n")
        return version
