"""The multitask challenger of a held-out recalibration: its training configuration and its trust calibration."""

from __future__ import annotations

import json
from pathlib import Path

from libs_pipeline.candidates import load_servable
from libs_pipeline.candidates.ensemble import describe_ensemble, member_name
from libs_pipeline.config import RecalibrationConfig, TrainingConfig, TrustConfig
from libs_pipeline.evaluation.protocol import check_disjoint_roles
from libs_pipeline.recalibration.heldout_split import TrainingSplit
from libs_pipeline.spectra.dataset import select_samples
from libs_pipeline.trust.calibration import save_trust
from libs_pipeline.trust.prediction import calibrate_model_trust

#: Entries of the network's ``metrics.json`` kept in the registry manifest.
TRAINING_SUMMARY_KEYS = (
    "steps", "epochs", "best_step", "train_samples", "val_samples", "n_train_spectra", "n_train_synthetic",
    "n_val_spectra", "seconds", "n_networks",
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


def member_configs(training: TrainingConfig, model_dir: str, networks: int) -> list[TrainingConfig]:
    """The TrainingConfig of every network of the challenger: one saved at ``model_dir``, or ``networks`` saved at
    ``model_dir/member-<k>`` with seeds ``seed + k`` and one validation split (``split_seed``): a deep ensemble over
    seeds on the same samples, which ``assemble_challenger`` joins."""
    if networks < 1:
        raise ValueError(f"networks must be >= 1, got {networks}")
    if networks == 1:
        return [training.model_copy(update={"model_dir": str(model_dir)})]
    split_seed = training.seed if training.split_seed is None else training.split_seed
    return [training.model_copy(update={"seed": training.seed + k, "split_seed": split_seed,
                                        "model_dir": str(Path(model_dir) / member_name(k))})
            for k in range(networks)]


def assemble_challenger(model_dir: str | Path, member_dirs: list[str]) -> str:
    """The challenger's directory: the single network's, or an ensemble of the trained members written into
    ``model_dir`` (``ensemble.json``, and ``metrics.json`` with the shared split and each member's steps).
    The members must have trained on the same samples (one split), else ``ValueError``."""
    if len(member_dirs) == 1:
        return str(member_dirs[0])
    model_dir = Path(model_dir)
    expected = [str(model_dir / member_name(k)) for k in range(len(member_dirs))]
    if [str(Path(d)) for d in member_dirs] != expected:
        raise ValueError(f"ensemble members must be saved as {expected}, got {member_dirs}")
    metrics = [json.loads((Path(d) / "metrics.json").read_text(encoding="utf-8")) for d in member_dirs]
    for key in ("train_samples", "val_samples"):
        if any(sorted(m.get(key) or []) != sorted(metrics[0].get(key) or []) for m in metrics):
            raise ValueError(f"ensemble members of {model_dir} were trained with different {key}")
    first = metrics[0]
    summary = {
        "n_networks": len(metrics),
        **{k: first.get(k) for k in ("train_samples", "val_samples", "n_train_spectra", "n_train_synthetic",
                                      "n_val_spectra", "task_names")},
        **{k: [m.get(k) for m in metrics] for k in ("steps", "epochs", "best_step")},
        "seconds": float(sum(float(m.get("seconds") or 0.0) for m in metrics)),
    }
    return str(describe_ensemble(model_dir, len(metrics), summary))


def calibrate_trust(split: TrainingSplit, model_dir: str | Path, trust: TrustConfig | None = None) -> dict:
    """Fit the trust calibration of a trained model directory and save it there as ``trust.json``.

    Line calibrations come from the measured training samples the network fitted; scales and threshold from the
    split's trust samples, which the network neither trained on nor used for early stopping (checked:
    ``LeakError`` otherwise). A split without trust samples (``trust_fraction`` 0) falls back to the early-stopping
    samples, which biases the scales low, and says so in ``trust_samples_role``.
    Returns ``{"trust_threshold", "training_metrics", "trust_samples", "trust_samples_role"}``.
    """
    model = load_servable(model_dir)  # one network or an ensemble of them
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


__all__ = ["TRAINING_SUMMARY_KEYS", "assemble_challenger", "calibrate_trust", "label_challenger", "member_configs",
           "synthesis_request", "training_config"]
