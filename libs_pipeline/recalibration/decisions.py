"""Which comparison protocol a recalibration uses, and the promotion decision when candidates were compared by
leave-one-sample-out (the champion's family is re-evaluated on the same samples, not its old figure reused)."""

from __future__ import annotations

from libs_pipeline.evaluation.protocol import (
    MIN_HELDOUT_SAMPLES,
    MIN_SAMPLES_FOR_HELDOUT,
    heldout_count,
    use_nested_protocol,
)
from libs_pipeline.registry.promotion import Decision, decide_promotion


def choose_protocol(protocol: str, n_samples: int, heldout_fraction: float) -> tuple[str, str]:
    """('holdout' | 'loso', why) for ``n_samples`` labelled samples; ``protocol`` 'auto' applies the rule of
    ``evaluation.protocol.use_nested_protocol``."""
    if protocol in ("holdout", "loso"):
        return protocol, f"protocol {protocol!r} set in the configuration"
    if protocol != "auto":
        raise ValueError(f"protocol must be 'auto', 'holdout' or 'loso', got {protocol!r}")
    if n_samples < 3:
        return "loso", f"only {n_samples} labelled samples"
    k = heldout_count(n_samples, heldout_fraction)
    if use_nested_protocol(n_samples, heldout_fraction):
        return "loso", (
            f"{n_samples} labelled samples, a {heldout_fraction:.0%} held-out split would hold out {k}: fewer than "
            f"{MIN_SAMPLES_FOR_HELDOUT} samples or {MIN_HELDOUT_SAMPLES} held-out samples means nothing, so every "
            "candidate is compared by leave-one-sample-out"
        )
    return "holdout", f"{n_samples} labelled samples, {k} held out"


def champion_family(manifest: dict | None) -> str | None:
    """The candidate family a champion was (``metrics.candidate``; older champions are multitask CNNs)."""
    if manifest is None:
        return None
    metrics = manifest.get("metrics") or {}
    return metrics.get("candidate") or "multitask_aug"


def decide_loso_promotion(challenger: dict, champion_manifest: dict | None, candidate_metrics: dict, policy) -> Decision:
    """Promote the LOSO winner iff its flag rate is on target and it beats the champion's family re-evaluated by
    LOSO on the same samples; the same family refitted on new data or configuration replaces the champion."""
    if champion_manifest is None:
        return decide_promotion(challenger, None, policy)
    family = champion_family(champion_manifest)
    if family == challenger.get("candidate"):
        check = decide_promotion(challenger, None, policy)  # flag-rate and realism checks only
        if not check.promote:
            return check
        return Decision(
            True,
            f"the champion's family {family} is again the best by leave-one-sample-out (RMSEP "
            f"{challenger['rmsep']:.4g}); refitted on the new data version / configuration",
            {**check.details, "champion_family": family},
        )
    if family in candidate_metrics:
        decision = decide_promotion(challenger, candidate_metrics[family], policy)
        details = {**decision.details, "champion_family": family, "champion_rmsep_source": "loso on this version"}
        return Decision(decision.promote, decision.reason + f" (champion family {family} re-evaluated by "
                        "leave-one-sample-out on the same samples)", details)
    recorded = {k: v for k, v in (champion_manifest.get("metrics") or {}).items() if k in ("rmsep", "flag_rate")}
    decision = decide_promotion(challenger, recorded if "rmsep" in recorded else None, policy)
    return Decision(decision.promote, decision.reason + f" (champion family {family} not among the candidates: its "
                    "recorded figure is used)", {**decision.details, "champion_family": family})


__all__ = ["champion_family", "choose_protocol", "decide_loso_promotion"]
