"""Library side of re-calibration: the config hash of what gets trained, the model manifest (the held-out rule is
``spectra.sample_splits.heldout_samples``)."""

from __future__ import annotations

from collections.abc import Sequence

from libs_pipeline.config import config_hash

#: Config fields that change what gets trained (root, names, policy and cluster address do not).
TRAINING_RELEVANT_FIELDS = (
    "analyte", "heldout_fraction", "trust_fraction", "split_seed", "seed", "synthesis", "training", "networks", "trust",
    "protocol", "candidates",
)


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
