"""Apply a trained model with its trust calibration: concentration, predictive uncertainty, trust score, flag, reason.

Glue between the model's outputs, ``libs_pipeline.features`` (measured line areas) and the trust scores; per
spectrum and per sample (``libs_pipeline.prediction`` resolves the model and writes the tables).

Any servable model works, duck-typed: ``.analyte`` (str), ``.lines`` (LineWindow dicts), ``.wavelength``,
``.predict(intensity) -> {task: array}`` with at least the analyte (a CNN adds ``<line>:area`` and plasma
outputs) and optionally ``.predict_with_uncertainty`` (else the uncertainty is NaN).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import xarray as xr

from libs_pipeline.config import TrustConfig
from libs_pipeline.features.lines import LineWindow
from libs_pipeline.spectra.dataset import spectrum_sample_ids
from libs_pipeline.spectra.grid import intensity_on_grid
from libs_pipeline.trust.calibration import TrustCalibration
from libs_pipeline.trust.fitting import fit_trust_calibration, fit_trust_calibration_oof
from libs_pipeline.trust.measurements import (
    CORRELATION,
    OFFSET_CHANNELS,
    SpectralReference,
    highpass_sum,
    measure_spectra,
)
from libs_pipeline.trust.scores import sample_trust, trust_scores

if TYPE_CHECKING:
    from libs_pipeline.models import TrainedModel

CHUNK_SPECTRA = 1024


@dataclass
class PredictionTables:
    """Per-spectrum and per-sample predictions with trust."""

    spectra: pd.DataFrame
    samples: pd.DataFrame


def model_lines(model: TrainedModel) -> list[LineWindow]:
    """The model's lines as LineWindow (given as LineWindow dicts or LineWindow objects)."""
    return [d if isinstance(d, LineWindow) else LineWindow.from_dict(d) for d in model.lines]


def model_grid_intensity(ds: xr.Dataset, model: TrainedModel, rows: slice | np.ndarray, resample: bool = False) -> np.ndarray:
    """Intensity of ``rows`` on the model's wavelength grid: equal grids pass, others only with ``resample``."""
    return intensity_on_grid(ds, model.wavelength, rows, resample)


def _chunks(n: int, size: int = CHUNK_SPECTRA):
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def _predict_dataset(
    model: TrainedModel,
    ds: xr.Dataset,
    resample: bool,
    mc_samples: int | None,
    seed: int,
    reference: SpectralReference | None,
):
    """Deterministic predictions, MC-dropout std of every task (or None) and the trust measurements."""
    lines = model_lines(model)
    preds, stds, measured = [], [], []
    for rows in _chunks(ds.sizes["spectrum"]):
        x = model_grid_intensity(ds, model, rows, resample)
        preds.append(model.predict(x))
        if mc_samples and hasattr(model, "predict_with_uncertainty"):
            stds.append(model.predict_with_uncertainty(x, n_samples=mc_samples, seed=seed)[1])
        measured.append(measure_spectra(x, model.wavelength, lines, reference))
    if not preds:
        raise ValueError("no spectra to predict")
    pred = {k: np.concatenate([p[k] for p in preds]) for k in preds[0]}
    std = {k: np.concatenate([s[k] for s in stds]) for k in stds[0]} if stds else None
    return pred, std, pd.concat(measured, ignore_index=True)


