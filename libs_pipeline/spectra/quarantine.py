"""``<root>/quarantine/<run>/``: copies of rejected files plus ``report.json`` (file, line, rule, reason).

The root is a store URL (local, ``file://``, ``s3://``, ...); the rejected sources are local files (or, for a
generated manifest, an object already in the store).
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

from libs_pipeline.spectra.findings import Finding
from libs_pipeline.spectra.location import Location, open_location


def _safe_name(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._+-]", "_", name).lstrip(".")
    return cleaned[:120] or "file"


class Quarantine:
    """Collects the rejected files of one ingest run; the folder only appears when something was rejected."""

    def __init__(self, root: str | Path | Location, run_id: str):
        self.run_id = run_id
        self.dir = open_location(root) / "quarantine" / run_id
        self.entries: list[dict] = []
        self._copies: dict[str, str] = {}

    def add(self, source: Path | Location | None, findings: list[Finding]) -> str | None:
        """Copy ``source`` (if given and present) into the run folder and record its findings; returns the copy's name."""
        copied = None
        if source is not None and source.exists():
            key = source.url if isinstance(source, Location) else str(Path(source).resolve())
            copied = self._copies.get(key)
            if copied is None:
                copied = f"{len(self._copies):03d}_{_safe_name(source.name)}"
                target = self.dir / copied
                if isinstance(source, Path) and source.is_dir():
                    target.put_directory(source)
                else:
                    target.write_bytes(source.read_bytes())
                self._copies[key] = copied
        for f in findings:
            self.entries.append({**f.to_dict(), "quarantined_as": copied})
        return copied

    def write_report(self, manifest: str | None = None) -> Location | None:
        """Write ``report.json`` (after the copies); None when nothing was rejected (no folder is created)."""
        if not self.entries:
            return None
        report = self.dir / "report.json"
        report.write_json(
            {
                "run": self.run_id,
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "manifest": manifest,
                "rejections": self.entries,
            }
        )
        return report
