"""Helpers of the synth tests: byte snapshots of store folders (the toy zarr store is in tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path


def tree_bytes(root: str | Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative path -> bytes): what 'same bytes' means for a store."""
    root = Path(root)
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

