"""Recalibration as plain Python: compare candidate families on the same samples, serve the best honest one.

Small campaigns: ``loso_selection`` (leave-one-sample-out comparison, choice and refit) and ``loso_run`` (one
such step on a stored spectra version). Larger campaigns: ``heldout_split`` (the stable held-out split),
``challenger_training`` (the network challenger's config and trust), ``heldout_comparison`` (every method on the
held-out samples), ``holdout_baseline`` (a baseline served instead). Both: ``decisions`` (protocol, promotion),
``realism_gate``, ``manifests`` (the registry manifest), ``outcome`` (the typed record of one run) and
``summary`` (its markdown). The recalibrate flow wires these as tasks.
"""

from libs_pipeline.recalibration.challenger_training import (
    calibrate_trust,
    label_challenger,
    synthesis_request,
    training_config,
)
from libs_pipeline.recalibration.decisions import champion_family, choose_protocol, decide_loso_promotion
from libs_pipeline.recalibration.heldout_comparison import Comparison, compare_on_heldout
from libs_pipeline.recalibration.heldout_split import (
    TRAIN_SUFFIX,
    TrainingSplit,
    labelled_samples,
    write_training_split,
)
from libs_pipeline.recalibration.holdout_baseline import (
    SERVABLE_BASELINES,
    baseline_to_serve,
    best_on_heldout,
    serve_heldout_baseline,
    served_baseline_record,
)
from libs_pipeline.recalibration.loso_run import NoLabelsError, labelled_spectra, run_loso_recalibration
from libs_pipeline.recalibration.loso_selection import (
    CandidateComparison,
    Selection,
    ServedModel,
    choose_served,
    compare_by_loso,
    fit_served,
)
from libs_pipeline.recalibration.manifests import heldout_manifest, loso_manifest
from libs_pipeline.recalibration.outcome import (
    CHALLENGER,
    CHAMPION,
    RecalibrationOutcome,
    RunFolders,
    discard_staging,
    run_name,
    staging_dir,
    write_report,
)
from libs_pipeline.recalibration.realism_gate import RealismEligibility, augmented_families, realism_exclusions
from libs_pipeline.recalibration.summary import STATUSES, metrics_rows, summary_markdown

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "CandidateComparison",
    "Comparison",
    "NoLabelsError",
    "RealismEligibility",
    "RecalibrationOutcome",
    "RunFolders",
    "SERVABLE_BASELINES",
    "STATUSES",
    "Selection",
    "ServedModel",
    "TRAIN_SUFFIX",
    "TrainingSplit",
    "augmented_families",
    "baseline_to_serve",
    "best_on_heldout",
    "calibrate_trust",
    "champion_family",
    "choose_protocol",
    "choose_served",
    "compare_by_loso",
    "compare_on_heldout",
    "decide_loso_promotion",
    "discard_staging",
    "fit_served",
    "heldout_manifest",
    "label_challenger",
    "labelled_samples",
    "labelled_spectra",
    "loso_manifest",
    "metrics_rows",
    "realism_exclusions",
    "run_loso_recalibration",
    "run_name",
    "serve_heldout_baseline",
    "served_baseline_record",
    "staging_dir",
    "summary_markdown",
    "synthesis_request",
    "training_config",
    "write_report",
    "write_training_split",
]
