"""The multitask challenger of a held-out recalibration: its training configuration and its trust calibration."""

from __future__ import annotations

from pathlib import Path

from libs_pipeline.config import RecalibrationConfig, TrainingConfig, TrustConfig
from libs_pipeline.evaluation.protocol import check_disjoint_roles
from libs_pipeline.recalibration.heldout_split import TrainingSplit
from libs_pipeline.spectra.dataset import select_samples
from libs_pipeline.trust.calibration import save_trust
from libs_pipeline.trust.prediction import calibrate_model_trust

#: Entries of the network's ``metrics.json`` kept in the registry manifest.
TRAINING_SUMMARY_KEYS = (
    "steps", "epochs", "best_step", "train_samples", "val_samples", "n_train_spectra", "n_train_synthetic",
    "n_val_spectra", "seconds",
)


def synthesis_request(config: RecalibrationConfig) -> dict | None:
    """SynthesisConfig fields of the synthesize subflow for ``config.synthesis`` (``per_sample``, ``chunk_size``,
    ``n_workers`` and the fields the config sets); None when synthesis is off (``per_sample: 0``)."""
    synthesis = config.synthesis
    if synthesis.per_sample == 0:
        return None
    return {**config.section_overrides("synthesis"), "per_sample": synthesis.per_sample,
            "chunk_size": synthesis.chunk_size, "n_workers": synthesis.n_workers}


def label_challenger(metrics: dict, synthetic: dict | None) -> dict:
    """The network challenger's held-out metrics with its family (augmented or not) and synthetic realism."""
    synthetic = synthetic or {}
    return {**metrics, "synthetic_realism_passed": synthetic.get("realism_passed"),
            "candidate": "multitask_aug" if synthetic.get("uri") else "multitask"}


def training_config(config: RecalibrationConfig, split: TrainingSplit, synthetic_uri: str | None) -> TrainingConfig:
    """The TrainingConfig of the challenger: ``config.training`` overrides plus data, analyte and seed."""
    overrides = config.section_overrides("training")
    augmentation = overrides.pop("augmentation", None)
    augmentation = synthetic_uri is not None if augmentation is None else bool(augmentation)
    if augmentation and synthetic_uri is None:
        raise ValueError("recalibration config: training.augmentation is true but synthesis produced no store")
    return TrainingConfig(
        **{"progress_bar": False, **overrides},
        analyte=split.analyte,
        measured_uris=[split.train["uri"]],
        synthetic_uris=[synthetic_uri] if (synthetic_uri and augmentation) else [],
        augmentation=augmentation,
        seed=config.seed,
    )


def calibrate_trust(split: TrainingSplit, model_dir: str | Path, trust: TrustConfig | None = None) -> dict:
    """Fit the trust calibration of a trained model directory and save it there as ``trust.json``.

    Line calibrations come from the measured training samples the network fitted; scales and threshold from the
    split's trust samples, which the network neither trained on nor used for early stopping (checked:
    ``LeakError`` otherwise). A split without trust samples (``trust_fraction`` 0) falls back to the early-stopping
    samples, which biases the scales low, and says so in ``trust_samples_role``.
    Returns ``{"trust_threshold", "training_metrics", "trust_samples", "trust_samples_role"}``.
    """
    from libs_pipeline.models import load_model  # torch: only a held-out run that trained a network gets here

    model = load_model(model_dir)
    val_samples = list(model.metrics.get("val_samples") or [])
    fitted = [str(s) for s in model.metrics.get("train_samples") or []]
    measured = split.open_train()
    if split.trust_samples:
        check_disjoint_roles({"training": fitted, "early stopping": val_samples,
                              "trust calibration": split.trust_samples, "held-out comparison": split.heldout})
        validation, role = split.open_trust(), "reserved for trust calibration (not trained on, not early stopping)"
        trust_ids = list(split.trust_samples)
    elif val_samples:
        validation, role = select_samples(measured, val_samples), "early-stopping samples (scales biased low)"
        trust_ids = val_samples
    else:
        raise ValueError(
            f"{model_dir}: trust calibration needs samples the network did not train on; set trust_fraction > 0 "
            f"or training.val_fraction > 0 (the training split has {len(split.train_samples)} samples)"
        )
    fit_ids = [s for s in split.train_samples if s not in set(val_samples)]
    calibration = calibrate_model_trust(model, select_samples(measured, fit_ids).load(), validation.load(), trust)
    save_trust(calibration, model_dir)
    summary = {k: model.metrics[k] for k in TRAINING_SUMMARY_KEYS if k in model.metrics}
    return {"trust_threshold": float(calibration.threshold), "training_metrics": summary,
            "trust_samples": trust_ids, "trust_samples_role": role}


__all__ = ["TRAINING_SUMMARY_KEYS", "calibrate_trust", "label_challenger", "synthesis_request", "training_config"]
