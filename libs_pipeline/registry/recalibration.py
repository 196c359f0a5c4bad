"""Library side of re-calibration: stable held-out split, config hash, model manifest, decision summary."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from libs_pipeline.registry.provenance import config_hash

#: Config fields that change what gets trained (root, names, policy and cluster address do not).
TRAINING_RELEVANT_FIELDS = (
    "analyte", "heldout_fraction", "split_seed", "seed", "synthesis", "training", "trust", "protocol", "candidates",
)


def _unit_hash(sample_id: str, seed: int) -> float:
    digest = hashlib.sha256(f"{seed}:{sample_id}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def heldout_samples(sample_ids: Sequence[str], fraction: float, seed: int = 0, min_train: int = 2) -> list[str]:
    """Samples held out from training, decided per sample by a salted hash so the choice never changes when
    samples are added (a champion trained on an older data version never saw today's held-out samples).

    At least one sample is held out and at least ``min_train`` stay for training (falling back to the lowest
    hashes when the per-sample rule gives none or too many).
    """
    ids = list(dict.fromkeys(str(s) for s in sample_ids))
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"heldout fraction must be in (0, 1), got {fraction}")
    if len(ids) < min_train + 1:
        raise ValueError(
            f"need at least {min_train + 1} samples to hold one out and train on {min_train}, got {len(ids)}: {ids}"
        )
    ranked = sorted(ids, key=lambda s: (_unit_hash(s, seed), s))
    chosen = [s for s in ranked if _unit_hash(s, seed) < fraction]
    if not chosen:
        chosen = ranked[:1]
    chosen = chosen[: len(ids) - min_train]
    order = {s: i for i, s in enumerate(ids)}
    return sorted(chosen, key=order.__getitem__)


def recalibration_config_hash(config: object) -> str:
    """Hash of the training-relevant part of a RecalibrationConfig (see TRAINING_RELEVANT_FIELDS)."""
    data = config.model_dump(mode="json") if hasattr(config, "model_dump") else dict(config)
    return config_hash({k: data.get(k) for k in TRAINING_RELEVANT_FIELDS})


def training_manifest(
    *,
    spectra: dict,
    heldout: Sequence[str],
    seeds: dict,
    metrics: dict,
    config_hash: str,
    config: dict,
    synthetic: dict | None = None,
    train_spectra: dict | None = None,
    trust_threshold: float | None = None,
) -> dict:
    """The caller's part of a registry manifest: training data versions, split, seeds, metrics, config."""
    for key in ("name", "version"):
        if key not in spectra:
            raise ValueError(f"training_manifest: spectra lacks {key!r} (got {sorted(spectra)})")
    return {
        "data": {
            "spectra": dict(spectra),
            "train_spectra": dict(train_spectra) if train_spectra else None,
            "synthetic": dict(synthetic) if synthetic else None,
            "heldout_samples": list(heldout),
        },
        "seeds": dict(seeds),
        "metrics": dict(metrics),
        "trust_threshold": trust_threshold,
        "config_hash": config_hash,
        "config": config,
    }


#: Outcome statuses of one recalibration run.
STATUSES = ("promoted", "kept-champion", "skipped", "failed")


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return "n/a" if value != value else f"{value:.4g}"  # NaN != NaN
    return "n/a" if value is None else str(value)


def metrics_rows(metrics: dict[str, dict], roles: dict[str, str] | None = None) -> list[dict]:
    """Rows of the challenger-vs-champion table: one per method, held-out metrics (NaN -> None)."""
    keys = ("rmsep", "mae", "bias", "r2", "sample_rmsep", "flag_rate", "n_spectra")
    rows = []
    for method, m in metrics.items():
        row: dict = {"method": method, "role": (roles or {}).get(method, "baseline")}
        for k in keys:
            v = m.get(k)
            row[k] = None if isinstance(v, float) and v != v else v
        rows.append(row)
    return rows


def summary_markdown(outcome: dict) -> str:
    """The decision of one recalibration run as markdown (what happened, why, versions, metrics, figures)."""
    status = outcome.get("status", "?")
    name = outcome.get("model_name", "?")
    spectra = outcome.get("spectra") or {}
    lines = [
        f"# Recalibration of `{name}`: {status}",
        "",
        f"**{outcome.get('reason', '')}**",
        "",
        f"- data: `{spectra.get('name')}@{spectra.get('version')}`, config hash `{outcome.get('config_hash')}`",
        f"- champion before: `{outcome.get('champion_before')}`, after: `{outcome.get('champion_after')}`",
    ]
    if outcome.get("challenger"):
        lines.append(f"- challenger: `{outcome['challenger']}` at `{outcome.get('challenger_path')}`")
    if outcome.get("heldout_samples"):
        lines.append(f"- held-out samples: {', '.join(outcome['heldout_samples'])}")
    if status == "failed":
        unchanged = outcome.get("champion_after") == outcome.get("champion_before")
        lines += ["", f"Failed at step `{outcome.get('failed_step')}`: `{outcome.get('error')}`",
                  "", "The champion was not changed." if unchanged else "The champion had already been changed."]
    metrics = outcome.get("metrics") or {}
    if metrics:
        rows = metrics_rows(metrics, outcome.get("roles"))
        cols = list(rows[0])
        lines += ["", "| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
        lines += ["| " + " | ".join(_fmt(r[c]) for c in cols) + " |" for r in rows]
    for note in outcome.get("notes") or []:
        lines += ["", f"> {note}"]
    selection = outcome.get("selection") or {}
    if selection:
        lines += ["", f"**Served family: {selection.get('winner')}** — {selection.get('reason')}"]
    for name, error in (outcome.get("candidate_errors") or {}).items():
        lines += ["", f"- candidate `{name}` could not be evaluated: {error}"]
    trust = outcome.get("trust") or {}
    if trust:
        lines += ["", f"Trust: threshold {_fmt(trust.get('threshold'))} ({trust.get('method')}); parts in use: "
                  f"{', '.join(trust.get('parts') or []) or 'none (nothing is flagged)'}"]
        lines += [f"- `{part}` off: {why}" for part, why in (trust.get("disabled_parts") or {}).items()]
    figures = outcome.get("figures") or {}
    if figures:
        lines += [""] + [f"![{k}]({Path(v).resolve().as_uri()})" for k, v in figures.items()]
    if outcome.get("report_dir"):
        lines += ["", f"Report folder: `{outcome['report_dir']}`"]
    if outcome.get("seconds") is not None:
        lines += ["", f"Wall time: {outcome['seconds']:.1f} s"]
    return "\n".join(lines) + "\n"
