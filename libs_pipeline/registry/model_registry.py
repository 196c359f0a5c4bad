"""Versioned model registry: immutable content-addressed versions, aliases (champion, ...) and their history.

Layout under ``<root>/models/<name>/``: ``<version>/`` (model files + ``manifest.json`` with the sha256 of
every file), ``aliases.json`` (alias -> version, replaced atomically), ``history.jsonl`` (append-only log of
registrations and alias changes; the aliases are replayed from it under an flock, so no update is lost).
The registry never imports torch: it resolves and verifies paths; ``libs_pipeline.models`` loads them.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import re
import shutil
import socket
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from libs_pipeline.registry.provenance import code_version, current_flow_run_id, library_versions
from libs_pipeline.spectra.atomic import atomic_write_json, publish_directory
from libs_pipeline.spectra.file_hash import file_sha256
from libs_pipeline.spectra.file_lock import exclusive_lock

MANIFEST_FILE = "manifest.json"
ALIASES_FILE = "aliases.json"
HISTORY_FILE = "history.jsonl"
LOCK_FILE = ".lock"
MANIFEST_FORMAT = 1

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
    """One registered version as listed by :meth:`ModelRegistry.list` (cheap checks only, no hashing)."""

    name: str
    version: str
    path: Path
    created_at: str | None
    aliases: tuple[str, ...] = ()
    metrics: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)
    problem: str | None = None


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
    """Relative posix paths of all regular files under ``directory``; symlinks are refused."""
    files = []
    for path in sorted(directory.rglob("*")):
        rel = path.relative_to(directory).as_posix()
        if path.is_symlink():
            raise RegistryError(f"{path}: symlinks are not allowed in a model directory")
        if path.is_file():
            files.append(rel)
    return files


class ModelRegistry:
    """Immutable model versions and atomically updated aliases under ``<root>/models/`` (local paths only)."""

    def __init__(
        self,
        root: str | Path,
        required_files: tuple[tuple[str, ...], ...] = DEFAULT_REQUIRED_FILES,
        flow_run_id: str | None = None,
    ):
        """``flow_run_id``: the Prefect flow run doing the registering/promoting, recorded in manifests and the
        history (default: ``provenance.current_flow_run_id()``, the worker's environment)."""
        self.root = Path(root)
        self.flow_run_id = flow_run_id if flow_run_id is not None else current_flow_run_id()
        self.models_dir = self.root / "models"
        self.required_files = tuple(tuple(group) for group in required_files)

    # ---- layout -------------------------------------------------------------------------------------
    def _model_dir(self, name: str) -> Path:
        return self.models_dir / _check_name("model name", name)

    def _version_dir(self, name: str, version: str) -> Path:
        if not _VERSION_RE.match(version):
            raise RegistryError(f"invalid version {version!r}: expected 16 lowercase hex digits")
        return self._model_dir(name) / version

    def names(self) -> list[str]:
        """Names of all models that have at least one registered version."""
        if not self.models_dir.is_dir():
            return []
        return sorted(
            p.name
            for p in self.models_dir.iterdir()
            if p.is_dir() and _NAME_RE.match(p.name) and any(_VERSION_RE.match(c.name) for c in p.iterdir())
        )

    def versions(self, name: str) -> list[str]:
        """Version ids of ``name``, oldest first (by manifest created_at, then id)."""
        return [v.version for v in self.list(name)]

    # ---- registration -------------------------------------------------------------------------------
    def register(self, name: str, staged_dir: str | Path, manifest: dict) -> str:
        """Copy a saved model directory into an immutable version; returns its id (sha256 of the file hashes).

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

        model_dir.mkdir(parents=True, exist_ok=True)
        tmp = model_dir / f".tmp-{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            hashes: dict[str, dict] = {}
            for rel in files:
                dst = tmp / rel
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(staged / rel, dst)
                with open(dst, "rb+") as fh:
                    os.fsync(fh.fileno())
                hashes[rel] = {"sha256": file_sha256(dst), "bytes": dst.stat().st_size}
            version = hashlib.sha256(
                "".join(f"{rel}\0{h['sha256']}\n" for rel, h in sorted(hashes.items())).encode()
            ).hexdigest()[:16]
            final = model_dir / version
            if final.exists():
                shutil.rmtree(tmp, ignore_errors=True)
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
            atomic_write_json(tmp / MANIFEST_FILE, record)
            if not publish_directory(tmp, final):  # a concurrent register of identical files won the rename
                self._raise_if_corrupt(name, version)
                return version
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self._append_event(name, {"action": "register", "version": version})
        return version

    # ---- resolution and verification ----------------------------------------------------------------
    def resolve(self, name: str, version_or_alias: str) -> str:
        """The version id an alias points to, or the id itself if it is a registered version."""
        ref = version_or_alias
        aliases = self.aliases(name)
        if ref in aliases:
            return aliases[ref]
        if isinstance(ref, str) and _VERSION_RE.match(ref) and (self._model_dir(name) / ref).is_dir():
            return ref
        known = ", ".join(sorted(aliases)) or "none"
        raise RegistryError(
            f"model {name!r} has no version or alias {ref!r} (aliases: {known}; "
            f"versions: {', '.join(self.versions(name)) or 'none'})"
        )

    def verify(self, name: str, version_or_alias: str) -> list[str]:
        """Problems found by checking every file of the version against the sha256 in its manifest ([] = intact)."""
        version = self.resolve(name, version_or_alias)
        directory = self._version_dir(name, version)
        try:
            record = json.loads((directory / MANIFEST_FILE).read_text())
        except FileNotFoundError:
            return [f"{directory / MANIFEST_FILE}: missing (partial version)"]
        except (OSError, ValueError) as exc:
            return [f"{directory / MANIFEST_FILE}: unreadable ({exc})"]
        listed = record.get("files")
        if not isinstance(listed, dict) or not listed:
            return [f"{directory / MANIFEST_FILE}: field 'files' is missing or empty"]
        problems = []
        if record.get("version") != version:
            problems.append(
                f"{directory / MANIFEST_FILE}: field 'version' is {record.get('version')!r}, not {version!r}"
            )
        for rel, expected in sorted(listed.items()):
            path = directory / rel
            if not path.is_file() or path.is_symlink():
                problems.append(f"{path}: missing")
                continue
            size = path.stat().st_size
            if size != expected.get("bytes"):
                problems.append(f"{path}: {size} bytes, manifest says {expected.get('bytes')} (truncated or altered)")
                continue
            digest = file_sha256(path)
            if digest != expected.get("sha256"):
                problems.append(
                    f"{path}: sha256 {digest[:12]}... does not match manifest {str(expected.get('sha256'))[:12]}..."
                )
        try:
            present = _model_files(directory)
        except RegistryError as exc:
            problems.append(str(exc))
            present = []
        extra = [rel for rel in present if rel != MANIFEST_FILE and rel not in listed]
        problems.extend(f"{directory / rel}: not listed in manifest" for rel in extra)
        return problems

    def _raise_if_corrupt(self, name: str, version: str) -> None:
        problems = self.verify(name, version)
        if problems:
            raise CorruptModelError(
                f"model {name!r} version {version} is corrupt and will not be served: " + "; ".join(problems)
            )

    def path(self, name: str, version_or_alias: str) -> Path:
        """Directory of a verified version (alias or id); raises CorruptModelError if any file fails its sha256."""
        version = self.resolve(name, version_or_alias)
        self._raise_if_corrupt(name, version)
        return self._version_dir(name, version)

    def manifest(self, name: str, version_or_alias: str) -> dict:
        """The manifest.json of a version (alias or id); files are not hashed here (use ``path``/``verify``)."""
        version = self.resolve(name, version_or_alias)
        path = self._version_dir(name, version) / MANIFEST_FILE
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            raise CorruptModelError(f"{path}: missing (partial version)") from None
        except (OSError, ValueError) as exc:
            raise CorruptModelError(f"{path}: unreadable ({exc})") from exc

    def list(self, name: str) -> list[ModelVersion]:
        """All versions of ``name``, oldest first, with aliases and cheap checks (manifest readable, sizes match)."""
        model_dir = self._model_dir(name)
        if not model_dir.is_dir():
            return []
        by_version: dict[str, list[str]] = {}
        for alias, version in self.aliases(name).items():
            by_version.setdefault(version, []).append(alias)
        rows = []
        for child in model_dir.iterdir():
            if not (child.is_dir() and _VERSION_RE.match(child.name)):
                continue
            problem, record = None, {}
            try:
                record = json.loads((child / MANIFEST_FILE).read_text())
                for rel, expected in record.get("files", {}).items():
                    f = child / rel
                    if not f.is_file() or f.stat().st_size != expected.get("bytes"):
                        problem = f"{rel}: missing or wrong size"
                        break
            except FileNotFoundError:
                problem = f"{MANIFEST_FILE}: missing"
            except (OSError, ValueError) as exc:
                problem = f"{MANIFEST_FILE}: unreadable ({exc})"
            rows.append(
                ModelVersion(
                    name=name,
                    version=child.name,
                    path=child,
                    created_at=record.get("created_at"),
                    aliases=tuple(sorted(by_version.get(child.name, []))),
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
            raise RegistryError(f"{path}: unreadable ({exc})") from exc
        return dict(record.get("aliases", {}))

    def history(self, name: str) -> list[dict]:
        """Every registration and alias change, oldest first (the append-only log)."""
        return self._read_history(self._model_dir(name) / HISTORY_FILE)

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
        with exclusive_lock(model_dir / LOCK_FILE, poll_s=0.01):
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
        with exclusive_lock(model_dir / LOCK_FILE, poll_s=0.01):
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
    def _read_history(path: Path) -> list[dict]:
        try:
            text = path.read_text()
        except FileNotFoundError:
            return []
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
                    break  # an append interrupted by a crash; dropped at the next write
                raise RegistryError(f"{path}, line {i}: not a JSON event ({exc})") from exc
        return events

    def _replay(self, model_dir: Path) -> dict[str, list[str]]:
        """Alias -> stack of versions (last = current), rebuilt from the history log."""
        stacks: dict[str, list[str]] = {}
        for event in self._read_history(model_dir / HISTORY_FILE):
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
        with exclusive_lock(model_dir / LOCK_FILE, poll_s=0.01):
            return self._write_event(model_dir, event)

    def _write_event(self, model_dir: Path, event: dict) -> dict:
        """Append one event with a sequence number and fsync it (lock held)."""
        path = model_dir / HISTORY_FILE
        seq = len(self._read_history(path)) + 1
        full = {
            "seq": seq,
            "time": _now(),
            **event,
            "user": getpass.getuser(),
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "flow_run_id": self.flow_run_id,
        }
        with open(path, "ab+") as fh:
            size = fh.seek(0, os.SEEK_END)
            if size:
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":  # drop a torn line left by a crash mid-append
                    fh.seek(0)
                    content = fh.read()
                    fh.truncate(content.rfind(b"\n") + 1)
                    fh.seek(0, os.SEEK_END)
            fh.write((json.dumps(full, sort_keys=True) + "\n").encode())
            fh.flush()
            os.fsync(fh.fileno())
        return full

    def _commit(self, model_dir: Path, stacks: dict[str, list[str]], event: dict) -> dict:
        """Log the alias change, then replace aliases.json with the replayed state (lock held)."""
        full = self._write_event(model_dir, event)
        stack = stacks.setdefault(event["alias"], [])
        if event["action"] == "rollback":
            stack.pop()
        else:
            stack.append(event["version"])
        atomic_write_json(
            model_dir / ALIASES_FILE,
            {"aliases": {a: s[-1] for a, s in sorted(stacks.items()) if s}, "revision": full["seq"],
             "updated_at": full["time"]},
        )
        return full
