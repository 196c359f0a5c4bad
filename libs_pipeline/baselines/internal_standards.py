"""Default internal-standard lines for rocks and silicates (matrix elements), for line-ratio normalisation.

Checked on the OREAS pellet spectra (this spectrometer, ~0.05-0.13 nm per channel, saturation ~38 000
counts): every line below peaks below 28 000 counts in all 70 shots and its background windows sit on
flat continuum. Left out because they saturate there: Ca II 393.37/396.85, Ca I 422.67, Al I 394.40/396.15,
Mg II 279.55/280.27, Mg I 383.8, Na I 589.0/589.6; Mg I 518.36 peaks at ~35 000 (too close). O I 777.4 is
partly air oxygen but is the most constant matrix line across silicates, so it is offered too.
"""

from __future__ import annotations

from libs_pipeline.features.lines import LineWindow


def _line(name: str, element: str, center: float, window: tuple[float, float], *bg: tuple[float, float]) -> LineWindow:
    return LineWindow(name=name, element=element, center_nm=center, window_nm=window, background_nm=bg)


ROCK_INTERNAL_STANDARDS: tuple[LineWindow, ...] = (
    _line("Si I 288.16", "Si", 288.158, (287.95, 288.5), (286.55, 286.8), (289.6, 290.0)),
    _line("Al I 308.22", "Al", 308.215, (308.05, 308.45), (306.9, 307.05), (308.55, 308.7)),
    _line("Al I 309.27", "Al", 309.271, (309.05, 309.6), (308.55, 308.7), (310.15, 310.35)),
    _line("Ca II 317.93", "Ca", 317.933, (317.6, 318.25), (317.05, 317.3), (318.7, 318.85)),
    _line("Fe I 404.58", "Fe", 404.581, (404.35, 404.8), (403.65, 403.95), (404.95, 405.25)),
    _line("Mg I 285.21", "Mg", 285.213, (285.05, 285.45), (283.7, 283.8), (285.95, 286.15)),
    _line("K I 766.49", "K", 766.49, (765.9, 767.1), (764.3, 764.8), (768.0, 768.7)),
    _line("O I 777.4", "O", 777.4, (776.8, 778.0), (775.2, 775.6), (779.0, 779.6)),
)


def default_internal_standards() -> list[LineWindow]:
    """The rock/silicate internal-standard lines above (each one a separate normalisation candidate)."""
    return list(ROCK_INTERNAL_STANDARDS)
