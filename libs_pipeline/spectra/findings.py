"""What ingest found wrong with an input: file, line/column or coordinate, rule, reason (errors and warnings).

Reports carry one finding per (file, rule, severity): the first occurrence's reason and position, how many
times the rule fired, and the last position (``grouped``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Literal


def quoted(value: object) -> str:
    """A value in plain words for a message: ``'S1'`` for text, never a Python repr such as ``np.str_('S1')``."""
    return f"'{value}'"


def number(value: float) -> str:
    """A number in plain words for a message (``4672.94``, never ``np.float64(4672.94)``)."""
    return f"{float(value):.10g}"


@dataclass(frozen=True)
class Finding:
    """One problem with one input file; ``severity="error"`` means the file was not ingested.

    ``count`` > 1: the same rule fired that many times in the file; ``last_*`` give the last position.
    """

    file: str
    rule: str
    reason: str
    line: int | None = None
    column: int | None = None
    coordinate: str | None = None
    severity: Literal["error", "warning"] = "error"
    count: int = 1
    last_line: int | None = None
    last_column: int | None = None
    last_coordinate: str | None = None

    @staticmethod
    def _where(line: int | None, column: int | None, coordinate: str | None) -> str:
        parts = []
        if line is not None:
            parts.append(f"line {line}" + (f" column {column}" if column is not None else ""))
        if coordinate:
            parts.append(coordinate)
        return ", ".join(parts)

    def first_at(self) -> str:
        """Where the rule first fired, in words ('line 5 column 1, spectrum 0 ...'); '' when not located."""
        return self._where(self.line, self.column, self.coordinate)

    def last_at(self) -> str:
        """Where the rule last fired ('' when it fired once)."""
        return self._where(self.last_line, self.last_column, self.last_coordinate) if self.count > 1 else ""

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        at = f" (at {self.coordinate})" if self.coordinate else ""
        text = f"{where}: [{self.rule}] {self.reason}{at}"
        if self.count > 1:
            last = self.last_at()
            text += f"; {self.count} times in this file" + (f", last at {last}" if last else "")
        return text

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


def grouped(findings: list[Finding]) -> list[Finding]:
    """One finding per (file, rule, severity): the first one, with ``count`` and the last one's position."""
    order: list[tuple[str, str, str]] = []
    groups: dict[tuple[str, str, str], list[Finding]] = {}
    for f in findings:
        key = (f.file, f.rule, f.severity)
        if key not in groups:
            order.append(key)
            groups[key] = []
        groups[key].append(f)
    out = []
    for key in order:
        group = groups[key]
        first, last = group[0], group[-1]
        if len(group) == 1:
            out.append(first)
            continue
        total = sum(f.count for f in group)
        tail_line = last.last_line if last.count > 1 else last.line
        tail_col = last.last_column if last.count > 1 else last.column
        tail_coord = last.last_coordinate if last.count > 1 else last.coordinate
        out.append(replace(first, count=total, last_line=tail_line, last_column=tail_col, last_coordinate=tail_coord))
    return out

