"""Champion/challenger decisions: whether to retrain at all, and whether a challenger replaces the champion."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Decision:
    """Outcome of comparing a challenger with the champion; ``details`` holds the numbers behind ``reason``."""

    promote: bool
    reason: str
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class RetrainDecision:
    """Whether a recalibration run has anything new to train on, and why."""

    retrain: bool
    reason: str


def _policy(config: object) -> object:
    """Accept a RecalibrationConfig (uses its ``promotion``) or a PromotionPolicy itself."""
    return getattr(config, "promotion", config)


def _metric(metrics: dict, key: str, who: str) -> float:
    if key not in metrics or metrics[key] is None:
        raise ValueError(f"{who} metrics lack {key!r} (have: {', '.join(sorted(metrics)) or 'nothing'})")
    return float(metrics[key])


def decide_promotion(challenger_metrics: dict, champion_metrics: dict | None, config: object) -> Decision:
    """Promote iff the challenger's in-distribution flag rate is within target and (no champion, or its
    held-out RMSEP beats the champion's by the policy's margin, relative or absolute).

    Metrics dicts need ``rmsep`` (both) and ``flag_rate`` (challenger): the fraction of held-out
    in-distribution predictions flagged untrustworthy. A challenger whose ``synthetic_realism_passed`` is
    False (its synthetic training spectra failed the realism report) is refused when the policy requires it.
    """
    policy = _policy(config)
    margin = float(policy.min_improvement)
    mode = policy.improvement_mode
    max_flag_rate = float(policy.max_flag_rate)
    rmsep = _metric(challenger_metrics, "rmsep", "challenger")
    flag_rate = _metric(challenger_metrics, "flag_rate", "challenger")
    details: dict = {
        "challenger_rmsep": rmsep,
        "challenger_flag_rate": flag_rate,
        "max_flag_rate": max_flag_rate,
        "min_improvement": margin,
        "improvement_mode": mode,
    }
    if not math.isfinite(rmsep):
        return Decision(False, f"challenger RMSEP is {rmsep}, not a finite number", details)
    realistic = challenger_metrics.get("synthetic_realism_passed")
    details["synthetic_realism_passed"] = realistic
    if realistic is False and getattr(policy, "require_realistic_synthetic", True):
        return Decision(False, "the challenger's synthetic training spectra failed the realism report", details)
    if not (math.isfinite(flag_rate) and flag_rate <= max_flag_rate):
        return Decision(
            False,
            f"challenger flags {flag_rate:.1%} of in-distribution held-out spectra, "
            f"above the target {max_flag_rate:.1%}",
            details,
        )
    if champion_metrics is None:
        reason = f"no champion yet; challenger RMSEP {rmsep:.4g}, flag rate {flag_rate:.1%} within target"
        return Decision(True, reason, details)
    champion_rmsep = _metric(champion_metrics, "rmsep", "champion")
    details["champion_rmsep"] = champion_rmsep
    if not math.isfinite(champion_rmsep):
        reason = f"champion RMSEP is {champion_rmsep} on the held-out samples; challenger {rmsep:.4g}"
        return Decision(True, reason, details)
    improvement = champion_rmsep - rmsep
    required = margin * champion_rmsep if mode == "relative" else margin
    details.update(improvement=improvement, required_improvement=required)
    margin_text = f"{margin:.1%} of the champion's" if mode == "relative" else f"{margin:.4g} (absolute)"
    if improvement > 0 and (improvement >= required or math.isclose(improvement, required, rel_tol=1e-9)):
        return Decision(
            True,
            f"challenger RMSEP {rmsep:.4g} beats champion {champion_rmsep:.4g} by {improvement:.4g} "
            f"(required: {required:.4g} = {margin_text}); flag rate {flag_rate:.1%} within target",
            details,
        )
    return Decision(
        False,
        f"challenger RMSEP {rmsep:.4g} vs champion {champion_rmsep:.4g}: improvement {improvement:.4g} "
        f"is below the required {required:.4g} ({margin_text})",
        details,
    )


def decide_retraining(champion_manifest: dict | None, spectra_version: str, config_hash: str) -> RetrainDecision:
    """Skip when the champion was trained on this spectra version with this configuration (nothing changed).

    The champion's manifest records ``data.spectra.version`` and ``config_hash`` (see ``training_manifest``).
    """
    if champion_manifest is None:
        return RetrainDecision(True, "no champion yet")
    trained_on = ((champion_manifest.get("data") or {}).get("spectra") or {}).get("version")
    trained_hash = champion_manifest.get("config_hash")
    version = champion_manifest.get("version", "?")
    if trained_on != spectra_version:
        return RetrainDecision(
            True, f"new data: latest spectra version {spectra_version}, champion {version} was trained on {trained_on}"
        )
    if trained_hash != config_hash:
        return RetrainDecision(
            True, f"configuration changed: hash {config_hash}, champion {version} was trained with {trained_hash}"
        )
    return RetrainDecision(
        False,
        f"champion {version} was already trained on spectra version {spectra_version} with configuration "
        f"{config_hash}; nothing changed",
    )
