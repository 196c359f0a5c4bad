"""Pydantic models for every flow's parameters (campaign, ingest, synthesis, training, trust, recalibration).

Each section is owned by one part of the system; keep the classes small and documented.
"""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, create_model


def config_hash(config: object) -> str:
    """First 16 hex digits of sha256 over the canonical JSON of ``config`` (dict or pydantic model): the one hash
    of a configuration (model directory names, the recalibration's training-relevant fields)."""
    if hasattr(config, "model_dump"):
        config = config.model_dump(mode="json")
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


class StrictModel(BaseModel):
    """Base for all configs: unknown fields are an error, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


# --- campaign (physics) ---

from pydantic import model_validator  # noqa: E402  (kept inside this section to avoid editing shared imports)

CampaignScenario = Literal[
    "nominal",
    "temperature_shift",
    "low_laser_energy",
    "wavelength_shift",
    "steel_matrix",
    "interfering_element",
    "gain_change",
]
CampaignMatrix = Literal["aluminium", "low_alloy_steel", "stainless_steel", "rock"]


class CampaignConfig(StrictModel):
    """Parameters of the virtual LIBS campaign (libskit LTE plasma -> spectrometer -> detector).

    ``scenario``/``severity`` name a change of these same parameters (see ``physics.scenarios``);
    ``simulate_campaign`` applies it once. Defaults: 30 Al alloys, Cu 0.05-6 wt%, 20 shots, 4096
    channels over 250-850 nm (air wavelengths), strongest nominal line at 40 % of the detector range.
    """

    name: str = Field("virtual-aluminium", min_length=1, description="campaign / dataset name")
    # samples
    matrix: CampaignMatrix = Field("aluminium", description="composition recipe of the reference samples")
    analyte: str = Field("Cu", min_length=1, max_length=2, description="certified analyte (element symbol)")
    analyte_range_wt: tuple[float, float] = Field((0.05, 6.0), description="analyte wt% range, spread log-uniformly")
    n_samples: int = Field(30, ge=1, description="reference samples (ignored when `samples` are passed)")
    n_shots: int = Field(20, ge=1, description="laser shots per sample")
    interferent: dict[str, float] = Field(
        default_factory=dict, description="element -> wt% added to every sample (balance element reduced)"
    )
    # plasma (per-shot fluctuations around the nominal state)
    temperature_K: float = Field(10000.0, gt=3000.0, lt=40000.0, description="nominal plasma temperature")
    temperature_rel_sd: float = Field(
        0.03, ge=0.0, lt=0.2,
        description="shot-to-shot relative sd of T (normal); with the n_e and intensity spreads this gives "
        "~20 % total-intensity RSD (measured), near the 7-19 % of the real OREAS replicates",
    )
    electron_density_per_m3: float = Field(1e23, gt=1e20, lt=1e26, description="nominal (median) electron density")
    electron_density_log_sd: float = Field(0.1, ge=0.0, lt=1.0, description="sd of ln(n_e) (lognormal, ~10 %)")
    intensity_factor_median: float = Field(1.0, gt=0.0, description="median ablated-mass / collection factor")
    intensity_log_sd: float = Field(0.1, ge=0.0, lt=1.0, description="sd of ln(intensity factor) (~10 %)")
    truncate_sd: float = Field(2.5, ge=1.0, le=4.0, description="T and ln(n_e) draws are truncated at +-this many sd")
    plasma_length_m: float = Field(1e-3, gt=0.0, lt=0.1, description="plasma column length (self-absorption)")
    continuum_scale: float = Field(
        50.0, ge=0.0, description="multiplier on libskit's free-free + free-bound continuum (gate-integrated early plasma)"
    )
    basis_temperatures: int = Field(4, ge=2, le=8, description="temperature nodes of the per-sample emission basis")
    basis_densities: int = Field(3, ge=1, le=8, description="electron-density nodes of the per-sample basis")
    # spectrometer
    wavelength_start_nm: float = Field(250.0, gt=150.0, description="first channel (air wavelength)")
    wavelength_stop_nm: float = Field(850.0, lt=1200.0, description="last channel (air wavelength)")
    n_channels: int = Field(4096, ge=16, le=100000)
    gaussian_sigma_nm: float = Field(0.1, gt=0.0, lt=5.0, description="instrument Gaussian sd (before pixel width)")
    lorentzian_gamma_nm: float = Field(0.01, ge=0.0, lt=5.0, description="instrument Lorentzian HWHM")
    wavelength_shift_nm: float = Field(
        0.0, ge=-5.0, le=5.0, description="calibration error: features appear this far right of their true wavelength"
    )
    response_center_nm: float = Field(450.0, description="peak of the smooth spectral response (grating x detector)")
    response_width_nm: float = Field(300.0, gt=0.0, description="Gaussian width (sd) of the spectral response")
    fine_samples_per_fwhm: float = Field(2.0, ge=1.0, le=10.0, description="libskit internal grid resolution")
    # detector
    gain_counts_per_electron: float = Field(2.0, gt=0.0, description="ADC counts per photo-electron")
    read_noise_counts: float = Field(8.0, ge=0.0, description="Gaussian read noise sd, counts")
    dark_offset_counts: float = Field(500.0, ge=0.0, description="dark/bias level, subtracted from the output")
    full_scale_counts: float = Field(65535.0, gt=0.0, description="raw counts at saturation (ADC full scale)")
    reference_peak_fraction: float = Field(
        0.4, gt=0.0, lt=1.0,
        description="exposure: the matrix reference sample's strongest line at the nominal plasma state "
        "reaches this fraction of (full scale - dark offset); fixed before any scenario is applied",
    )
    # scenario
    scenario: CampaignScenario = "nominal"
    severity: Literal["mild", "strong"] = "mild"

    @model_validator(mode="after")
    def _check_ranges(self) -> "CampaignConfig":
        lo, hi = self.analyte_range_wt
        if not 0.0 < lo < hi < 100.0:
            raise ValueError(f"analyte_range_wt must satisfy 0 < low < high < 100, got {self.analyte_range_wt}")
        if not self.wavelength_start_nm < self.wavelength_stop_nm:
            raise ValueError(
                f"wavelength_start_nm ({self.wavelength_start_nm}) must be below wavelength_stop_nm "
                f"({self.wavelength_stop_nm})"
            )
        for element, wt in self.interferent.items():
            if not 0.0 < wt < 50.0:
                raise ValueError(f"interferent {element!r}: wt% must be in (0, 50), got {wt}")
        if self.dark_offset_counts >= self.full_scale_counts:
            raise ValueError("dark_offset_counts must be below full_scale_counts")
        if self.basis_densities == 1 and self.electron_density_log_sd > 0.0:
            raise ValueError("basis_densities=1 cannot follow shot-to-shot n_e changes: set electron_density_log_sd=0")
        return self


# --- ingest (spectra) ---


class IngestOptions(StrictModel):
    """How strict ``ingest_campaign`` is: size limit, dark-noise tolerance, saturation warning, resampling."""

    resample: bool = Field(
        False, description="resample a file whose grid differs from the dataset grid (linear) instead of rejecting it"
    )
    max_file_mb: float = Field(200.0, gt=0.0, description="files larger than this are rejected unread")
    dark_tolerance: float = Field(
        100.0, ge=0.0, description="counts: intensities below -dark_tolerance are rejected (dark-subtracted noise)"
    )
    saturation_level: float | None = Field(
        None, gt=0.0, description="detector saturation in counts; None = no saturation warning"
    )
    saturation_margin: float = Field(
        0.01, ge=0.0, lt=1.0, description="'near' saturation = at or above saturation_level * (1 - margin)"
    )
    chunk_spectra: int = Field(256, ge=1, description="zarr chunk length along `spectrum` for intensity")
    max_problems_per_rule: int = Field(
        1000, ge=1, description="a reader stops collecting problems of a file after this many (reports group them by rule)"
    )
    overlap_policy: Literal["average", "keep_first", "keep_second", "reject"] = Field(
        "average", description="overlapping spectrometer segments: average the overlap, keep one side, or reject the file"
    )
    bad_shot_policy: Literal["warn", "drop", "reject"] = Field(
        "warn", description="dead (all 0), flat or fully saturated shots: keep with a warning, drop with a warning, "
        "or reject the file"
    )
    saturated_shot_fraction: float = Field(
        0.5, gt=0.0, le=1.0, description="a shot is 'fully saturated' when this share of channels is at saturation_level"
    )
    lock_timeout_s: float = Field(
        600.0, ge=0.0, description="seconds to wait for another ingest into the same dataset to finish"
    )


class IngestConfig(StrictModel):
    """Parameters of the ingest flow and ``libs-pipeline ingest``: one campaign manifest (or instrument file /
    folder) into the store at ``root``."""

    manifest: str = Field(..., min_length=1, description="campaign manifest (CSV/YAML), instrument file or folder")
    root: str = Field(..., min_length=1, description="store root URL (local path, file://, s3://...)")
    name: str | None = Field(None, description="dataset name (default: from the manifest)")
    options: IngestOptions = Field(default_factory=IngestOptions, description="validation and resampling rules")
    fail_if_rejected: bool = Field(True, description="end the flow Failed when files were rejected (valid ones still land)")


class PredictionConfig(StrictModel):
    """Parameters of the predict flow and ``libs-pipeline predict``: spectra -> concentration, uncertainty, trust."""

    model: str = Field("champion", min_length=1, description="model directory, or a registry version/alias")
    spectra: str = Field(..., min_length=1, description="spectra: .zarr/.nc path or <root>#<name>@<version>")
    out: str = Field(..., min_length=1, description="predictions CSV to write")
    root: str | None = Field(None, description="store root whose registry resolves `model` (None: model is a path)")
    name: str | None = Field(None, description="registry model name (with root)")
    mc_samples: int = Field(20, ge=2, description="MC-dropout passes for the predictive uncertainty")
    seed: int = Field(0, ge=0)
    resample: bool = Field(False, description="resample spectra on another grid onto the model's grid")


class DropFolderConfig(StrictModel):
    """Parameters of the drop-folder flow and ``libs-pipeline predict-folder``: ingest a lab's folder of unknown
    samples, then predict them with the registry's model."""

    folder: str = Field(..., min_length=1, description="folder of raw instrument files")
    root: str = Field(..., min_length=1, description="store root URL: the files are ingested and predicted here")
    name: str = Field(..., min_length=1, description="registry model name")
    model: str = Field("champion", min_length=1, description="registry version or alias")
    dataset: str | None = Field(None, description="dataset the files are ingested into (default: unknown-samples)")
    only_new: bool = Field(True, description="predict only files no earlier run ingested")
    mc_samples: int = Field(20, ge=2, description="MC-dropout passes for the predictive uncertainty")
    seed: int = Field(0, ge=0)
    resample: bool = Field(False, description="resample files and spectra on another grid (ingest and prediction)")
    options: IngestOptions = Field(default_factory=IngestOptions, description="validation rules of the ingest")


