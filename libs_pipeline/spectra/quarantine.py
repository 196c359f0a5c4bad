"""``<root>/quarantine/<run>/``: copies of rejected files plus ``report.json`` (file, line, rule, reason)."""

from __future__ import annotations

import re
import shutil
from datetime import datetime, timezone
from pathlib import Path

from libs_pipeline.spectra.atomic import atomic_write_json, temporary_sibling
from libs_pipeline.spectra.findings import Finding


def _safe_name(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._+-]", "_", name).lstrip(".")
    return cleaned[:120] or "file"


class Quarantine:
    """Collects the rejected files of one ingest run; the folder only appears when something was rejected."""

    def __init__(self, root: str | Path, run_id: str):
        self.run_id = run_id
        self.dir = Path(root) / "quarantine" / run_id
        self.entries: list[dict] = []
        self._copies: dict[str, str] = {}

    def add(self, source: Path | None, findings: list[Finding]) -> str | None:
        """Copy ``source`` (if given and present) into the run folder and record its findings; returns the copy's name."""
        copied = None
        if source is not None and source.exists():
            key = str(source.resolve())
            copied = self._copies.get(key)
            if copied is None:
                self.dir.mkdir(parents=True, exist_ok=True)
                copied = f"{len(self._copies):03d}_{_safe_name(source.name)}"
                tmp = temporary_sibling(self.dir / copied)
                if source.is_dir():
                    shutil.copytree(source, tmp, symlinks=True)
                else:
                    shutil.copyfile(source, tmp)
                tmp.rename(self.dir / copied)
                self._copies[key] = copied
        for f in findings:
            self.entries.append({**f.to_dict(), "quarantined_as": copied})
        return copied

    def write_report(self, manifest: str | None = None) -> Path | None:
        """Write ``report.json``; None when nothing was rejected (no folder is created)."""
        if not self.entries:
            return None
        path = self.dir / "report.json"
        atomic_write_json(
            path,
            {
                "run": self.run_id,
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "manifest": manifest,
                "rejections": self.entries,
            },
        )
        return path
