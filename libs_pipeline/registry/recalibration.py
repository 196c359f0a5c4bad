"""Library side of re-calibration: stable held-out split, config hash, model manifest."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from libs_pipeline.config import config_hash

#: Config fields that change what gets trained (root, names, policy and cluster address do not).
TRAINING_RELEVANT_FIELDS = (
    "analyte", "heldout_fraction", "trust_fraction", "split_seed", "seed", "synthesis", "training", "trust", "protocol", "candidates",
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
    """Hash of the training-relevant part of a RecalibrationConfig (see TRAINING_RELEVANT_FIELDS); of its
    ``synthesis`` and ``training`` sections the fields given (``section_overrides``)."""
    data = config.model_dump(mode="json") if hasattr(config, "model_dump") else dict(config)
    if hasattr(config, "section_overrides"):
        data.update({s: config.section_overrides(s, mode="json") for s in ("synthesis", "training")})
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