class DemoConfig(StrictModel):
    """Parameters of the demo flow and ``libs-pipeline demo``: the virtual instrument's campaign end to end."""

    out: str = Field("demo-output", min_length=1, description="store root the demo writes under")
    n_samples: int = Field(40, ge=8, description="reference samples of the virtual campaign")
    n_shots: int = Field(20, ge=2, description="laser shots per reference sample")
    n_channels: int = Field(4096, ge=64)
    batch_samples: int = Field(6, ge=1, description="unknown samples in each fresh batch")
    batch_shots: int = Field(10, ge=1)
    scenario: CampaignScenario = Field("interfering_element", description="the changed-conditions batch")
    severity: Literal["mild", "strong"] = "strong"
    per_sample: int = Field(200, ge=0, description="synthetic spectra per training sample (0 = no augmentation)")
    max_steps: int = Field(1500, ge=1, description="training steps of the challenger")
    seed: int = Field(0, ge=0)


# --- synthesis (synth) ---


class SynthesisConfig(StrictModel):
    """Parameters of ``libs_pipeline.synth.generate_synthetic`` and the synthesize flow / CLI.

    The store lands at ``<out_uri>/synthetic/<name>/<id>.zarr`` (or at ``out_uri`` if it ends in .zarr);
    its bytes depend only on (dataset, model options, per_sample, seed, chunk_size).
    """

    dataset_uri: str = Field(..., min_length=1, description="measured spectra: .zarr/.nc path or <root>#<name>@<version>")
    out_uri: str = Field(..., min_length=1, description="store root (or a path ending in .zarr)")
    per_sample: int = Field(..., ge=1, description="synthetic spectra per (reference or interpolated) sample")
    seed: int = Field(0, ge=0)
    chunk_size: int = Field(1024, ge=1, description="spectra per chunk: the seed unit and the zarr chunk")
    shard_chunks: int = Field(8, ge=1, description="chunks per shard: one stored object per array and one Dask task")
    name: str | None = Field(None, description="dataset name in the output path (default: from the source)")
    # noise model
    detector: Literal["per_sample", "pooled"] = Field("per_sample", description="gain/read noise per sample or shared")
    shot_factor: Literal["normal", "lognormal"] = "normal"
    saturation: float | Literal["auto"] | None = Field("auto", description="saturation counts, 'auto' or None")
    instrument_fwhm_nm: float | None = Field(None, gt=0.0, description="optional Gaussian instrument function")
    max_shape_modes: int | None = Field(
        None, ge=0, description="shape-fluctuation modes per sample: 0 = paper's model only, None = all significant"
    )
    # beyond the original method (off by default)
    interpolate_between: int = Field(0, ge=0, description="virtual samples between concentration neighbours")
    interpolation_analyte: str | None = Field(None, description="label that orders samples (default: first label)")
    # execution
    dask_address: str | None = Field(None, description="tcp://host:port of an existing Dask scheduler")
    n_workers: int = Field(2, ge=1, description="LocalCluster worker processes when no dask_address is given")
    # realism report
    realism: bool = True
    analyte: str | None = Field(None, description="analyte whose lines the realism report checks (default: first label)")
    lines: list[dict] | None = Field(None, description="LineWindow dicts for the report (default: default_lines)")
    realism_max_per_sample: int = Field(1000, ge=2)
    report_dir: str | None = Field(None, description="where the report goes (default: <store>.realism/ beside it)")


