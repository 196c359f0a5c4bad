"""Prefect events of the pipeline: what the deployment triggers (prefect.yaml) and the alerts (deployments/alerts.py)
react to. One place for the event names and resource ids, so emitters and triggers never disagree.

- ``libs-pipeline.spectra.version-created`` (resource ``libs-pipeline.spectra.<dataset>``): ingest created a
  spectra version; payload: dataset, version, parent, store, uri, n_spectra, n_new_spectra, accepted/rejected files.
- ``libs-pipeline.model.champion-changed`` (resource ``libs-pipeline.model.<model>``): recalibration promoted a
  challenger; payload: model, version, previous, reason, spectra.
- ``libs-pipeline.model.degraded-champion-kept`` (resource ``libs-pipeline.model.<model>``): recalibration kept a
  champion that no longer meets the promotion policy on the new data; payload: model, champion, reasons, metrics.
"""

from __future__ import annotations

import math

from prefect.events import Event, emit_event

from libs_pipeline.spectra.location import open_location

SPECTRA_VERSION_CREATED = "libs-pipeline.spectra.version-created"
CHAMPION_CHANGED = "libs-pipeline.model.champion-changed"
DEGRADED_CHAMPION_KEPT = "libs-pipeline.model.degraded-champion-kept"
BASELINES = ("univariate", "pls")


def spectra_resource(dataset: str) -> str:
    return f"libs-pipeline.spectra.{dataset}"


def model_resource(model: str) -> str:
    return f"libs-pipeline.model.{model}"


def emit_spectra_version(store: str, outcome: dict) -> Event | None:
    """The ingest created ``outcome['version']`` of ``outcome['name']`` in ``store`` (counts in the payload)."""
    dataset = outcome["name"]
    payload = {
        "dataset": dataset,
        "version": outcome["version"],
        "parent": outcome.get("parent"),
        "store": open_location(store, check=False).url,  # absolute path, or the credential-free URL
        "uri": outcome.get("uri"),
        "status": outcome["status"],
        "n_spectra": outcome["n_spectra"],
        "n_new_spectra": outcome["n_new_spectra"],
        "n_files_accepted": outcome["n_files_accepted"],
        "n_files_rejected": outcome["n_files_rejected"],
    }
    return emit_event(
        SPECTRA_VERSION_CREATED,
        resource={"prefect.resource.id": spectra_resource(dataset), "prefect.resource.name": dataset,
                  "libs-pipeline.version": str(outcome["version"])},
        payload=payload,
    )


def emit_champion_changed(outcome: dict) -> Event | None:
    """The recalibration run promoted its challenger to champion."""
    model = outcome["model_name"]
    return emit_event(
        CHAMPION_CHANGED,
        resource={"prefect.resource.id": model_resource(model), "prefect.resource.name": model,
                  "libs-pipeline.version": str(outcome["champion_after"])},
        payload={"model": model, "version": outcome["champion_after"], "previous": outcome.get("champion_before"),
                 "reason": outcome.get("reason"), "spectra": outcome.get("spectra")},
    )


def degradation_reasons(metrics: dict, max_flag_rate: float | None, champion_key: str = "champion") -> list[str]:
    """Why the champion no longer meets the promotion policy on the new data (empty when it does): its RMSEP is
    not finite, its in-distribution flag rate is above ``max_flag_rate``, or a baseline beats it on the same
    samples. ``metrics``: the run's metrics per method (``champion_key``, ``univariate``, ``pls``, ...)."""
    champion = metrics.get(champion_key)
    if not champion:
        return []
    reasons = []
    rmsep, flag_rate = champion.get("rmsep"), champion.get("flag_rate")
    if rmsep is None or not math.isfinite(float(rmsep)):
        reasons.append(f"champion RMSEP on the new data is {rmsep}")
    if flag_rate is not None and max_flag_rate is not None and not float(flag_rate) <= max_flag_rate:
        reasons.append(f"champion flags {float(flag_rate):.1%} of in-distribution spectra, above the target "
                       f"{max_flag_rate:.1%}")
    for baseline in (b for b in BASELINES if b != champion_key):
        other = (metrics.get(baseline) or {}).get("rmsep")
        if rmsep is not None and other is not None and math.isfinite(float(rmsep)) and float(other) < float(rmsep):
            reasons.append(f"{baseline} baseline RMSEP {float(other):.4g} beats the champion's {float(rmsep):.4g}")
    return reasons


def announce_decision(outcome: dict, decision_details: dict) -> Event | None:
    """After a recalibration decision: ``champion-changed`` when it promoted, ``degraded-champion-kept`` when it
    kept a champion that fails the policy on the new data (``decision_details``: the Decision's details, with
    ``max_flag_rate`` and, for leave-one-sample-out, ``champion_family``); None otherwise."""
    if outcome["status"] == "promoted":
        return emit_champion_changed(outcome)
    if outcome["status"] != "kept-champion":
        return None
    metrics = outcome.get("metrics") or {}
    key = "champion" if "champion" in metrics else decision_details.get("champion_family", "champion")
    reasons = degradation_reasons(metrics, decision_details.get("max_flag_rate"), key)
    return emit_degraded_champion(outcome, reasons, key) if reasons else None


def emit_degraded_champion(outcome: dict, reasons: list[str], champion_key: str = "champion") -> Event | None:
    """The recalibration run kept a champion that fails the promotion policy on the new data (``reasons``)."""
    model = outcome["model_name"]
    return emit_event(
        DEGRADED_CHAMPION_KEPT,
        resource={"prefect.resource.id": model_resource(model), "prefect.resource.name": model,
                  "libs-pipeline.version": str(outcome["champion_after"])},
        payload={"model": model, "champion": outcome["champion_after"], "reasons": reasons,
                 "reason": outcome.get("reason"), "spectra": outcome.get("spectra"),
                 "metrics": _plain((outcome.get("metrics") or {}).get(champion_key) or {})},
    )


def _plain(metrics: dict) -> dict:
    """The scalar entries of ``metrics`` as JSON numbers/strings (event payloads are JSON)."""
    out = {}
    for key, value in metrics.items():
        if isinstance(value, bool) or value is None or isinstance(value, str):
            out[key] = value
        elif isinstance(value, (int, float)) or hasattr(value, "__float__"):
            out[key] = float(value) if math.isfinite(float(value)) else None
    return out
