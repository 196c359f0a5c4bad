"""Figures of the trust evaluation (PNG): score distributions per scenario, ROC curves against the comparison
detectors, and trust against error (score vs |error|, risk-coverage, error ROC) for one model's predictions."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import io

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from libs_pipeline.spectra.atomic import atomic_write_bytes
from libs_pipeline.trust.ood_evaluation import auroc, roc_curve

SEVERITY_COLOURS = {"mild": "tab:orange", "strong": "tab:red"}


def _save(fig: Figure, path: str | Path, dpi: int = 110) -> Path:
    """Render on an Agg canvas (no pyplot state, safe in threads) and write the PNG atomically."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def _grid(n: int) -> tuple[int, int]:
    cols = min(3, max(1, n))
    return (n + cols - 1) // cols, cols


def _log_scores(s: np.ndarray, cap: float) -> np.ndarray:
    s = np.asarray(s, dtype=np.float64)
    return np.log10(np.clip(np.where(np.isfinite(s), s, cap), 1e-3, cap))


def plot_score_distributions(
    reference: np.ndarray,
    scenarios: Mapping[str, Mapping[str, np.ndarray]],
    threshold: float,
    path: str | Path,
    title: str = "trust score",
) -> Path:
    """One panel per scenario: histograms (log10 score) of in-distribution vs mild vs strong, threshold line."""
    names = list(scenarios)
    if not names:
        raise ValueError("plot_score_distributions: no scenarios")
    finite = np.concatenate(
        [np.asarray(reference, float)] + [np.asarray(v, float) for sev in scenarios.values() for v in sev.values()]
    )
    cap = float(np.nanmax(finite[np.isfinite(finite)])) * 1.5 if np.isfinite(finite).any() else 10.0
    rows, cols = _grid(len(names))
    fig = Figure(figsize=(4.2 * cols, 3.0 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    ref = _log_scores(reference, cap)
    for ax, name in zip(axes.flat, names):
        all_vals = [ref] + [_log_scores(v, cap) for v in scenarios[name].values()]
        bins = np.linspace(min(v.min() for v in all_vals), max(v.max() for v in all_vals) + 1e-9, 40)
        ax.hist(ref, bins=bins, density=True, alpha=0.5, color="tab:blue", label="in-distribution")
        for severity, values in scenarios[name].items():
            ax.hist(_log_scores(values, cap), bins=bins, density=True, histtype="step", lw=1.6,
                    color=SEVERITY_COLOURS.get(severity, "k"), label=severity)
        ax.axvline(np.log10(threshold), color="k", ls="--", lw=1, label="threshold")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel(f"log10 {title}")
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def plot_roc_curves(
    reference: Mapping[str, np.ndarray],
    scenarios: Mapping[str, Mapping[str, Mapping[str, np.ndarray]]],
    path: str | Path,
    severity: str = "strong",
) -> Path:
    """One panel per scenario (at ``severity``): ROC of every detector; ``reference[detector]`` are its
    in-distribution scores, ``scenarios[name][severity][detector]`` its scenario scores."""
    names = [n for n in scenarios if severity in scenarios[n]]
    if not names:
        raise ValueError(f"plot_roc_curves: no scenario has severity {severity!r}")
    rows, cols = _grid(len(names))
    fig = Figure(figsize=(3.8 * cols, 3.5 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, name in zip(axes.flat, names):
        for detector, shifted in scenarios[name][severity].items():
            if detector not in reference:
                raise ValueError(f"plot_roc_curves: no in-distribution scores for detector {detector!r}")
            fpr, tpr = roc_curve(reference[detector], shifted)
            ax.plot(fpr, tpr, lw=1.4, label=f"{detector} ({auroc(reference[detector], shifted):.2f})")
        ax.plot([0, 1], [0, 1], color="0.7", lw=0.8, ls=":")
        ax.set_title(f"{name} ({severity})", fontsize=10)
        ax.set_xlabel("false-flag rate (in-distribution)")
        ax.set_ylabel("detection rate")
        ax.legend(fontsize=6, loc="lower right")
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.tight_layout()
    return _save(fig, path)


def plot_trust_vs_error(
    scores: np.ndarray, errors: np.ndarray, threshold: float, path: str | Path, units: str = "", title: str = "",
    k: float = 2.0, ranking: np.ndarray | None = None,
) -> Path:
    """Three panels on the same predictions: |error| against trust score (threshold marked: flagged spectra right
    of it); the risk-coverage curve (RMSEP of the kept predictions as the most suspect are rejected) with its
    oracle; the ROC for the wrong predictions (|error| > k x their RMSEP), when there are both. The last two rank
    by ``ranking`` (the error score) when given, else by the trust score."""
    from libs_pipeline.trust.error_metrics import error_auroc, error_tolerance, risk_coverage

    s = np.asarray(scores, dtype=np.float64)
    r = s if ranking is None else np.asarray(ranking, dtype=np.float64)
    label = "trust score" if ranking is None else "error score"
    e = np.abs(np.asarray(errors, dtype=np.float64))
    rc = risk_coverage(r, e)
    finite = np.where(np.isfinite(s), s, np.nan)
    cap = max(float(np.nanmax(finite, initial=threshold)), threshold) * 1.5 + 1e-9
    shown = np.clip(np.where(np.isfinite(s), s, cap), None, cap)
    fig = Figure(figsize=(13, 3.6))
    left, middle, right = (fig.add_subplot(1, 3, i) for i in (1, 2, 3))
    flagged = s > threshold
    left.scatter(shown[~flagged], e[~flagged], s=8, alpha=0.6, label=f"kept ({int((~flagged).sum())})")
    left.scatter(shown[flagged], e[flagged], s=8, alpha=0.8, color="tab:red", label=f"flagged ({int(flagged.sum())})")
    left.axvline(threshold, color="k", lw=0.8, ls="--")
    left.set_xlabel("trust score")
    left.set_ylabel(f"|error| {units}".strip())
    left.legend(fontsize=8)
    middle.plot(rc.coverage, rc.rmsep, label=f"{label} (AURC {rc.aurc:.3g})")
    middle.plot(rc.coverage, rc.rmsep_oracle, ls=":", color="grey", label=f"oracle ({rc.aurc_oracle:.3g})")
    middle.axhline(rc.aurc_random, color="k", lw=0.8, ls="--", label="no rejection")
    middle.set_xlabel("coverage (fraction kept)")
    middle.set_ylabel(f"RMSEP of kept {units}".strip())
    middle.legend(fontsize=8)
    rmsep = float(np.sqrt(np.mean(e**2))) if e.size else 0.0
    wrong = e > (error_tolerance(rmsep, k) if rmsep > 0 else np.inf)
    if wrong.any() and not wrong.all():
        top = max(float(np.nanmax(np.where(np.isfinite(r), r, np.nan), initial=0.0)), 0.0) * 1.5 + 1.0
        filled = np.where(np.isfinite(r), r, top)  # an unscorable spectrum counts as the most suspect
        fpr, tpr = roc_curve(filled[~wrong], filled[wrong])
        right.plot(fpr, tpr, label=f"{label} AUROC {error_auroc(r, e, error_tolerance(rmsep, k)):.3f} "
                                   f"({int(wrong.sum())} wrong of {e.size})")
        right.legend(fontsize=8, loc="lower right")
    else:
        right.text(0.5, 0.5, f"no ROC: {'every' if wrong.all() else 'no'} prediction is wrong\n(|error| > {k:g}×RMSEP)",
                   ha="center", va="center", transform=right.transAxes)
    right.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
    right.set_xlabel("false-positive rate (right predictions flagged)")
    right.set_ylabel("true-positive rate (wrong ones flagged)")
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)
