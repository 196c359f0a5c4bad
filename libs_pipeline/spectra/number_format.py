"""Column delimiter and decimal mark of a text table, detected from one data line.

Handles the locales instrument software writes: ``1.5,2.5`` (comma-separated), ``1,5;2,5`` (semicolons
with decimal comma, e.g. German/French Windows), tab- or space-separated with either decimal mark.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_DECIMAL_COMMA_CELL = re.compile(r"^[+-]?\d+,\d+([eE][+-]?\d+)?$")


@dataclass(frozen=True)
class NumberFormat:
    """``delimiter`` None = runs of whitespace; ``decimal`` is '.' or ','."""

    delimiter: str | None
    decimal: str = "."

    def split(self, line: str) -> list[str]:
        cells = line.split(self.delimiter) if self.delimiter else line.split()
        if self.decimal == ",":
            cells = [c.replace(",", ".") for c in cells]
        return cells

    def describe(self) -> str:
        names = {",": "comma", ";": "semicolon", "\t": "tab", None: "whitespace"}
        mark = "decimal comma" if self.decimal == "," else "decimal point"
        return f"{names.get(self.delimiter, repr(self.delimiter))}-separated, {mark}"


def _decimal_comma(cells: list[str]) -> bool:
    numeric = [c.strip() for c in cells if c.strip()]
    return bool(numeric) and sum(bool(_DECIMAL_COMMA_CELL.match(c)) for c in numeric) >= max(1, len(numeric) // 2)


def detect_number_format(line: str) -> NumberFormat:
    """Delimiter and decimal mark of ``line``: ';' or tab first, then ',' (or decimal comma), then whitespace."""
    for delim in (";", "\t"):
        if delim in line:
            cells = line.split(delim)
            return NumberFormat(delim, "," if _decimal_comma(cells) else ".")
    if "," in line:
        spaced = line.split()
        if len(spaced) >= 2 and _decimal_comma(spaced):
            return NumberFormat(None, ",")
        return NumberFormat(",", ".")
    return NumberFormat(None, ".")
