"""Certified compositions of virtual reference samples: matrix recipes, analyte spread, interferents.

A sample table is a DataFrame with ``sample_id``, ``matrix`` and one column per element in wt%
(rows sum to 100). Values are rounded like certificates (3 significant digits; the balance element is the remainder).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class MatrixRecipe:
    """How a matrix's samples are drawn: a balance element plus alloying elements in wt% ranges."""

    name: str
    balance: str
    ranges: Mapping[str, tuple[float, float]]  # element -> (low, high) wt%, drawn log-uniformly
    reference: Mapping[str, float]  # typical composition (wt%, without the balance): exposure reference
    id_prefix: str


MATRICES: dict[str, MatrixRecipe] = {
    # wrought Al alloys (2xxx-7xxx families): Cu is the analyte, the rest vary independently
    "aluminium": MatrixRecipe(
        "aluminium",
        "Al",
        {"Mg": (0.2, 2.5), "Si": (0.05, 1.2), "Fe": (0.1, 0.8), "Zn": (0.02, 2.0), "Mn": (0.02, 1.0)},
        {"Cu": 1.0, "Mg": 1.0, "Si": 0.4, "Fe": 0.3, "Zn": 0.2, "Mn": 0.2},
        "AL",
    ),
    "low_alloy_steel": MatrixRecipe(
        "low_alloy_steel",
        "Fe",
        {"Cr": (0.5, 2.0), "Ni": (0.3, 2.0), "Mn": (0.5, 1.5), "Si": (0.15, 0.5)},
        {"Cu": 0.3, "Cr": 1.0, "Ni": 1.0, "Mn": 0.8, "Si": 0.3},
        "LS",
    ),
    "stainless_steel": MatrixRecipe(
        "stainless_steel",
        "Fe",
        {"Cr": (16.0, 19.0), "Ni": (8.0, 11.0), "Mn": (1.0, 2.0), "Si": (0.3, 0.8)},
        {"Cu": 0.3, "Cr": 18.0, "Ni": 9.0, "Mn": 1.5, "Si": 0.5},
        "SS",
    ),
    # silicate rock (oxygen balance): the major cations of a granite-to-basalt range
    "rock": MatrixRecipe(
        "rock",
        "O",
        {"Si": (20.0, 32.0), "Al": (5.0, 10.0), "Fe": (2.0, 8.0), "Ca": (1.0, 6.0), "Mg": (0.5, 3.0),
         "Na": (1.0, 3.0), "K": (1.0, 3.0), "Ti": (0.2, 1.0)},
        {"Cu": 0.1, "Si": 27.0, "Al": 8.0, "Fe": 5.0, "Ca": 3.5, "Mg": 1.5, "Na": 2.5, "K": 2.5, "Ti": 0.5},
        "RK",
    ),
}


def matrix_recipe(matrix: str) -> MatrixRecipe:
    try:
        return MATRICES[matrix]
    except KeyError:
        raise ValueError(f"unknown matrix {matrix!r}; known: {sorted(MATRICES)}") from None


def _round_sig(x: float, digits: int = 3) -> float:
    return float(f"{x:.{digits}g}")


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def _with_balance(row: dict[str, float], balance: str) -> dict[str, float]:
    rest = sum(v for k, v in row.items() if k != balance)
    if rest >= 100.0:
        raise ValueError(f"alloying elements sum to {rest:.3f} wt% >= 100: no room for the balance {balance}")
    return {**row, balance: round(100.0 - rest, 6)}


def _table(rows: list[dict[str, float]], ids: list[str], matrices: list[str]) -> pd.DataFrame:
    elements = sorted({e for r in rows for e in r})
    data = {"sample_id": ids, "matrix": matrices}
    for e in elements:
        data[e] = [float(r.get(e, 0.0)) for r in rows]
    return pd.DataFrame(data)


def analyte_levels(n: int, low: float, high: float, rng: np.random.Generator) -> np.ndarray:
    """Stratified log-uniform levels: one draw in each of ``n`` equal log-intervals of [low, high], ascending."""
    u = (np.arange(n) + rng.uniform(0.0, 1.0, size=n)) / n
    return np.exp(np.log(low) + u * (np.log(high) - np.log(low)))


def draw_compositions(
    matrix: str, n: int, analyte: str, analyte_range_wt: tuple[float, float], rng: np.random.Generator
) -> pd.DataFrame:
    """``n`` reference samples of ``matrix``: analyte spread over the range, other elements drawn independently."""
    recipe = matrix_recipe(matrix)
    if analyte == recipe.balance:
        raise ValueError(f"analyte {analyte!r} is the balance element of matrix {matrix!r}")
    levels = analyte_levels(n, *analyte_range_wt, rng)
    rows = []
    for level in levels:
        row = {e: _round_sig(_log_uniform(rng, lo, hi)) for e, (lo, hi) in recipe.ranges.items() if e != analyte}
        row[analyte] = _round_sig(float(level))
        rows.append(_with_balance(row, recipe.balance))
    ids = [f"{recipe.id_prefix}{i:02d}" for i in range(n)]
    return _table(rows, ids, [matrix] * n)


def reference_composition(matrix: str, analyte: str) -> dict[str, float]:
    """Typical sample of ``matrix`` (wt%, with balance) used to set the exposure; analyte at its typical level."""
    recipe = matrix_recipe(matrix)
    row = dict(recipe.reference)
    row.setdefault(analyte, 1.0)
    return _with_balance(row, recipe.balance)


def element_columns(samples: pd.DataFrame) -> list[str]:
    return [c for c in samples.columns if c not in ("sample_id", "matrix")]


def check_samples(samples: pd.DataFrame, analyte: str, known_elements: set[str] | None = None) -> pd.DataFrame:
    """Validate a sample table (ids, analyte column, numeric non-negative wt% summing to 100); returns a clean copy."""
    if not isinstance(samples, pd.DataFrame):
        raise TypeError(f"samples must be a pandas DataFrame, got {type(samples).__name__}")
    if "sample_id" not in samples.columns:
        raise ValueError("samples: missing column 'sample_id'")
    if samples.empty:
        raise ValueError("samples: the table has no rows")
    ids = samples["sample_id"].astype(str)
    dup = ids[ids.duplicated()].tolist()
    if dup:
        raise ValueError(f"samples: duplicate sample_id {sorted(set(dup))}")
    if analyte not in samples.columns:
        raise ValueError(f"samples: missing column for the analyte {analyte!r}")
    out = samples.copy()
    out["sample_id"] = ids
    if "matrix" not in out.columns:
        out["matrix"] = "unknown"
    out["matrix"] = out["matrix"].astype(str)
    for e in element_columns(out):
        if known_elements is not None and e not in known_elements:
            raise ValueError(f"samples: column {e!r} is not an element known to the atomic database")
        values = pd.to_numeric(out[e], errors="coerce")
        bad = out.loc[values.isna() | (values < 0), "sample_id"].tolist()
        if bad:
            raise ValueError(f"samples: column {e!r} must hold non-negative numbers (wt%); bad rows {bad}")
        out[e] = values.astype(float)
    totals = out[element_columns(out)].sum(axis=1)
    off = out.loc[(totals - 100.0).abs() > 0.5, "sample_id"].tolist()
    if off:
        raise ValueError(f"samples: compositions must sum to 100 wt% (+-0.5); rows {off} do not")
    return out.reset_index(drop=True)


def convert_matrix(samples: pd.DataFrame, matrix: str, analyte: str, rng: np.random.Generator) -> pd.DataFrame:
    """Same sample ids and analyte contents, but every other element re-drawn from ``matrix``'s recipe."""
    recipe = matrix_recipe(matrix)
    rows = []
    for level in samples[analyte].to_numpy(dtype=float):
        row = {e: _round_sig(_log_uniform(rng, lo, hi)) for e, (lo, hi) in recipe.ranges.items() if e != analyte}
        row[analyte] = float(level)
        rows.append(_with_balance(row, recipe.balance))
    return _table(rows, samples["sample_id"].astype(str).tolist(), [matrix] * len(rows))


def add_interferent(samples: pd.DataFrame, interferent: Mapping[str, float]) -> pd.DataFrame:
    """Add ``element: wt%`` to every sample, taken from each sample's largest (balance) element."""
    out = samples.copy()
    elements = element_columns(out)
    for element, wt in interferent.items():
        if element not in out.columns:
            out[element] = 0.0
        for i in range(len(out)):
            main = max(elements, key=lambda e: out.at[i, e])
            if main == element:
                raise ValueError(f"interferent {element!r} is the main element of sample {out.at[i, 'sample_id']!r}")
            if out.at[i, main] <= wt:
                raise ValueError(f"interferent {element!r} ({wt} wt%) exceeds the main element of a sample")
            out.at[i, element] = round(float(out.at[i, element]) + wt, 6)
            out.at[i, main] = round(float(out.at[i, main]) - wt, 6)
        elements = element_columns(out)
    return out


def mass_fractions(row: pd.Series) -> dict[str, float]:
    """One sample's composition as libskit mass fractions (non-zero elements, normalised to 1)."""
    values = {e: float(row[e]) for e in row.index if e not in ("sample_id", "matrix") and float(row[e]) > 0.0}
    total = sum(values.values())
    return {e: v / total for e, v in sorted(values.items())}
