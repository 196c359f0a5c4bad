"""Which reader fits a text file, decided from its content (the manifest may still name one explicitly).

``spectrum_rows``: the first line is a header whose cells after some text columns (sample, shot, ...) are
wavelengths in nm. ``shot_columns``: otherwise (first column wavelengths, one column per shot).
"""

from __future__ import annotations

from libs_pipeline.spectra.number_format import detect_number_format
from libs_pipeline.spectra.schemas import WAVELENGTH_RANGE_NM

#: The two text layouts (reader names).
SHOT_COLUMNS = "shot_columns"
SPECTRUM_ROWS = "spectrum_rows"
MIN_WAVELENGTH_HEADERS = 2


def _float(cell: str) -> float | None:
    try:
        return float(cell.strip())
    except ValueError:
        return None


def detect_layout(text: str) -> tuple[str, str]:
    """(reader, reason in plain words) for the text of a source file."""
    lines = [ln.strip() for ln in text.splitlines()]
    first = next((ln for ln in lines if ln and not ln.startswith("#")), "")
    cells = detect_number_format(first).split(first)
    values = [_float(c) for c in cells]
    n_text = next((i for i, v in enumerate(values) if v is not None), len(values))
    wavelengths = [v for v in values[n_text:] if v is not None]
    lo, hi = WAVELENGTH_RANGE_NM
    if (
        n_text >= 1
        and len(wavelengths) >= MIN_WAVELENGTH_HEADERS
        and len(wavelengths) == len(values) - n_text
        and all(lo <= v <= hi for v in wavelengths)
    ):
        names = ", ".join(c.strip() for c in cells[:n_text])
        return SPECTRUM_ROWS, (f"first line is a header: text column(s) {names} then {len(wavelengths)} wavelengths in nm "
                               "(one spectrum per row)")
    return SHOT_COLUMNS, "first column holds wavelengths, the other columns one shot each"
