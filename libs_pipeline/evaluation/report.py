"""Markdown report (one row per method) and Prefect-artifact helpers (rows as list of dicts, safe keys).

The library builds the content; flows publish it with ``create_table_artifact`` /
``create_markdown_artifact`` (this module does not import Prefect).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

import pandas as pd

# Columns of the summary (method is the index); full tables keep every column of evaluate_methods.
SUMMARY_COLUMNS = (
    "n_samples",
    "sample_rmsep",
    "sample_mae",
    "sample_bias",
    "sample_r2",
    "sample_rel_rmse",
    "n_spectra",
    "spectrum_rmsep",
    "spectrum_r2",
    "spectrum_bp_p",
    "spectrum_spread_low",
    "spectrum_spread_mid",
    "spectrum_spread_high",
)

_KEY_RE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


def artifact_key(*parts: object) -> str:
    """Prefect artifact key from parts: lowercase letters, digits and single dashes (e.g. 'evaluation-run-1')."""
    text = "-".join(str(p) for p in parts)
    key = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    if not key:
        raise ValueError(f"artifact key from {parts!r} is empty after keeping [a-z0-9-]")
    return key


def is_artifact_key(key: str) -> bool:
    """True for keys Prefect accepts here: lowercase letters, digits, single dashes."""
    return bool(_KEY_RE.match(key))


def _cell(value: object, digits: int) -> object:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value
    try:
        f = float(value)  # numpy scalars too
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(f):
        return None
    if isinstance(value, float):  # python and numpy float64
        return float(f"{f:.{digits}g}")
    if f.is_integer() and abs(f) < 2**53 and "int" in type(value).__name__:
        return int(f)
    return float(f"{f:.{digits}g}")


def table_rows(table: pd.DataFrame, columns: Sequence[str] | None = None, digits: int = 4) -> list[dict]:
    """JSON-safe rows (method first; NaN -> None; floats to ``digits`` significant digits) for a table artifact."""
    cols = list(table.columns if columns is None else [c for c in columns if c in table.columns])
    rows = []
    for method, record in zip(table.index, table[cols].to_dict("records")):  # keeps each column's dtype
        out: dict[str, object] = {"method": str(method)}
        out.update({c: _cell(record[c], digits) for c in cols})
        rows.append(out)
    return rows


def _fmt(value: object, digits: int) -> str:
    cell = _cell(value, digits)
    return "n/a" if cell is None else str(cell)


def markdown_table(table: pd.DataFrame, columns: Sequence[str] | None = None, digits: int = 4) -> str:
    """GitHub-flavoured markdown table, one row per method."""
    rows = table_rows(table, columns, digits)
    if not rows:
        raise ValueError("table is empty: no method to report")
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_fmt(r[h], digits) for h in header) + " |" for r in rows]
    return "\n".join(lines)


def markdown_report(
    table: pd.DataFrame,
    title: str,
    units: str = "",
    figures: Mapping[str, str] | None = None,
    facts: Mapping[str, object] | None = None,
    notes: Sequence[str] = (),
) -> str:
    """The evaluation report: facts (dataset, split, ...), the summary table, figures (caption -> relative path), notes."""
    parts = [f"# {title}", ""]
    if facts:
        parts += [f"- **{k}**: {v}" for k, v in facts.items()] + [""]
    parts += [
        f"Metrics in {units or 'label units'} (rel_rmse and r2 dimensionless). `sample_*`: each held-out sample's "
        "mean prediction over its shots; `spectrum_*`: single shots. `bp_p`: Breusch-Pagan p-value (small = "
        "error grows or shrinks with concentration); `spread_*`: residual std per concentration tertile.",
        "",
        markdown_table(table, SUMMARY_COLUMNS),
        "",
    ]
    for caption, rel in (figures or {}).items():
        parts += [f"![{caption}]({rel})", ""]
    if notes:
        parts += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(parts)