def calibrate_model_trust(
    model: TrainedModel,
    train: xr.Dataset,
    validation: xr.Dataset,
    config: TrustConfig | None = None,
    resample: bool = False,
) -> TrustCalibration:
    """Fit the trust calibration of ``model``: line calibrations and the spectral reference on its measured
    training spectra; part scales and the threshold on ``validation`` (held-out in-distribution samples the
    network did not train on). Parts the validation data cannot calibrate are off (``disabled_parts``); for
    small campaigns prefer ``calibrate_trust_from_oof``, which needs no held-out samples."""
    config = config or TrustConfig()
    analyte = model.analyte
    for ds, what in ((train, "train"), (validation, "validation")):
        if analyte not in ds:
            raise ValueError(f"{what} spectra have no label variable {analyte!r}")
    overlap = set(map(str, np.unique(train["sample_id"].values))) & set(map(str, np.unique(validation["sample_id"].values)))
    if overlap:
        raise ValueError(f"validation samples {sorted(overlap)} are also training samples; trust needs held-out samples")
    lines = model_lines(model)
    reference = None
    if config.spectral_parts:
        reference = SpectralReference.fit(
            (model_grid_intensity(train, model, rows, resample) for rows in _chunks(train.sizes["spectrum"])),
            model.wavelength,
            config.highpass_channels,
            config.max_lag_channels,
        )
    pred, _, val_measured = _predict_dataset(model, validation, resample, None, 0, reference)
    train_measured = pd.concat(
        [
            measure_spectra(model_grid_intensity(train, model, rows, resample), model.wavelength, lines)
            for rows in _chunks(train.sizes["spectrum"])
        ],
        ignore_index=True,
    )
    return fit_trust_calibration(
        analyte,
        train_measured,
        np.asarray(train[analyte].values, dtype=np.float64),
        pred,
        val_measured,
        lines,
        train_groups=spectrum_sample_ids(train),
        val_groups=spectrum_sample_ids(validation),
        units=train[analyte].attrs.get("units"),
        config=config,
        spectral=reference,
    )


def _sample_rows(ds: xr.Dataset) -> dict[str, np.ndarray]:
    """Row indices of every sample, in order of first appearance."""
    g = spectrum_sample_ids(ds)
    return {sid: np.flatnonzero(g == sid) for sid in dict.fromkeys(g.tolist())}


def measure_training_cross_fitted(
    model: TrainedModel, train: xr.Dataset, config: TrustConfig, resample: bool = False
) -> tuple[pd.DataFrame, SpectralReference | None, str | None]:
    """Trust measurements of the training spectra (rows aligned with ``train``), the spectral reference of all
    of them, and why it could not be fitted (else None).

    With spectral parts on, each sample's wavelength offset and correlation are measured against the reference
    of the other samples (cross-fitted: a spectrum is never compared with a reference that contains it); a
    single training sample can only be compared with the reference of itself (in-sample, optimistic).
    """
    lines = model_lines(model)
    wl = np.asarray(model.wavelength, dtype=np.float64)
    by_sample = _sample_rows(train)
    tables, sums = [], {}
    for rows in by_sample.values():
        x = model_grid_intensity(train, model, rows, resample)
        tables.append(measure_spectra(x, wl, lines).set_axis(rows))
    measured = pd.concat(tables).sort_index()
    if not config.spectral_parts:
        return measured.reset_index(drop=True), None, None
    for sid, rows in by_sample.items():
        sums[sid] = highpass_sum(model_grid_intensity(train, model, rows, resample), config.highpass_channels)
    total, count = sum(sums.values()), train.sizes["spectrum"]
    try:
        reference = SpectralReference.from_sum(total, count, wl, config.highpass_channels, config.max_lag_channels)
    except ValueError as exc:
        return measured.reset_index(drop=True), None, f"spectral reference: {exc}"
    offset = np.full(count, np.nan)
    corr = np.full(count, np.nan)
    for sid, rows in by_sample.items():
        others = count - rows.size
        ref = reference
        if others > 0:
            try:
                ref = SpectralReference.from_sum(
                    total - sums[sid], others, wl, config.highpass_channels, config.max_lag_channels
                )
            except ValueError:
                continue  # the other samples alone have no lines: this sample's spectral values stay NaN
        offset[rows], corr[rows] = ref.measure(model_grid_intensity(train, model, rows, resample))
    measured[OFFSET_CHANNELS] = offset
    measured[CORRELATION] = corr
    return measured.reset_index(drop=True), reference, None


