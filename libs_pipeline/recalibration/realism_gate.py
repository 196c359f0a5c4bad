"""Whether augmented families may be served: their noise model must pass the out-of-sample realism check
(``synth.realism_holdout``: fitted on half of each sample's shots, compared with the other half) on the
training samples at hand. One rule for recalibration and for the benchmark's served choice."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import xarray as xr

from libs_pipeline.spectra.dataset import sample_ids
from libs_pipeline.synth.realism_holdout import holdout_realism


def augmented_families(candidates: Mapping[str, Any]) -> list[str]:
    """Names of the candidates that train on synthetic spectra."""
    return [n for n, c in candidates.items() if getattr(c, "per_sample", 0) > 0]


def realism_exclusions(
    candidates: Mapping[str, Any], ds: xr.Dataset, analyte: str, seed: int = 0, report_dir: str | Path | None = None
) -> tuple[dict | None, dict[str, str]]:
    """(realism summary or None when no family is augmented, {family: why it may not be served})."""
    augmented = augmented_families(candidates)
    if not augmented:
        return None, {}
    options = dict(getattr(candidates[augmented[0]], "synthesis", {}))  # the noise model the families draw from
    report = holdout_realism(ds, analyte, seed=seed, model_options=options)
    if report_dir is not None:
        report.save(report_dir)
    if report.passed:
        return report.summary(), {}
    why = "its synthetic spectra failed the out-of-sample realism check: " + "; ".join(report.failures[:3])
    return report.summary(), {n: why for n in augmented}


class RealismEligibility:
    """``nested_loso(eligible=...)``: an augmented family is eligible in a fold only if its noise model passes
    the realism check on that fold's training samples (cached per sample set)."""

    def __init__(self, candidates: Mapping[str, Any], analyte: str, seed: int = 0) -> None:
        self.candidates, self.analyte, self.seed = candidates, analyte, seed
        self.cache: dict[tuple[str, ...], dict[str, str]] = {}

    def __call__(self, name: str, train: xr.Dataset) -> bool:
        key = tuple(sample_ids(train))
        if key not in self.cache:
            self.cache[key] = realism_exclusions(self.candidates, train, self.analyte, self.seed)[1]
        return name not in self.cache[key]


__all__ = ["RealismEligibility", "augmented_families", "realism_exclusions"]