# --- training (models) ---


class TrainingConfig(StrictModel):
    """Parameters of ``libs_pipeline.models.train_model`` and the train flow: data URIs, tasks, network, optimiser.

    Defaults are sized for CPU: a few hundred optimiser steps of a 1-D CNN of 0.1-0.3 M parameters
    (most of them in the dense layer after the trunk, so the count grows with the number of channels).
    """

    analyte: str = Field(..., min_length=1, description="label variable of the primary task, e.g. 'Cu'")
    measured_uris: list[str] = Field(default_factory=list, description="measured spectra (.zarr/.nc/store URI)")
    synthetic_uris: list[str] = Field(default_factory=list, description="synthetic stores (used when augmentation)")
    val_uris: list[str] = Field(default_factory=list, description="explicit validation spectra (else split by sample)")
    output_dir: str | None = Field(None, description="folder under which the flow writes the model directory")
    model_dir: str | None = Field(None, description="the model directory to write (default: <output_dir>/<analyte>-"
                                                    "<UTC time>-<config hash>)")
    # tasks
    multitask: bool = Field(True, description="False: concentration head only (single-task ablation)")
    plasma_tasks: bool = Field(True, description="add T_K / n_e_per_m3 heads where the data carry that ground truth")
    augmentation: bool = Field(True, description="train on the synthetic spectra of the training samples too")
    lines: list[dict] | None = Field(None, description="LineWindow dicts of the auxiliary lines (default: default_lines)")
    # input / target transforms
    normalisation: Literal["total", "log_total", "background", "none"] = Field(
        "total",
        description="divide each spectrum by its mean intensity (total), then log1p (log_total); or by the mean "
        "of the analyte lines' background windows (background: the local continuum); or raw counts (none)",
    )
    saturation: float | None = Field(
        None, gt=0.0, description="detector saturation (counts): channels at/above saturation*(1-margin) in any "
        "training spectrum are zeroed in the network input (training and prediction); None = no masking",
    )
    saturation_margin: float = Field(0.01, ge=0.0, lt=1.0, description="'near' saturation margin (fraction)")
    roi: Literal["full", "analyte"] = Field(
        "full", description="network input: the full spectrum, or the analyte lines' windows (window and "
        "background, widened by roi_margin_nm) plus covariate_windows; input_windows overrides both",
    )
    roi_margin_nm: float = Field(1.0, ge=0.0, description="nm added on both sides of each analyte line's span (roi)")
    covariate_windows: list[tuple[float, float]] = Field(
        default_factory=list, description="extra (low, high) nm ranges read with roi='analyte' (e.g. matrix lines)"
    )
    input_windows: list[tuple[float, float]] | None = Field(
        None, description="explicit (low, high) nm ranges the network reads (overrides roi); None = use roi"
    )
    channel_scaling: Literal["global", "channel", "none"] = "global"
    log_primary: bool = Field(False, description="fit the concentration on log scale (positive labels only)")
    # loss
    loss: Literal["huber", "logcosh"] = "huber"
    huber_delta: float = Field(1.0, gt=0.0)
    task_weighting: Literal["learned", "fixed"] = "learned"
    log_var_lr_factor: float = Field(
        1.0, gt=0.0, description="learning-rate multiplier of the task log-variances (how fast the weights adapt)"
    )
    fixed_weights: dict[str, float] = Field(default_factory=dict, description="task -> weight (fixed weighting; default 1)")
    # network
    stem_channels: int = Field(8, ge=1)
    block_channels: list[int] = Field(default_factory=lambda: [4, 8], min_length=1)
    pool: int = Field(
        4, ge=1, description="max-pool factor per stage; lowered for short (ROI) inputs so >= 8 positions remain"
    )
    dense_units: int = Field(64, ge=1)
    head_units: int = Field(32, ge=0, description="hidden units per task head (0: a linear head)")
    primary_head: Literal["features", "auxiliary", "both"] = Field(
        "features",
        description="concentration from the shared features (paper), from a linear calibration on the network's "
        "own auxiliary predictions, or the sum of both",
    )
    linear_skip: bool = Field(
        False, description="add a linear map of the input to every task output (linear extrapolation in the counts)"
    )
    calibration_fit: Literal["gradient", "least_squares", "curve"] = Field(
        "gradient",
        description="primary_head 'auxiliary': the calibration on the predicted line areas is trained with the "
        "network (gradient); or, after training, refitted by least squares on the training spectra; or (curve) "
        "a direct linear or quadratic curve on one line's predicted area, line and form chosen by "
        "leave-one-sample-out over the training samples (models.calibration_curve)",
    )
    masked_auxiliaries: bool = Field(
        False,
        description="also predict each auxiliary line area with that line's input window masked (extra heads); "
        "predictions then report those areas, so the trust residual does not see the window it checks",
    )
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    # optimisation
    batch_size: int = Field(32, ge=2)
    max_steps: int = Field(400, ge=1)
    eval_every: int = Field(20, ge=1)
    patience: int = Field(6, ge=1, description="evaluations without improvement before stopping")
    learning_rate: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(1e-4, ge=0.0)
    val_fraction: float = Field(0.2, ge=0.0, lt=1.0)
    seed: int = Field(0, ge=0)
    split_seed: int | None = Field(
        None, ge=0, description="seed of the by-sample validation split (None: seed); ensemble members share it"
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    shuffle_buffer_chunks: int = Field(8, ge=1)
    num_workers: int = Field(0, ge=0)
    num_threads: int | None = Field(None, ge=1, description="torch CPU threads while training (None: torch default)")
    checkpoint_dir: str | None = None
    progress_bar: bool = True
    # pretraining (phase 1 on e.g. physics-matched simulated spectra, then fine-tuning on the training sources)
    pretrain_uris: list[str] = Field(
        default_factory=list, description="spectra for a pretraining phase (same grid, analyte label); [] = none"
    )
    pretrain_steps: int = Field(0, ge=0, description="optimiser steps of the pretraining phase (0 = none)")


# --- evaluation ---


class EvaluationConfig(StrictModel):
    """Parameters of ``libs_pipeline.evaluation.run.run_evaluation`` and the evaluate flow.

    Report goes to ``<root>/reports/<run_name>/``; the split is by sample (given, or drawn by ``seed``), or every
    sample is predicted once by nested leave-one-sample-out on small campaigns.
    """

    dataset_uri: str = Field(..., min_length=1, description="spectra dataset (.zarr/.nc path or store URI)")
    root: str = Field(..., min_length=1, description="storage root; the report is written under <root>/reports/")
    run_name: str | None = Field(
        None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", description="report folder name (default: evaluate-<UTC time>)"
    )
    analyte: str | None = Field(None, description="label variable to evaluate (default: the dataset's first label)")
    model_dir: str | None = Field(None, description="trained neural model directory (libs_pipeline.models.load_model)")
    test_samples: list[str] | None = Field(None, description="held-out sample ids (default: drawn by seed)")
    test_fraction: float = Field(0.3, gt=0.0, lt=1.0, description="share of samples held out when not given")
    seed: int = Field(0, ge=0, description="seed of the held-out draw")
    lines: list[dict] | None = Field(None, description="LineWindow dicts (default: features.lines.default_lines)")
    univariate_line: str | None = Field(
        None, description="restrict the univariate baseline to this line (default: it chooses among all lines)"
    )
    pls_max_components: int = Field(10, ge=1, description="most PLS components the inner LOSO may choose")
    protocol: Literal["auto", "holdout", "nested"] = Field(
        "auto",
        description="holdout (test samples), nested (leave-one-sample-out of the model families, every sample "
        "predicted once), auto: nested when no test samples are given and a held-out split would be too small "
        "(evaluation.protocol.use_nested_protocol)",
    )


# --- trust ---


class TrustConfig(StrictModel):
    """Trust-score parameters: the false-flag rate to calibrate for, which parts enter the score, how they combine."""

    target_false_flag_rate: float = Field(0.05, gt=0.0, lt=0.5, description="flag rate on in-distribution data")
    combine: Literal["rms", "max"] = Field("max", description="score = max |z| over the parts, or their RMS")
    sample_flag_fraction: float = Field(0.5, gt=0.0, le=1.0, description="a sample is flagged above this shot fraction")
    outlier_z: float = Field(5.0, gt=1.0, description="validation residuals beyond this are left out of scale fits")
    reason_z: float = Field(3.0, gt=0.0, description="parts named in a reason: |z| at least this (else the top one)")
    per_total_areas: bool = Field(False, description="consistency on line areas per unit mean intensity (else raw)")
    intensity_part: bool = Field(True, description="measured mean intensity vs the level the outputs imply")
    plasma_parts: bool = Field(True, description="the model's plasma outputs (T_K, n_e) vs validation")
    spectral_parts: bool = Field(True, description="wavelength offset and shape vs the training reference spectrum")
    noise_part: bool = Field(True, description="shot noise per count (detector gain) vs the training spectra")
    spread_part: bool = Field(
        True, description="an ensemble's disagreement on the concentration vs in-distribution (ensembles only)"
    )
    min_noise_sigma: float = Field(
        0.05, gt=0.0, description="floor of the noise part's spread (log units): counts are never exactly Poisson"
    )
    min_offset_sigma_channels: float = Field(0.05, gt=0.0, description="floor of the wavelength-offset sigma")
    highpass_channels: int = Field(31, ge=3, description="running-mean width removed before spectral comparison")
    max_lag_channels: int = Field(10, ge=1, description="largest wavelength offset searched (channels)")
    threshold_folds: int = Field(
        5, ge=0, description="threshold from scores cross-fitted over this many sample folds (0: in-sample quantile)"
    )
    mc_samples: int = Field(20, ge=2, description="MC-dropout passes for the predictive uncertainty")
    min_part_spectra: int = Field(
        10, ge=5, description="a part needs this many spectra with finite values (else it is switched off)"
    )
    min_part_samples: int = Field(2, ge=1, description="a part needs spectra from this many samples (else off)")
    min_threshold_scores: int = Field(
        20, ge=5, description="the threshold needs this many finite scores (else every part is off, nothing flagged)"
    )
    loso_max_samples: int = Field(
        10, ge=0, description="up to this many samples the threshold folds leave one sample out each"
    )


# --- recalibration (registry / flows) ---

from pydantic import field_validator  # noqa: E402  (kept inside this section to avoid editing shared imports)

DEFAULT_SYNTHETIC_PER_SAMPLE = 200
CandidateName = Literal["univariate", "pls", "single_task", "multitask", "multitask_aug", "multitask_physics"]
#: Families recalibration compares by default (see libs_pipeline.candidates).
DEFAULT_CANDIDATES = ("univariate", "pls", "multitask", "multitask_aug")
#: SynthesisConfig fields the recalibration flow sets itself (not allowed in RecalibrationConfig.synthesis).
RECALIBRATION_SYNTHESIS_RESERVED = ("dataset_uri", "out_uri", "seed", "dask_address")
#: TrainingConfig fields the recalibration flow sets itself (not allowed in RecalibrationConfig.training).
RECALIBRATION_TRAINING_RESERVED = ("analyte", "measured_uris", "synthetic_uris", "seed", "model_dir")


def _section_of(model: type[StrictModel], name: str, doc: str, without: tuple[str, ...], **fields) -> type[StrictModel]:
    """A config section with ``model``'s fields (same types, defaults, bounds and descriptions) except ``without``;
    ``fields`` (``name=(type, Field(...))``) replace or add fields."""
    kept = {n: (f.annotation, f) for n, f in model.model_fields.items() if n not in without}
    return create_model(name, __base__=StrictModel, __doc__=doc, __module__=__name__, **{**kept, **fields})


RecalibrationSynthesis = _section_of(
    SynthesisConfig,
    "RecalibrationSynthesis",
    "SynthesisConfig fields of the recalibration's synthesize subflow (data, store, seed and cluster are set by the "
    "recalibration); ``per_sample`` 0 trains without augmentation.",
    RECALIBRATION_SYNTHESIS_RESERVED,
    per_sample=(int, Field(DEFAULT_SYNTHETIC_PER_SAMPLE, ge=0,
                           description="synthetic spectra per sample; 0 = train without augmentation")),
)
RecalibrationTraining = _section_of(
    TrainingConfig,
    "RecalibrationTraining",
    "TrainingConfig fields of the recalibration's challenger (data, analyte and seed are set by the recalibration).",
    RECALIBRATION_TRAINING_RESERVED,
    augmentation=(bool | None, Field(None, description="train on the synthetic spectra too; None = when synthesis "
                                                       "produced a store")),
)


class PromotionPolicy(StrictModel):
    """When a challenger replaces the champion: RMSEP better by a margin, in-distribution flag rate on target."""

    min_improvement: float = Field(0.02, ge=0.0, description="required RMSEP improvement (fraction or absolute)")
    improvement_mode: Literal["relative", "absolute"] = Field(
        "relative", description="relative: fraction of the champion's RMSEP; absolute: label units"
    )
    max_flag_rate: float = Field(
        0.10, ge=0.0, le=1.0, description="largest fraction of held-out (in-distribution) spectra flagged untrustworthy"
    )
    require_realistic_synthetic: bool = Field(
        True, description="refuse a challenger trained on synthetic spectra that failed the realism report"
    )


class RecalibrationConfig(StrictModel):
    """Parameters of the recalibration flow: which data and model, the held-out split, sub-step overrides, policy.

    ``training`` holds TrainingConfig fields (without the data URIs, which the flow fills in) and ``synthesis``
    the synthesis parameters; both, with the analyte, split and seed, enter the config hash that decides
    whether anything changed since the champion was trained (of these two sections, the fields given:
    ``section_overrides``).
    """

    root: str = Field("runs", description="store root: spectra/, synthetic/, models/, reports/ live under it")
    dataset: str = Field(..., min_length=1, description="spectra dataset name in the store")
    model_name: str | None = Field(None, description="registry name (default: the dataset name)")
    analyte: str | None = Field(None, description="label to calibrate (default: the dataset's first label)")
    heldout_fraction: float = Field(0.25, gt=0.0, lt=1.0, description="share of samples held out for the comparison")
    trust_fraction: float = Field(
        0.15, ge=0.0, lt=1.0,
        description="held-out protocol: share of the remaining samples reserved for trust calibration, neither "
        "trained on nor used for early stopping (0: scales from the early-stopping samples, which biases them low)",
    )
    split_seed: int = Field(0, ge=0, description="salt of the stable per-sample held-out assignment")
    seed: int = Field(0, ge=0, description="seed of synthesis and training")
    synthesis: RecalibrationSynthesis = Field(
        default_factory=lambda: RecalibrationSynthesis(per_sample=DEFAULT_SYNTHETIC_PER_SAMPLE, chunk_size=1024),
        description="SynthesisConfig fields for the synthesize subflow; per_sample 0 = train without augmentation",
    )
    training: RecalibrationTraining = Field(
        default_factory=RecalibrationTraining, description="TrainingConfig fields (max_steps, batch_size, ...)"
    )
    networks: int = Field(
        5, ge=1, le=20,
        description="networks of the held-out protocol's multitask challenger, trained with seeds seed, seed+1, ... "
        "and served as one deep ensemble (averaged; their spread is a trust part); 1 = a single network",
    )
    protocol: Literal["auto", "holdout", "loso"] = Field(
        "auto",
        description="how candidates are compared: holdout (samples held out by a stable hash), loso (leave-one-"
        "sample-out over every labelled sample, for small campaigns), auto (loso when a held-out split would be too "
        "small to mean anything: see evaluation.nested.use_nested_protocol)",
    )
    candidates: list[CandidateName] = Field(
        default_factory=lambda: list(DEFAULT_CANDIDATES),
        min_length=1,
        description="model families trained and compared; the best honest one is served (loso protocol: all of "
        "them; holdout protocol: the multitask challenger plus the baselines named here)",
    )
    trust: TrustConfig = Field(default_factory=TrustConfig)
    promotion: PromotionPolicy = Field(default_factory=PromotionPolicy)
    dask_address: str | None = Field(None, description="scheduler address for synthesis (None: local)")

    @field_validator("synthesis", mode="before")
    @classmethod
    def _synthesis_reserved(cls, value: object) -> object:
        reserved = sorted(set(RECALIBRATION_SYNTHESIS_RESERVED) & set(value)) if isinstance(value, dict) else []
        if reserved:
            raise ValueError(f"synthesis: {reserved} are set by the recalibration flow, not here")
        return value

    @field_validator("training", mode="before")
    @classmethod
    def _training_reserved(cls, value: object) -> object:
        reserved = sorted(set(RECALIBRATION_TRAINING_RESERVED) & set(value)) if isinstance(value, dict) else []
        if reserved:
            raise ValueError(f"training: {reserved} are set by the recalibration flow, not by overrides")
        return value

    def section_overrides(self, section: str, mode: Literal["python", "json"] = "python") -> dict:
        """The fields given in ``synthesis`` or ``training`` (what the config hash covers, and what overrides the
        defaults downstream)."""
        if section not in ("synthesis", "training"):
            raise ValueError(f"section must be 'synthesis' or 'training', got {section!r}")
        return getattr(self, section).model_dump(mode=mode, exclude_unset=True)

    @property
    def registry_name(self) -> str:
        return self.model_name or self.dataset
