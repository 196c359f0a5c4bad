"""What ingest found wrong with an input: file, line/column or coordinate, rule, reason (errors and warnings)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal


@dataclass(frozen=True)
class Finding:
    """One problem with one input file; ``severity="error"`` means the file was not ingested."""

    file: str
    rule: str
    reason: str
    line: int | None = None
    column: int | None = None
    coordinate: str | None = None
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        at = f" (at {self.coordinate})" if self.coordinate else ""
        return f"{where}: [{self.rule}] {self.reason}{at}"

    def to_dict(self) -> dict:
        return asdict(self)


Rejection = Finding
"""An error finding: the file it names was rejected (quarantined) and is not part of any new version."""


class FileRejected(Exception):
    """Raised by readers/validators: the file cannot be ingested for the reasons in ``findings``."""

    def __init__(self, findings: list[Finding]):
        if not findings:
            raise ValueError("FileRejected needs at least one finding")
        self.findings = list(findings)
        super().__init__("; ".join(str(f) for f in self.findings[:5]))


def capped(findings: list[Finding], limit: int) -> list[Finding]:
    """Keep at most ``limit`` findings per (file, rule); add one summary finding counting the rest."""
    kept: list[Finding] = []
    counts: dict[tuple[str, str], int] = {}
    for f in findings:
        key = (f.file, f.rule)
        counts[key] = counts.get(key, 0) + 1
        if counts[key] <= limit:
            kept.append(f)
    for (file, rule), n in counts.items():
        if n > limit:
            severity = next(f.severity for f in findings if f.file == file and f.rule == rule)
            kept.append(Finding(file, rule, f"... and {n - limit} more {rule!r} findings in this file", severity=severity))
    return kept
