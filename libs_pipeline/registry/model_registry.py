"""Versioned model registry: immutable content-addressed versions, aliases (champion, ...) and their history.

The root is a store URL (a local folder, ``file://``, ``s3://bucket/prefix``, any fsspec protocol); every read
and write goes through ``libs_pipeline.spectra.location.Location``. Layout under ``<root>/models/<name>/``:
``<version>/`` (model files + ``manifest.json`` with the sha256 and size of every file), ``aliases.json``
(alias -> version, replaced whole), ``history.jsonl`` (the log of registrations and alias changes; aliases are
replayed from it under a lock on the store, ``<name>/.lock``, so concurrent promoters never lose an update).

Commit rule: a version is visible only once complete. On a local root it is built in a hidden sibling folder
and renamed into place; on an object store its files are uploaded first and ``manifest.json`` is created last
(a conditional create), and a version folder without a manifest is not a version (an interrupted upload is
invisible and a retry completes it).

``path()`` returns a local folder: the version itself on a local root; on an object store a verified copy in
the local model cache (``$LIBS_PIPELINE_CACHE/models/...``, default ``~/.cache/libs-pipeline``), downloaded
once per root, name and version and reused afterwards. The registry never imports torch: it resolves and
verifies; ``libs_pipeline.models`` loads.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import re
import shutil
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from libs_pipeline.registry.provenance import code_version, current_flow_run_id, library_versions
from libs_pipeline.spectra.atomic import publish_directory, temporary_sibling
from libs_pipeline.spectra.file_hash import file_sha256
from libs_pipeline.spectra.location import Location, open_location

MANIFEST_FILE = "manifest.json"
ALIASES_FILE = "aliases.json"
HISTORY_FILE = "history.jsonl"
LOCK_FILE = ".lock"
MANIFEST_FORMAT = 1
#: Environment variable naming the local cache folder for models loaded from object stores.
CACHE_ENV = "LIBS_PIPELINE_CACHE"
DEFAULT_CACHE = Path("~/.cache/libs-pipeline")

#: A model version must contain one of these file sets: a CNN (what ``libs_pipeline.models.save_model``
#: writes), a baseline calibration (``candidates.save_baseline``) or a CNN ensemble (``candidates.save_ensemble``).
DEFAULT_REQUIRED_FILES = (("weights.pt", "normalisation.json", "config.json"), ("baseline.json",), ("ensemble.json",))
#: Keys the caller's manifest must provide.
REQUIRED_MANIFEST_KEYS = ("data", "seeds", "metrics")
#: Keys the registry writes itself; a caller's manifest may not set them.
RESERVED_MANIFEST_KEYS = ("format", "name", "version", "created_at", "files", "code", "libraries")

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_VERSION_RE = re.compile(r"^[0-9a-f]{16}$")


class RegistryError(Exception):
    """A registry operation was refused (unknown name/version/alias, bad input, nothing to roll back to)."""


class CorruptModelError(RegistryError):
    """A stored version does not match its manifest (missing, truncated, altered or extra files)."""


@dataclass(frozen=True)
class ModelVersion:
    """One registered version as listed by :meth:`ModelRegistry.list` (cheap checks only, no hashing).

    ``path`` is the version folder: a ``Path`` on a local root, its URL (str) on an object store."""

    name: str
    version: str
    path: Path | str
    created_at: str | None
    aliases: tuple[str, ...] = ()
    metrics: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)
    problem: str | None = None


def cache_root() -> Path:
    """The local cache folder (``$LIBS_PIPELINE_CACHE``, default ``~/.cache/libs-pipeline``)."""
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE).expanduser()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _json_default(obj: object) -> object:
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    if hasattr(obj, "tolist"):  # numpy scalars and arrays
        return obj.tolist()
    raise TypeError(f"manifest value of type {type(obj).__name__} is not JSON-serialisable")


def _check_name(kind: str, value: str) -> str:
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise RegistryError(
            f"invalid {kind} {value!r}: use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return value


def _model_files(directory: Path) -> list[str]:
    """Relative posix paths of all regular files under a local ``directory``; symlinks are refused."""
    files = []
    for path in sorted(directory.rglob("*")):
        rel = path.relative_to(directory).as_posix()
        if path.is_symlink():
            raise RegistryError(f"{path}: symlinks are not allowed in a model directory")
        if path.is_file():
            files.append(rel)
    return files


def _stored_files(where: Location) -> dict[str, int]:
    """Relative path -> size of every file under ``where`` (one listing; local symlinks are refused)."""
    if where.is_local:
        base = where.local_path
        return {rel: (base / rel).stat().st_size for rel in _model_files(base)} if base.is_dir() else {}
    root = where.path.rstrip("/")
    where.fs.invalidate_cache(root)
    found = where.fs.find(root, detail=True)
    return {str(p)[len(root):].lstrip("/"): int(info.get("size") or 0) for p, info in found.items()
            if info.get("type") != "directory"}


def _sha256(where: Location) -> str:
    """Hex sha256 of one stored file, streamed."""
    if where.is_local:
        return file_sha256(where.local_path)
    with where.fs.open(where.path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _file_problems(where: Location, shown: str, listed: dict) -> list[str]:
    """Every file of a version folder ``where`` checked against the manifest's ``files`` (``shown`` names the
    folder in the messages: the store URL even when a downloaded copy is checked)."""
    try:
        present = _stored_files(where)
    except RegistryError as exc:
        return [str(exc)]
    problems = []
    for rel, expected in sorted(listed.items()):
        if rel not in present:
            problems.append(f"{shown}/{rel}: missing")
            continue
        size = present[rel]
        if size != expected.get("bytes"):
            problems.append(f"{shown}/{rel}: {size} bytes, manifest says {expected.get('bytes')} (truncated or altered)")
            continue
        digest = _sha256(where.join(rel))
        if digest != expected.get("sha256"):
            problems.append(
                f"{shown}/{rel}: sha256 {digest[:12]}... does not match manifest {str(expected.get('sha256'))[:12]}..."
            )
    extra = [rel for rel in present if rel != MANIFEST_FILE and rel not in listed]
    problems.extend(f"{shown}/{rel}: not listed in manifest" for rel in sorted(extra))
    return problems


def _read_manifest(where: Location) -> dict:
    """The manifest of a version folder; CorruptModelError when it is missing or unreadable."""
    path = where.join(MANIFEST_FILE)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CorruptModelError(f"{path.url}: missing (partial version)") from None
    except (OSError, ValueError) as exc:
        raise CorruptModelError(f"{path.url}: unreadable ({exc})") from exc


class ModelRegistry:
    """Immutable model versions and safely updated aliases under ``<root>/models/`` (any store URL)."""

    def __init__(
        self,
        root: str | Path | Location,
        required_files: tuple[tuple[str, ...], ...] = DEFAULT_REQUIRED_FILES,
        flow_run_id: str | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ):
        """``root``: the store root URL (``storage_options`` go to fsspec, e.g. an S3 endpoint or profile);
        ``flow_run_id``: the Prefect flow run doing the registering/promoting, recorded in manifests and the
        history (default: ``provenance.current_flow_run_id()``, the worker's environment)."""
        self.root = open_location(root, storage_options)
        self.flow_run_id = flow_run_id if flow_run_id is not None else current_flow_run_id()
        self.models_dir = self.root / "models"
        self.required_files = tuple(tuple(group) for group in required_files)

    # ---- layout -------------------------------------------------------------------------------------
    def _model_dir(self, name: str) -> Location:
        return self.models_dir / _check_name("model name", name)

    def _version_dir(self, name: str, version: str) -> Location:
        if not _VERSION_RE.match(version):
            raise RegistryError(f"invalid version {version!r}: expected 16 lowercase hex digits")
        return self._model_dir(name) / version

    def _shown(self, where: Location) -> Path | str:
        return where.local_path if where.is_local else where.url

    def _is_version(self, name: str, version: str) -> bool:
        """A complete version: its folder (local: published by rename) or its manifest (object stores)."""
        where = self._version_dir(name, version)
        return where.is_dir() if where.is_local else where.join(MANIFEST_FILE).is_file()

    def _version_ids(self, name: str) -> list[str]:
        model_dir = self._model_dir(name)
        if model_dir.is_local:
            return [c for c in model_dir.children() if _VERSION_RE.match(c) and (model_dir / c).is_dir()]
        return sorted({rel.split("/", 1)[0] for rel in _stored_files(model_dir)
                       if rel.count("/") == 1 and rel.endswith("/" + MANIFEST_FILE) and _VERSION_RE.match(rel[:16])})

    def names(self) -> list[str]:
        """Names of all models that have at least one registered version."""
        return sorted(n for n in self.models_dir.children() if _NAME_RE.match(n) and self._version_ids(n))

    def versions(self, name: str) -> list[str]:
        """Version ids of ``name``, oldest first (by manifest created_at, then id)."""
        return [v.version for v in self.list(name)]

    def version_url(self, name: str, version_or_alias: str) -> str:
        """The URL (a plain path on a local root) of a version's folder in the store; nothing is verified."""
        return self._version_dir(name, self.resolve(name, version_or_alias)).url

    # ---- registration -------------------------------------------------------------------------------
    def register(self, name: str, staged_dir: str | Path, manifest: dict) -> str:
        """Copy a saved (local) model directory into an immutable version; returns its id (sha256 of the file
        hashes).

        ``manifest`` must hold ``data`` (training data versions), ``seeds`` and ``metrics``; the registry adds
        file hashes, created time, code and library versions and the Prefect flow-run id (when in a flow run).
        Registering identical files again returns the existing version and writes nothing.
        """
        model_dir = self._model_dir(name)
        staged = Path(staged_dir)
        if not staged.is_dir():
            raise RegistryError(f"staged model directory {staged} does not exist or is not a directory")
        files = _model_files(staged)
        if MANIFEST_FILE in files:
            raise RegistryError(f"{staged / MANIFEST_FILE}: name is reserved for the registry's manifest")
        missing = [[f for f in group if f not in files] for group in self.required_files]
        if all(missing):
            wanted = " or ".join("(" + ", ".join(group) + ")" for group in self.required_files)
            raise RegistryError(
                f"staged model directory {staged} lacks required file(s): {', '.join(min(missing, key=len))} "
                f"(a model version holds {wanted})"
            )
        user = dict(manifest or {})
        absent = [k for k in REQUIRED_MANIFEST_KEYS if k not in user]
        if absent:
            raise RegistryError(f"manifest for {name!r} lacks required key(s): {', '.join(absent)}")
        reserved = [k for k in RESERVED_MANIFEST_KEYS if k in user]
        if reserved:
            raise RegistryError(f"manifest for {name!r} sets registry-owned key(s): {', '.join(reserved)}")
        try:
            user = json.loads(json.dumps(user, default=_json_default))
        except (TypeError, ValueError) as exc:
            raise RegistryError(f"manifest for {name!r}: {exc}") from exc

        contents = {rel: (staged / rel).read_bytes() for rel in files}
        hashes = {rel: {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)} for rel, data in contents.items()}
        version = hashlib.sha256(
            "".join(f"{rel}\0{h['sha256']}\n" for rel, h in sorted(hashes.items())).encode()
        ).hexdigest()[:16]
        if self._is_version(name, version):
            self._raise_if_corrupt(name, version)
            return version
        record = {
            "format": MANIFEST_FORMAT,
            "name": name,
            "version": version,
            "created_at": _now(),
            "files": hashes,
            "code": code_version(),
            "libraries": library_versions(),
            "prefect_flow_run_id": self.flow_run_id,
            "trust_threshold": None,
            "config_hash": None,
        }
        record.update(user)
        manifest_bytes = (json.dumps(record, indent=2, sort_keys=True, default=str) + "\n").encode()
        if not self._publish_version(model_dir / version, contents, manifest_bytes):
            self._raise_if_corrupt(name, version)  # a concurrent register of identical files won
            return version
        self._append_event(name, {"action": "register", "version": version})
        return version

    @staticmethod
    def _publish_version(final: Location, contents: dict[str, bytes], manifest_bytes: bytes) -> bool:
        """Write the files, then the manifest last; False when another writer published the version first.

        Local: everything goes to a hidden sibling folder that is renamed into place. Object stores: the files
        are uploaded under the version's prefix and the manifest is created only if absent (nothing is
        visible before it exists; a retry after an interruption re-uploads the same bytes)."""
        if final.is_local:
            tmp = open_location(temporary_sibling(final.local_path))
            try:
                for rel, data in contents.items():
                    tmp.join(rel).write_bytes(data)
                tmp.join(MANIFEST_FILE).write_bytes(manifest_bytes)
                return publish_directory(tmp.local_path, final.local_path)
            except BaseException:
                shutil.rmtree(tmp.local_path, ignore_errors=True)
                raise
        for rel, data in contents.items():
            final.join(rel).write_bytes(data)
        return final.join(MANIFEST_FILE).create_bytes(manifest_bytes)

    # ---- resolution and verification ----------------------------------------------------------------
    def resolve(self, name: str, version_or_alias: str) -> str:
        """The version id an alias points to, or the id itself if it is a registered version."""
        ref = version_or_alias
        aliases = self.aliases(name)
        if ref in aliases:
            return aliases[ref]
        if isinstance(ref, str) and _VERSION_RE.match(ref) and self._is_version(name, ref):
            return ref
        known = ", ".join(sorted(aliases)) or "none"
        raise RegistryError(
            f"model {name!r} has no version or alias {ref!r} (aliases: {known}; "
            f"versions: {', '.join(self.versions(name)) or 'none'})"
        )

    def verify(self, name: str, version_or_alias: str) -> list[str]:
        """Problems found by checking every stored file of the version against the sha256 in its manifest
        ([] = intact); on an object store the objects themselves are read, not the local cache."""
        version = self.resolve(name, version_or_alias)
        directory = self._version_dir(name, version)
        try:
            record = _read_manifest(directory)
        except CorruptModelError as exc:
            return [str(exc)]
        return self._manifest_problems(directory, self._shown(directory), record, version)

    @staticmethod
    def _manifest_problems(where: Location, shown: Path | str, record: dict, version: str) -> list[str]:
        listed = record.get("files")
        if not isinstance(listed, dict) or not listed:
            return [f"{shown}/{MANIFEST_FILE}: field 'files' is missing or empty"]
        problems = []
        if record.get("version") != version:
            problems.append(f"{shown}/{MANIFEST_FILE}: field 'version' is {record.get('version')!r}, not {version!r}")
        return problems + _file_problems(where, str(shown), listed)

    def _raise_if_corrupt(self, name: str, version: str, problems: list[str] | None = None) -> None:
        problems = self.verify(name, version) if problems is None else problems
        if problems:
            raise CorruptModelError(
                f"model {name!r} version {version} is corrupt and will not be served: " + "; ".join(problems)
            )

    def path(self, name: str, version_or_alias: str) -> Path:
        """Local folder of a verified version (alias or id); raises CorruptModelError if any file fails its
        sha256. Object stores: a verified copy in the local cache, downloaded on first use and reused."""
        version = self.resolve(name, version_or_alias)
        directory = self._version_dir(name, version)
        if directory.is_local:
            self._raise_if_corrupt(name, version)
            return directory.local_path
        return self._cached_copy(name, version, directory)

    def verified_url(self, name: str, version_or_alias: str) -> str:
        """The URL (a plain path on a local root) of a version's folder after checking every stored file against
        its manifest (CorruptModelError otherwise); nothing is downloaded into the cache."""
        version = self.resolve(name, version_or_alias)
        self._raise_if_corrupt(name, version)
        return self._version_dir(name, version).url

    def cache_dir(self, name: str, version: str) -> Path:
        """Where ``path()`` keeps the local copy of a version from this (object-store) root."""
        root_key = hashlib.sha256(self.root.url.encode()).hexdigest()[:12]
        return cache_root() / "models" / root_key / _check_name("model name", name) / version

    def _cached_copy(self, name: str, version: str, directory: Location) -> Path:
        """The cached copy (re-checked locally, no download), or a fresh download verified before it is used."""
        final = self.cache_dir(name, version)
        if final.is_dir():
            cached = open_location(final)
            try:
                record = _read_manifest(cached)
                if not self._manifest_problems(cached, final, record, version):
                    return final
            except CorruptModelError:
                pass
            shutil.rmtree(final, ignore_errors=True)  # a damaged cache copy: fetch it again
        tmp = temporary_sibling(final)
        try:
            directory.get_directory(tmp)
            copy = open_location(tmp)
            problems = self._manifest_problems(copy, directory.url, _read_manifest(directory), version)
            self._raise_if_corrupt(name, version, problems)
            publish_directory(tmp, final)  # False: a concurrent load cached the same verified bytes first
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return final

    def manifest(self, name: str, version_or_alias: str) -> dict:
        """The manifest.json of a version (alias or id); files are not hashed here (use ``path``/``verify``)."""
        version = self.resolve(name, version_or_alias)
        return _read_manifest(self._version_dir(name, version))

    def list(self, name: str) -> list[ModelVersion]:
        """All versions of ``name``, oldest first, with aliases and cheap checks (manifest readable, sizes match)."""
        model_dir = self._model_dir(name)
        ids = self._version_ids(name)
        if not ids:
            return []
        by_version: dict[str, list[str]] = {}
        for alias, version in self.aliases(name).items():
            by_version.setdefault(version, []).append(alias)
        rows = []
        for version in ids:
            child = model_dir / version
            problem, record = None, {}
            try:
                record = json.loads(child.join(MANIFEST_FILE).read_text())
                sizes = _stored_files(child)
                for rel, expected in record.get("files", {}).items():
                    if sizes.get(rel) != expected.get("bytes"):
                        problem = f"{rel}: missing or wrong size"
                        break
            except FileNotFoundError:
                problem = f"{MANIFEST_FILE}: missing"
            except (OSError, ValueError) as exc:
                problem = f"{MANIFEST_FILE}: unreadable ({exc})"
            except RegistryError as exc:
                problem = str(exc)
            rows.append(
                ModelVersion(
                    name=name,
                    version=version,
                    path=self._shown(child),
                    created_at=record.get("created_at"),
                    aliases=tuple(sorted(by_version.get(version, []))),
                    metrics=record.get("metrics") or {},
                    data=record.get("data") or {},
                    problem=problem,
                )
            )
        return sorted(rows, key=lambda r: (r.created_at or "", r.version))

    # ---- aliases and history ------------------------------------------------------------------------
    def aliases(self, name: str) -> dict[str, str]:
        """Current alias -> version mapping (empty when nothing was promoted yet)."""
        path = self._model_dir(name) / ALIASES_FILE
        try:
            record = json.loads(path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise RegistryError(f"{path.url}: unreadable ({exc})") from exc
        return dict(record.get("aliases", {}))

    def history(self, name: str) -> list[dict]:
        """Every registration and alias change, oldest first (the append-only log)."""
        return self._read_history(self._model_dir(name) / HISTORY_FILE)[0]

    def promote(
        self, name: str, version_or_alias: str, alias: str = "champion", reason: str | None = None
    ) -> dict:
        """Point ``alias`` at a verified version; returns the history event (``{}`` if it already pointed there)."""
        _check_name("alias", alias)
        if _VERSION_RE.match(alias):
            raise RegistryError(f"invalid alias {alias!r}: it looks like a version id")
        version = self.resolve(name, version_or_alias)
        self._raise_if_corrupt(name, version)
        model_dir = self._model_dir(name)
        with self._lock(model_dir):
            stacks = self._replay(model_dir)
            stack = stacks.get(alias, [])
            if stack and stack[-1] == version:
                return {}
            return self._commit(
                model_dir,
                stacks,
                {"action": "promote", "alias": alias, "version": version,
                 "previous": stack[-1] if stack else None, "reason": reason},
            )

    def rollback(self, name: str, alias: str = "champion", reason: str | None = None) -> dict:
        """Point ``alias`` back at the version it held before its current one; returns the history event."""
        model_dir = self._model_dir(name)
        with self._lock(model_dir):
            stacks = self._replay(model_dir)
            stack = stacks.get(alias, [])
            if len(stack) < 2:
                current = stack[-1] if stack else None
                raise RegistryError(
                    f"model {name!r}: alias {alias!r} (now {current}) has no earlier version to roll back to"
                )
            target = stack[-2]
            self._raise_if_corrupt(name, target)
            return self._commit(
                model_dir,
                stacks,
                {"action": "rollback", "alias": alias, "version": target, "previous": stack[-1], "reason": reason},
            )

    # ---- internals (call with the lock held where noted) ---------------------------------------------
    @staticmethod
    def _lock(model_dir: Location):
        """The exclusive lock on one model's aliases and history (a lock file, or a lease object on a store)."""
        return (model_dir / LOCK_FILE).lock(
            timeout_s=120.0, poll_s=0.01,
            timeout_message=f"{model_dir.url}: another registry writer held the lock for 120 s",
        )

    @staticmethod
    def _read_history(path: Location) -> tuple[list[dict], str]:
        """The events and the log text without a torn last line (an append interrupted by a crash)."""
        try:
            text = path.read_text()
        except FileNotFoundError:
            return [], ""
        lines = text.split("\n")
        torn_tail = not text.endswith("\n")
        events = []
        for i, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                events.append(json.loads(line))
            except ValueError as exc:
                if torn_tail and i == len(lines):
                    break  # dropped at the next write
                raise RegistryError(f"{path.url}, line {i}: not a JSON event ({exc})") from exc
        kept = text if not torn_tail else text[: text.rfind("\n") + 1]
        return events, kept

    def _replay(self, model_dir: Location) -> dict[str, list[str]]:
        """Alias -> stack of versions (last = current), rebuilt from the history log."""
        stacks: dict[str, list[str]] = {}
        for event in self._read_history(model_dir / HISTORY_FILE)[0]:
            alias = event.get("alias")
            if event.get("action") == "promote":
                stacks.setdefault(alias, []).append(event["version"])
            elif event.get("action") == "rollback":
                stack = stacks.get(alias, [])
                if stack:
                    stack.pop()
        return {a: s for a, s in stacks.items() if s}

    def _append_event(self, name: str, event: dict) -> dict:
        model_dir = self._model_dir(name)
        with self._lock(model_dir):
            return self._write_event(model_dir, event)

    def _write_event(self, model_dir: Location, event: dict) -> dict:
        """Append one event with a sequence number (lock held): the log is rewritten whole with the new line,
        so readers see it with or without the event, never a part (a torn tail is dropped here)."""
        path = model_dir / HISTORY_FILE
        events, kept = self._read_history(path)
        full = {
            "seq": len(events) + 1,
            "time": _now(),
            **event,
            "user": getpass.getuser(),
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "flow_run_id": self.flow_run_id,
        }
        path.write_text(kept + json.dumps(full, sort_keys=True) + "\n")
        return full

    def _commit(self, model_dir: Location, stacks: dict[str, list[str]], event: dict) -> dict:
        """Log the alias change, then replace aliases.json with the replayed state (lock held)."""
        full = self._write_event(model_dir, event)
        stack = stacks.setdefault(event["alias"], [])
        if event["action"] == "rollback":
            stack.pop()
        else:
            stack.append(event["version"])
        (model_dir / ALIASES_FILE).write_json(
            {"aliases": {a: s[-1] for a, s in sorted(stacks.items()) if s}, "revision": full["seq"],
             "updated_at": full["time"]},
        )
        return full
