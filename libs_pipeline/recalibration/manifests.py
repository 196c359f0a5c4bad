"""The registry manifest of a recalibration's challenger: training data, split, seeds, metrics, decision.

One function per comparison protocol; both build on ``registry.recalibration.training_manifest``.
"""

from __future__ import annotations

from pathlib import Path

from libs_pipeline.config import RecalibrationConfig
from libs_pipeline.recalibration.heldout_split import TrainingSplit
from libs_pipeline.registry.promotion import Decision
from libs_pipeline.registry.recalibration import training_manifest


def loso_manifest(
    config: RecalibrationConfig, version: str, loso: dict, *, protocol: dict, decision: Decision,
    config_hash: str, compared_with: str | None, report_dir: str | Path,
) -> dict:
    """Manifest of the leave-one-sample-out winner (``run_loso_recalibration``'s result ``loso``)."""
    manifest = training_manifest(
        spectra={"name": config.dataset, "version": version},
        heldout=[],
        seeds={"synthesis": config.seed, "training": config.seed},
        metrics={**loso["challenger_metrics"], "candidates": loso["candidate_metrics"],
                 "selection": loso["selection"], "trust": loso["trust"], "served": loso["served_details"]},
        trust_threshold=loso["trust"].get("threshold"),
        config_hash=config_hash,
        config=config.model_dump(mode="json"),
    )
    manifest["recalibration"] = {"decision": decision.to_dict(), "compared_with": compared_with,
                                 "report_dir": str(report_dir), "protocol": protocol,
                                 "candidate_table": loso["candidate_table"]}
    return manifest


def heldout_manifest(
    config: RecalibrationConfig, version: str, split: TrainingSplit, *, synthetic: dict | None,
    challenger_metrics: dict, trained: dict, decision: Decision, config_hash: str, compared_with: str | None,
    report_dir: str | Path,
) -> dict:
    """Manifest of the held-out challenger: ``synthetic`` is the outcome's synthesis record (``uri``,
    ``realism_passed``), ``trained`` has ``trust_threshold`` and ``training_metrics``."""
    synthetic_uri = (synthetic or {}).get("uri")
    manifest = training_manifest(
        spectra={"name": config.dataset, "version": version},
        train_spectra={"name": split.train["name"], "version": split.train["version"]},
        synthetic={"uri": synthetic_uri, "id": Path(synthetic_uri).stem,
                   "realism_passed": synthetic["realism_passed"]} if synthetic_uri else None,
        heldout=split.heldout,
        seeds={"split": config.split_seed, "synthesis": config.seed, "training": config.seed},
        metrics={**challenger_metrics, "training": trained["training_metrics"]},
        trust_threshold=trained["trust_threshold"],
        config_hash=config_hash,
        config=config.model_dump(mode="json"),
    )
    manifest["recalibration"] = {"decision": decision.to_dict(), "compared_with": compared_with,
                                 "report_dir": str(report_dir)}
    return manifest


__all__ = ["heldout_manifest", "loso_manifest"]