def calibrate_trust_from_oof(
    model: TrainedModel,
    train: xr.Dataset,
    oof_predictions: Mapping[str, np.ndarray],
    config: TrustConfig | None = None,
    resample: bool = False,
) -> TrustCalibration:
    """Trust calibration of ``model`` (any duck-typed servable model) from its training spectra alone.

    ``train``: all labelled training spectra; ``oof_predictions[task]``: aligned with ``train``'s rows, each
    sample's rows predicted by a model fitted without that sample (the caller computes them, e.g. leave one
    sample out with ``evaluation.nested.loso_predictions``). Cross-fitted by sample: the predictions, the concentrations the line areas imply, the
    spectral offset/correlation (reference without the row's sample) and the threshold scores (one sample per
    fold up to ``TrustConfig.loso_max_samples`` samples). In-sample: the line calibrations, the spectral
    reference and the part scales that are kept, all fitted on every training spectrum like the deployed model.
    """
    config = config or TrustConfig()
    analyte = model.analyte
    if analyte not in train:
        raise ValueError(f"train spectra have no label variable {analyte!r}")
    y = np.asarray(train[analyte].values, dtype=np.float64)
    if not np.isfinite(y).all():
        raise ValueError(
            f"train spectra must all be labelled: {int((~np.isfinite(y)).sum())} of {y.size} have no finite {analyte!r}"
        )
    n = train.sizes["spectrum"]
    for task, values in oof_predictions.items():
        if np.asarray(values).reshape(-1).shape[0] != n:
            raise ValueError(
                f"oof_predictions[{task!r}] has {np.asarray(values).reshape(-1).shape[0]} rows, train has {n} spectra"
            )
    measured, reference, spectral_problem = measure_training_cross_fitted(model, train, config, resample)
    calibration = fit_trust_calibration_oof(
        analyte,
        measured,
        y,
        oof_predictions,
        model_lines(model),
        spectrum_sample_ids(train),
        units=train[analyte].attrs.get("units"),
        config=config,
        spectral=reference,
    )
    if spectral_problem:
        calibration.disabled_parts.update({"wavelength": spectral_problem, "shape": spectral_problem})
    return calibration


def predict_with_trust(
    model: TrainedModel,
    calibration: TrustCalibration,
    ds: xr.Dataset,
    mc_samples: int = 20,
    seed: int = 0,
    resample: bool = False,
) -> PredictionTables:
    """Per spectrum: sample_id, shot, concentration, uncertainty (MC-dropout std, or the spread of an ensemble),
    trust_score (flag when above the threshold), error_score (ranks how likely the number is wrong:
    ``trust.scores.error_score``), flag, reason, score parts; per sample: the shots aggregated (``sample_trust``)."""
    if calibration.analyte != model.analyte:
        raise ValueError(f"trust calibration is for {calibration.analyte!r} but the model predicts {model.analyte!r}")
    for var in ("intensity", "sample_id"):
        if var not in ds:
            raise ValueError(f"spectra dataset has no variable {var!r}")
    pred, std, measured = _predict_dataset(model, ds, resample, mc_samples, seed, calibration.spectral)
    table = trust_scores(calibration, pred, measured)
    n = len(table)
    sids = spectrum_sample_ids(ds)
    uncertainty = std[model.analyte].astype(np.float64) if std is not None else np.full(n, np.nan)
    head = pd.DataFrame(
        {
            "spectrum": np.asarray(ds["spectrum"].values) if "spectrum" in ds.coords else np.arange(n),
            "sample_id": sids,
            "shot": np.asarray(ds["shot"].values) if "shot" in ds else np.zeros(n, dtype=np.int64),
            "analyte": calibration.analyte,
            "units": calibration.units or "",
            "concentration": table["prediction"].to_numpy(),
            "uncertainty": uncertainty,
            "trust_score": table["score"].to_numpy(),
            "error_score": table["error_score"].to_numpy(),
            "flag": table["flag"].to_numpy(),
            "reason": table["reason"].to_numpy(),
        }
    )
    rest = table.drop(columns=["prediction", "score", "error_score", "flag", "reason"]).reset_index(drop=True)
    spectra = pd.concat([head, rest], axis=1)
    samples = sample_trust(table.reset_index(drop=True), sids, calibration, uncertainty if std is not None else None)
    samples = samples.rename(columns={"prediction": "concentration", "score": "trust_score"})
    samples.insert(1, "analyte", calibration.analyte)
    samples.insert(2, "units", calibration.units or "")
    if "uncertainty" not in samples:
        samples["uncertainty"] = np.nan
    order = ["sample_id", "analyte", "units", "n_spectra", "concentration", "uncertainty", "trust_score",
             "error_score", "flagged_fraction", "flag", "reason", "top_part"]
    return PredictionTables(spectra=spectra, samples=samples[order])
