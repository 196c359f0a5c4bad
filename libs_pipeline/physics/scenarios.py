"""Trust-testing scenarios: named, graded changes of CampaignConfig parameters (no separate simulation code).

Each scenario x severity is a small table of parameter edits applied once by ``apply_scenario``:
``scale`` multiplies, ``add`` adds, ``set`` replaces, ``merge`` adds dict entries. The interferent is
vanadium: libskit's bundled database has no strong line within 0.1 nm of Cu I 324.75/327.40 (Ca I 327.47
is 0.07 nm away but Stark-broad (0.85 nm) and weak: 8 wt% Ca raised the +-0.3 nm Cu I 327.40 window of a
0.05 wt% Cu alloy by only 5 %), whereas V II 327.11/327.61 (air, 0.28/0.22 nm away) fall inside the
Cu I 327.40 window and blend with it at 0.25 nm resolution (0.5 wt% V: x5 on that window at 0.05 wt% Cu).
"""

from __future__ import annotations

from typing import Any

from libs_pipeline.config import CampaignConfig

SEVERITIES = ("mild", "strong")

SCENARIOS: dict[str, dict[str, dict[str, tuple[str, Any]]]] = {
    "nominal": {"mild": {}, "strong": {}},
    # hotter plasma (e.g. other gate delay / focusing): line ratios and ionisation balance change
    "temperature_shift": {
        "mild": {"temperature_K": ("scale", 1.05)},
        "strong": {"temperature_K": ("scale", 1.15)},
    },
    # less ablated mass, cooler and thinner plasma
    "low_laser_energy": {
        "mild": {"intensity_factor_median": ("scale", 0.6), "temperature_K": ("scale", 0.96),
                 "electron_density_per_m3": ("scale", 0.8)},
        "strong": {"intensity_factor_median": ("scale", 0.3), "temperature_K": ("scale", 0.9),
                   "electron_density_per_m3": ("scale", 0.5)},
    },
    # wavelength-calibration error: ~1 and ~3 channels of the default grid (0.1465 nm/channel)
    "wavelength_shift": {
        "mild": {"wavelength_shift_nm": ("add", 0.15)},
        "strong": {"wavelength_shift_nm": ("add", 0.45)},
    },
    # same analyte contents in an iron matrix
    "steel_matrix": {
        "mild": {"matrix": ("set", "low_alloy_steel")},
        "strong": {"matrix": ("set", "stainless_steel")},
    },
    # an unexpected element with lines on the Cu I 327.40 window
    "interfering_element": {
        "mild": {"interferent": ("merge", {"V": 0.1})},
        "strong": {"interferent": ("merge", {"V": 0.5})},
    },
    # detector sensitivity drop (ageing intensifier / changed gain setting)
    "gain_change": {
        "mild": {"gain_counts_per_electron": ("scale", 0.8)},
        "strong": {"gain_counts_per_electron": ("scale", 0.5)},
    },
}


def scenario_names() -> list[str]:
    return list(SCENARIOS)


def scenario_edits(scenario: str, severity: str) -> dict[str, tuple[str, Any]]:
    """The parameter edits of one scenario x severity (``{field: (op, value)}``)."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; known: {scenario_names()}")
    if severity not in SEVERITIES:
        raise ValueError(f"unknown severity {severity!r}; use one of {SEVERITIES}")
    return dict(SCENARIOS[scenario][severity])


def scenario_config(base: CampaignConfig, scenario: str, severity: str = "mild") -> CampaignConfig:
    """``base`` labelled with a scenario (replacing any it had); ``simulate_campaign`` applies the edits."""
    scenario_edits(scenario, severity)
    return CampaignConfig.model_validate({**base.model_dump(), "scenario": scenario, "severity": severity})


def apply_scenario(config: CampaignConfig) -> CampaignConfig:
    """The physical parameters once the scenario's edits are applied (returned with scenario 'nominal')."""
    values = config.model_dump()
    for field, (op, value) in scenario_edits(config.scenario, config.severity).items():
        if op == "scale":
            values[field] = values[field] * value
        elif op == "add":
            values[field] = values[field] + value
        elif op == "set":
            values[field] = value
        elif op == "merge":
            merged = dict(values[field])
            for key, extra in value.items():
                merged[key] = merged.get(key, 0.0) + extra
            values[field] = merged
        else:  # pragma: no cover - table is static
            raise ValueError(f"scenario table: unknown op {op!r}")
    values["scenario"] = "nominal"
    values["severity"] = "mild"
    return CampaignConfig.model_validate(values)


def base_config(config: CampaignConfig) -> CampaignConfig:
    """``config`` without its scenario: the instrument set-up the exposure is calibrated on."""
    return CampaignConfig.model_validate({**config.model_dump(), "scenario": "nominal", "severity": "mild"})
