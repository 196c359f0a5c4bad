"""Human-readable reasons for a flag, built from the score parts ("Cu 327.4 nm area 6.1σ below prediction")."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

MAX_REASONS = 3


def _fmt(value: float, units: str | None) -> str:
    return f"{value:.3g} {units}" if units else f"{value:.3g}"


def part_reason(
    part: str,
    z: float,
    *,
    line_labels: Mapping[str, str],
    analyte: str,
    units: str | None,
    predicted: float,
    implied: float,
) -> str:
    """One part's reason; ``part`` is ``aux:<line>`` or ``cons:<line>``."""
    kind, _, line = part.partition(":")
    label = line_labels.get(line, line)
    if not np.isfinite(z):
        if not np.isfinite(predicted):
            return f"model output for {analyte} is not a finite number"
        return f"{label} area could not be measured or predicted"
    side = "below" if z < 0 else "above"
    if kind == "aux":
        return f"{label} area {abs(z):.1f}σ {side} prediction"
    if kind == "cons":
        return (
            f"predicted {analyte} {_fmt(predicted, units)} is {abs(z):.1f}σ {side} "
            f"the {_fmt(implied, units)} implied by the {label} area"
        )
    raise ValueError(f"unknown trust part {part!r} (expected 'aux:<line>' or 'cons:<line>')")


def explain(
    z_by_part: Mapping[str, float],
    *,
    line_labels: Mapping[str, str],
    analyte: str,
    units: str | None,
    predicted: float,
    implied: Mapping[str, float],
    reason_z: float = 3.0,
) -> tuple[str, str]:
    """(reason, top part): the parts with |z| >= ``reason_z`` (largest first, at most 3), else the largest one.

    Non-finite parts (a line that could not be measured) come first: they are why the score is infinite.
    """
    if not z_by_part:
        raise ValueError("explain: no parts given")

    def key(item: tuple[str, float]) -> float:
        z = item[1]
        return np.inf if not np.isfinite(z) else abs(z)

    ranked = sorted(z_by_part.items(), key=key, reverse=True)
    chosen = [(p, z) for p, z in ranked if not np.isfinite(z) or abs(z) >= reason_z][:MAX_REASONS] or ranked[:1]
    texts = [
        part_reason(
            p,
            z,
            line_labels=line_labels,
            analyte=analyte,
            units=units,
            predicted=predicted,
            implied=implied.get(p.partition(":")[2], np.nan),
        )
        for p, z in chosen
    ]
    return "; ".join(dict.fromkeys(texts)), chosen[0][0]
