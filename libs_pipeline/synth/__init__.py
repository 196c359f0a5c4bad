"""Simulation-based augmentation: per-sample noise model, sampling, Dask generation, realism report."""

from libs_pipeline.synth.generate import (
    SynthesisError,
    cluster_address,
    finalize_synthesis,
    generate_synthetic,
    prepare_synthesis,
    run_chunks,
)
from libs_pipeline.synth.interpolation import interpolate_samples
from libs_pipeline.synth.noise_model import NoiseModel, SampleNoise, fit_noise_model, sample_spectra
from libs_pipeline.synth.realism import RealismReport, RealismThresholds, realism_report, report_store
from libs_pipeline.synth.realism_holdout import HoldoutRealism, HoldoutThresholds, holdout_realism, split_shots
from libs_pipeline.synth.synthetic_store import open_synthetic

__all__ = [
    "HoldoutRealism",
    "HoldoutThresholds",
    "NoiseModel",
    "RealismReport",
    "RealismThresholds",
    "SampleNoise",
    "SynthesisError",
    "cluster_address",
    "finalize_synthesis",
    "fit_noise_model",
    "generate_synthetic",
    "holdout_realism",
    "interpolate_samples",
    "open_synthetic",
    "prepare_synthesis",
    "realism_report",
    "report_store",
    "run_chunks",
    "sample_spectra",
    "split_shots",
]
