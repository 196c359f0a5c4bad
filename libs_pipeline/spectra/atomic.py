"""Atomic writes: write to a temporary name beside the target, then rename (no half-written files)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path


def write_temporary(path: str | Path, data: bytes) -> Path:
    """``data`` written and fsynced to a fresh hidden file beside ``path`` (its folder created); the caller renames
    or links it into place, or removes it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the whole new one, never a part."""
    tmp = write_temporary(path, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: object) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def temporary_sibling(path: str | Path) -> Path:
    """A fresh hidden name in the same directory as ``path`` (same filesystem, so rename is atomic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"


def publish_directory(tmp_dir: str | Path, final_dir: str | Path) -> bool:
    """Rename a fully written ``tmp_dir`` to ``final_dir``; returns False (and removes tmp) if it exists."""
    tmp_dir, final_dir = Path(tmp_dir), Path(final_dir)
    try:
        os.rename(tmp_dir, final_dir)
    except OSError:
        if final_dir.exists():
            shutil.rmtree(tmp_dir, ignore_errors=True)
            return False
        raise
    return True


def write_directory(directory: str | Path, write: Callable[[Path], None], overwrite: bool = False) -> Path:
    """Build a directory atomically: ``write(tmp)`` fills a temporary sibling, which then replaces ``directory``
    (an existing non-empty one only if ``overwrite``); on any error nothing is left behind."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise FileExistsError(f"{directory} exists and is not a directory")
    if directory.is_dir() and any(directory.iterdir()) and not overwrite:
        raise FileExistsError(f"model directory {directory} already exists and is not empty (overwrite=False)")
    tmp = temporary_sibling(directory)
    tmp.mkdir()
    try:
        write(tmp)
        old = None
        if directory.exists():
            old = temporary_sibling(directory)
            directory.rename(old)
        if not publish_directory(tmp, directory):
            raise FileExistsError(f"model directory {directory} appeared while saving")
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory
