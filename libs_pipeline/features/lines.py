"""Emission-line windows: where a line is integrated and where its local background is measured.

A small table per analyte gives sensible defaults (Cu in Al alloys, Na in rocks); configs override
them with plain dicts (``LineWindow.from_dict``), and models store them with ``to_dict``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class LineWindow:
    """One emission line (or unresolved multiplet): integration window and background windows, in nm."""

    name: str
    element: str
    center_nm: float
    window_nm: tuple[float, float]
    background_nm: tuple[tuple[float, float], ...]

    def __post_init__(self) -> None:
        # Normalise sequences given as lists (e.g. from YAML/JSON) to hashable tuples.
        object.__setattr__(self, "window_nm", tuple(float(v) for v in self.window_nm))
        object.__setattr__(
            self, "background_nm", tuple(tuple(float(v) for v in bg) for bg in self.background_nm)
        )
        where = f"line {self.name!r}"
        if not self.name or ":" in self.name:
            raise ValueError(f"{where}: name must be non-empty and must not contain ':'")
        if not self.element:
            raise ValueError(f"{where}: element must be non-empty")
        values = (self.center_nm, *self.window_nm, *(v for bg in self.background_nm for v in bg))
        if not all(math.isfinite(float(v)) for v in values):
            raise ValueError(f"{where}: all wavelengths must be finite numbers")
        if len(self.window_nm) != 2 or not self.window_nm[0] < self.window_nm[1]:
            raise ValueError(f"{where}: window_nm must be (low, high) with low < high, got {self.window_nm}")
        lo, hi = self.window_nm
        if not lo <= self.center_nm <= hi:
            raise ValueError(f"{where}: center_nm {self.center_nm} lies outside window_nm {self.window_nm}")
        if not self.background_nm:
            raise ValueError(f"{where}: background_nm needs at least one (low, high) window")
        for bg in self.background_nm:
            if len(bg) != 2 or not bg[0] < bg[1]:
                raise ValueError(f"{where}: background window {bg} must be (low, high) with low < high")
            if bg[0] < hi and bg[1] > lo:
                raise ValueError(f"{where}: background window {bg} overlaps the line window {self.window_nm}")

    @property
    def span_nm(self) -> tuple[float, float]:
        """Smallest interval holding the line window and all background windows."""
        edges = [*self.window_nm, *(v for bg in self.background_nm for v in bg)]
        return min(edges), max(edges)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (lists, not tuples) that ``from_dict`` reads back."""
        return {
            "name": self.name,
            "element": self.element,
            "center_nm": float(self.center_nm),
            "window_nm": list(self.window_nm),
            "background_nm": [list(bg) for bg in self.background_nm],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LineWindow:
        """Build from a dict with exactly the fields of ``to_dict``; unknown or missing keys are an error."""
        fields = ("name", "element", "center_nm", "window_nm", "background_nm")
        unknown = sorted(set(data) - set(fields))
        missing = [f for f in fields if f not in data]
        label = data.get("name", "<unnamed>") if isinstance(data, Mapping) else "<not a mapping>"
        if unknown or missing:
            raise ValueError(f"line {label!r}: unknown keys {unknown}, missing keys {missing}")
        return cls(
            name=str(data["name"]),
            element=str(data["element"]),
            center_nm=float(data["center_nm"]),
            window_nm=tuple(data["window_nm"]),
            background_nm=tuple(tuple(bg) for bg in data["background_nm"]),
        )


# Cu in Al alloys. Windows are ~0.9 nm wide so that both air (324.754 / 327.396) and vacuum
# (324.847 / 327.490) wavelengths of the resonance lines fall well inside, at FWHM 0.1-0.25 nm on
# grids of 0.15-0.2 nm per channel. Background windows sit >= 0.8 nm from the line centres (clear of
# the self-absorbed lines' wings in the virtual campaign) and avoid Ar II 325.07 (argon plasmas),
# V II 326.86/327.21/327.71, Ag I 328.07 and the Zn I 328.23 wing (Zn-rich alloys).
_CU_LINES = (
    LineWindow(
        name="Cu I 324.75",
        element="Cu",
        center_nm=324.754,
        window_nm=(324.35, 325.25),
        background_nm=((323.3, 323.95), (325.55, 326.1)),
    ),
    LineWindow(
        name="Cu I 327.40",
        element="Cu",
        center_nm=327.396,
        window_nm=(327.0, 327.9),
        background_nm=((326.2, 326.6), (328.5, 328.95)),
    ),
)

# Na in rocks: Na I 589.0/589.6 saturates at high Na, so the 818.3/819.5 doublet is used as one
# window (817.8-820.2 nm, the reference univariate window). N I 818.49/818.80 (air plasma) sits
# inside it and adds a roughly constant offset. Background: 814.0-815.5 nm (flat in the OREAS
# spectra, clear of Li I 812.85) and 820.35-820.8 nm (between N I/Ca II ~820.1 and N I 821.07).
_NA_LINES = (
    LineWindow(
        name="Na I 818.3+819.5",
        element="Na",
        center_nm=818.9,
        window_nm=(817.8, 820.2),
        background_nm=((814.0, 815.5), (820.35, 820.8)),
    ),
)

_DEFAULT_LINES: dict[str, tuple[LineWindow, ...]] = {"Cu": _CU_LINES, "Na": _NA_LINES}


def known_analytes() -> list[str]:
    """Analytes with a default line table."""
    return sorted(_DEFAULT_LINES)


def default_lines(analyte: str) -> list[LineWindow]:
    """Default line table of ``analyte`` (first line = the univariate calibration line)."""
    try:
        return list(_DEFAULT_LINES[analyte])
    except KeyError:
        raise ValueError(
            f"no default emission lines for analyte {analyte!r}; known: {known_analytes()}; "
            "give the lines explicitly (LineWindow.from_dict)"
        ) from None


def resolve_lines(
    analyte: str, overrides: Sequence[Mapping[str, Any] | LineWindow] | None = None
) -> list[LineWindow]:
    """The configured lines of ``analyte``: ``overrides`` (dicts or LineWindow) if given, else the defaults."""
    if overrides is None:
        return default_lines(analyte)
    lines = [ln if isinstance(ln, LineWindow) else LineWindow.from_dict(ln) for ln in overrides]
    if not lines:
        raise ValueError(f"analyte {analyte!r}: the line list override is empty")
    check_unique_names(lines)
    return lines


def check_unique_names(lines: Iterable[LineWindow]) -> None:
    """Feature columns are keyed by line name, so names must be unique."""
    seen: set[str] = set()
    for line in lines:
        if line.name in seen:
            raise ValueError(f"line name {line.name!r} is used more than once")
        seen.add(line.name)
