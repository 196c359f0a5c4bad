"""Human-readable reasons for a flag, built from the score parts ("Cu I 327.40 area 6.1σ below prediction")."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from libs_pipeline.trust.calibration import TrustCalibration

MAX_REASONS = 3
LINE_PARTS = ("aux", "cons")


def _fmt(value: float, units: str | None) -> str:
    return f"{value:.3g} {units}" if units else f"{value:.3g}"


def part_reason(part: str, z: float, row: Mapping[str, float], calibration: TrustCalibration) -> str:
    """One part's reason; ``row`` holds the part's details (``prediction``, ``implied:<line>``, ...)."""
    kind, _, name = part.partition(":")
    analyte, units = calibration.analyte, calibration.units
    predicted = float(row.get("prediction", np.nan))
    side = "below" if z < 0 else "above"
    if kind in ("aux", "cons"):
        label = calibration.line_labels.get(name, name)
        if not np.isfinite(z):
            if not np.isfinite(predicted):
                return f"model output for {analyte} is not a finite number"
            return f"{label} area could not be measured or predicted"
        if kind == "aux":
            return f"{label} area {abs(z):.1f}σ {side} prediction"
        implied = float(row.get(f"implied:{name}", np.nan))
        return (
            f"predicted {analyte} {_fmt(predicted, units)} is {abs(z):.1f}σ {side} "
            f"the {_fmt(implied, units)} implied by the {label} area"
        )
    if not np.isfinite(z):
        return f"{part} could not be evaluated (non-finite measurement or model output)"
    if kind == "intensity":
        ratio = float(row.get("intensity_ratio", np.nan))
        return f"intensity {ratio:.2f}x the level expected from the model outputs ({z:+.1f}σ; gain, laser energy or light collection changed?)"
    if kind == "plasma":
        value = float(row.get(f"value:{name}", np.nan))
        typical = calibration.plasma_scales[name].center
        return f"predicted {name} {value:.4g} is {abs(z):.1f}σ {side} its in-distribution median {typical:.4g}"
    if kind == "wavelength":
        nm = float(row.get("wavelength_offset_nm", np.nan))
        return f"wavelength axis shifted by {nm:+.3f} nm ({abs(z):.1f}σ; recalibrate the spectrometer?)"
    if kind == "shape":
        corr = float(row.get("spectral_correlation", np.nan))
        return f"spectrum shape unlike the training spectra (correlation {corr:.3f}, {abs(z):.1f}σ; other matrix or contamination?)"
    if kind == "noise":
        ratio = float(row.get("noise_per_count_ratio", np.nan))
        return (f"shot noise per count {ratio:.2f}x the training level ({z:+.1f}σ; detector gain changed, or "
                "spectra resampled from another instrument?)")
    if kind == "spread":
        spread = float(row.get("ensemble_spread", np.nan))
        return (f"the ensemble's networks disagree: spread {_fmt(spread, units)} of {analyte} "
                f"({z:+.1f}σ above in-distribution; the spectrum is unlike what they learned from)")
    raise ValueError(f"unknown trust part {part!r}")


def explain(
    z_by_part: Mapping[str, float], row: Mapping[str, float], calibration: TrustCalibration
) -> tuple[str, str]:
    """(reason, top part): the parts with |z| >= ``calibration.reason_z`` (at most 3), else the largest one.

    Non-finite parts (e.g. a line that could not be measured) come first; then instrument-state parts
    (intensity, plasma, wavelength, shape), since a changed instrument also moves the line parts; then the
    line parts. Within each group the largest |z| comes first.
    """
    if not z_by_part:
        raise ValueError("explain: no parts given")

    def key(item: tuple[str, float]) -> tuple[int, float]:
        part, z = item
        if not np.isfinite(z):
            return (2, np.inf)
        line_part = part.partition(":")[0] in LINE_PARTS
        return (0 if line_part else 1, abs(z))

    ranked = sorted(z_by_part.items(), key=key, reverse=True)
    chosen = [(p, z) for p, z in ranked if not np.isfinite(z) or abs(z) >= calibration.reason_z][:MAX_REASONS]
    if not chosen:
        chosen = [max(z_by_part.items(), key=lambda item: abs(item[1]))]
    texts = [part_reason(p, z, row, calibration) for p, z in chosen]
    return "; ".join(dict.fromkeys(texts)), chosen[0][0]
