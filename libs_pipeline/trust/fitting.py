"""Fitting a trust calibration (what is stored as ``trust.json`` beside the model): per-line area->concentration
relations (training data); on in-distribution evidence the scales of every part (line-area residuals and
consistency, intensity level, plasma outputs, wavelength offset, spectral shape, shot noise and an ensemble's
spread) and the flag threshold for the target false-flag rate. The evidence is either held-out validation spectra (``fit_trust_calibration``) or
the training spectra with out-of-fold predictions (``fit_trust_calibration_oof``, for small campaigns).

A part that cannot be calibrated (too few spectra or samples, zero spread, no such model output, identically
zero residuals) is switched off and its reason kept in ``TrustCalibration.disabled_parts``; with every part off
the calibration is still valid and flags nothing. Minimums (``TrustConfig``): ``min_part_spectra`` finite
values and ``min_part_samples`` samples per part, features + 1 + ``min_part_spectra`` spectra for the intensity
regression, ``min_threshold_scores`` finite scores for the threshold.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from libs_pipeline.candidates.ensemble import SPREAD_SUFFIX, spread_task
from libs_pipeline.config import TrustConfig
from libs_pipeline.trust.calibration import TrustCalibration
from libs_pipeline.trust.measurements import (
    CORRELATION,
    MEAN_INTENSITY,
    NOISE_PER_COUNT,
    OFFSET_CHANNELS,
    SpectralReference,
)
from libs_pipeline.trust.scales import (
    IntensityModel,
    LineCalibration,
    ResidualScale,
    RobustScale,
    area_column,
    consistency_area,
    dissimilarity,
    intensity_features,
    prediction_inflation,
    sample_precision,
)
from libs_pipeline.trust.scores import combine_parts, trust_parts


def line_label(line: object) -> tuple[str, str]:
    """(name, display label) of a line given as a LineWindow, its dict, or a plain name.

    Line names already read like "Cu I 327.40"; a name without its element gets "<element> <center> nm".
    """
    if isinstance(line, str):
        return line, line
    get = line.get if isinstance(line, Mapping) else lambda k, default=None: getattr(line, k, default)
    name = get("name")
    if not name:
        raise ValueError(f"line {line!r} has no name")
    element, center = get("element"), get("center_nm")
    if element and center is not None and not str(name).startswith(str(element)):
        return str(name), f"{element} {float(center):.1f} nm ({name})"
    return str(name), str(name)


def calibrate_threshold(scores: np.ndarray, target_false_flag_rate: float, min_scores: int = 20) -> float:
    """The (1 - rate) quantile of in-distribution scores: a score above it is flagged."""
    s = np.asarray(scores, dtype=np.float64)
    s = s[np.isfinite(s)]
    if s.size < min_scores:
        raise ValueError(f"threshold calibration needs >= {min_scores} finite validation scores, got {s.size}")
    if not 0 < target_false_flag_rate < 1:
        raise ValueError(f"target_false_flag_rate must be in (0, 1), got {target_false_flag_rate}")
    return float(np.quantile(s, 1.0 - target_false_flag_rate, method="linear"))


#: Residuals smaller than this fraction of the reference's magnitude count as identically zero.
ZERO_RTOL = 1e-6
#: Within a sample, a prediction whose residual sd from a straight line in the area is below this fraction of its
#: own sd is an exact linear function of the area (a univariate model of that very line).
LINEAR_RTOL = 1e-4


@dataclass
class _Evidence:
    """Per-spectrum material the part scales are fitted on: held-out validation rows or out-of-fold training rows.

    ``implied[line]``: concentration implied by each row's measured area through a line calibration that did not
    see the row's sample; ``line_fit(rows)``: (line calibrations, reasons for lines that failed) kept by a
    calibration fitted on ``rows``; ``fixed_off``: parts off before any fitting (missing output, config).
    """

    analyte: str
    named: list[tuple[str, str]]
    predictions: dict[str, np.ndarray]
    measured: pd.DataFrame
    implied: dict[str, np.ndarray]
    line_fit: Callable[[np.ndarray], tuple[dict[str, LineCalibration], dict[str, str]]]
    groups: np.ndarray | None
    per_total: bool
    plasma_tasks: list[str]
    spectral: SpectralReference | None
    units: str | None
    fixed_off: dict[str, str]


def _shortage(ok: np.ndarray, groups: np.ndarray | None, config: TrustConfig, need: int | None = None) -> str | None:
    """Why too few finite spectra (or samples) back a part; None when there are enough."""
    need = config.min_part_spectra if need is None else need
    n = int(np.sum(ok))
    if n < need:
        return f"only {n} spectra with finite values, need >= {need}"
    if groups is not None:
        k = len(np.unique(np.asarray(groups)[ok]))
        if k < config.min_part_samples:
            return f"only {k} sample(s) with finite values, need >= {config.min_part_samples}"
    return None


def _residual_part(
    residual: np.ndarray, reference: np.ndarray, groups: np.ndarray | None, config: TrustConfig, name: str
) -> tuple[ResidualScale | None, str | None]:
    """(scale, None), or (None, why the part cannot be calibrated)."""
    r = np.asarray(residual, dtype=np.float64)
    p = np.asarray(reference, dtype=np.float64)
    ok = np.isfinite(r) & np.isfinite(p)
    problem = _shortage(ok, groups, config)
    if problem:
        return None, problem
    size = max(float(np.max(np.abs(p[ok]))), float(np.finfo(np.float64).tiny))
    if float(np.max(np.abs(r[ok]))) <= ZERO_RTOL * size:
        return None, "residuals are identically zero, so there is nothing to check"
    try:
        return ResidualScale.fit(r[ok], p[ok], config.outlier_z, name=name), None
    except ValueError as exc:
        return None, str(exc)


def _robust_part(
    values: np.ndarray, groups: np.ndarray | None, config: TrustConfig, name: str, floor: float = 0.0
) -> tuple[RobustScale | None, str | None]:
    """(scale, None), or (None, why the part cannot be calibrated)."""
    v = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(v)
    problem = _shortage(ok, groups, config)
    if problem:
        return None, problem
    if floor <= 0 and np.ptp(v[ok]) == 0:
        return None, f"values are all equal ({v[ok][0]:.4g}): zero spread"
    try:
        return RobustScale.fit(v[ok], floor, name), None
    except ValueError as exc:
        return None, str(exc)


def _linear_in_area(prediction: np.ndarray, area: np.ndarray, groups: np.ndarray | None) -> bool:
    """True when within every sample the prediction is an exact linear function of the area (a univariate
    model of that line): the consistency part would only compare two calibrations of the same number."""
    c = np.asarray(prediction, dtype=np.float64)
    a = np.asarray(area, dtype=np.float64)
    ok = np.isfinite(c) & np.isfinite(a)
    g = np.zeros(c.size, dtype=int) if groups is None else np.asarray(groups)
    checked = 0
    for sid in np.unique(g[ok]):
        m = ok & (g == sid)
        if m.sum() < 3 or np.ptp(a[m]) == 0 or np.std(c[m]) == 0:
            continue
        design = np.column_stack([np.ones(int(m.sum())), a[m]])
        coef, *_ = np.linalg.lstsq(design, c[m], rcond=None)
        if np.std(c[m] - design @ coef) > LINEAR_RTOL * np.std(c[m]):
            return False
        checked += 1
    return checked > 0


def _held_out_residuals(design: np.ndarray, target: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Each sample's residuals under the least squares fitted without that sample, divided by that fit's
    prediction-interval inflation sqrt(1 + h) (``sample_precision`` of the other samples): what a new sample's
    residual is, on the scale the deployed part divides by. In-sample residuals of k coefficients on n samples are
    shrunk (about sqrt((n - k) / n) at the sample level) and would give too tight a scale."""
    resid = np.empty_like(target)
    for name in np.unique(groups):
        held = groups == name
        c, *_ = np.linalg.lstsq(design[~held], target[~held], rcond=None)
        inflation = prediction_inflation(design[held], sample_precision(design[~held], groups[~held]))
        resid[held] = (target[held] - design[held] @ c) / inflation
    return resid


def _intensity_part(
    features: Mapping[str, np.ndarray], level: np.ndarray, groups: np.ndarray | None, config: TrustConfig
) -> tuple[IntensityModel | None, str | None]:
    """Least squares of log(mean intensity) on the standardised scale-free outputs; it needs at least
    (features + 1) + ``min_part_spectra`` spectra, so the residual scale rests on that many degrees of freedom."""
    x = np.column_stack([np.asarray(v, dtype=np.float64) for v in features.values()])
    level = np.asarray(level, dtype=np.float64)
    target = np.log(np.where(level > 0, level, np.nan))
    ok = np.isfinite(x).all(axis=1) & np.isfinite(target)
    k = x.shape[1]
    problem = _shortage(ok, groups, config, k + 1 + config.min_part_spectra)
    if problem:
        return None, f"{problem} (positive mean intensity and finite outputs; the fit has {k + 1} coefficients)"
    mean, sd = x[ok].mean(axis=0), x[ok].std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    design = np.column_stack([np.ones(int(ok.sum())), (x[ok] - mean) / sd])
    coef, *_ = np.linalg.lstsq(design, target[ok], rcond=None)
    g = None if groups is None else np.asarray(groups)[ok]
    if g is None or np.unique(g).size < 2:
        resid, precision = target[ok] - design @ coef, None
    else:
        resid = _held_out_residuals(design, target[ok], g)
        precision = sample_precision(design, g)
    scale, why = _robust_part(resid, g, config, "intensity")
    if scale is None:
        return None, f"residuals of log(mean intensity): {why}"
    return IntensityModel(list(features), mean, sd, coef, scale, precision), None


def _fit_line_calibrations(
    measured: pd.DataFrame, concentration: np.ndarray, groups: np.ndarray | None, names: Sequence[str], per_total: bool
) -> tuple[dict[str, LineCalibration], dict[str, str]]:
    """Each line's area -> concentration calibration, and the reason for every line that cannot be fitted."""
    y = np.asarray(concentration, dtype=np.float64)
    if groups is not None:
        n_samples = len(np.unique(np.asarray(groups)[np.isfinite(y)]))
        if n_samples < 2:
            why = f"line calibration needs >= 2 labelled training samples, got {n_samples}"
            return {}, {n: why for n in names}
    cals, problems = {}, {}
    for n in names:
        try:
            cals[n] = LineCalibration.fit(consistency_area(measured, n, per_total), y, groups)
        except ValueError as exc:
            problems[n] = str(exc)
    return cals, problems


def _fit_parts(ev: _Evidence, rows: np.ndarray, config: TrustConfig, off: Mapping[str, str]) -> TrustCalibration:
    """Every part's scale from the evidence ``rows`` (threshold left at a placeholder); parts in ``off`` stay off,
    parts that cannot be fitted are switched off with the reason."""
    names = [n for n, _ in ev.named]
    preds = {k: v[rows] for k, v in ev.predictions.items()}
    measured = ev.measured.iloc[rows]
    groups = None if ev.groups is None else ev.groups[rows]
    c_pred = preds[ev.analyte]
    disabled = dict(off)
    line_cal, line_problems = ev.line_fit(rows)
    aux_scales, cons_scales = {}, {}
    for n in names:
        if f"aux:{n}" not in disabled:
            area = measured[area_column(n)].to_numpy(dtype=np.float64)
            predicted = preds[area_column(n)]
            scale, why = _residual_part(area - predicted, predicted, groups, config, f"aux:{n}")
            if scale is None:
                disabled[f"aux:{n}"] = why
            else:
                aux_scales[n] = scale
        if f"cons:{n}" in disabled:
            continue
        if n not in line_cal:
            disabled[f"cons:{n}"] = f"line calibration: {line_problems[n]}"
        elif _linear_in_area(c_pred, consistency_area(measured, n, ev.per_total), groups):
            disabled[f"cons:{n}"] = (
                f"residuals are identically zero: the model's {ev.analyte} prediction is an exact linear function "
                "of this line's area"
            )
        else:
            scale, why = _residual_part(c_pred - ev.implied[n][rows], c_pred, groups, config, f"cons:{n}")
            if scale is None:
                disabled[f"cons:{n}"] = why
            else:
                cons_scales[n] = scale
    intensity = None
    if "intensity" not in disabled:
        features = intensity_features(ev.analyte, ev.plasma_tasks, preds)
        intensity, why = _intensity_part(features, measured[MEAN_INTENSITY].to_numpy(dtype=np.float64), groups, config)
        if intensity is None:
            disabled["intensity"] = why
    plasma_scales = {}
    for task in ev.plasma_tasks:
        if f"plasma:{task}" not in disabled:
            scale, why = _robust_part(preds[task], groups, config, f"plasma:{task}")
            if scale is None:
                disabled[f"plasma:{task}"] = why
            else:
                plasma_scales[task] = scale
    spectral_scales: dict[str, RobustScale | None] = {"wavelength": None, "shape": None}
    if ev.spectral is not None:
        values = {
            "wavelength": (measured[OFFSET_CHANNELS].to_numpy(dtype=np.float64), config.min_offset_sigma_channels),
            "shape": (dissimilarity(measured[CORRELATION].to_numpy()), 0.0),
        }
        for part, (v, floor) in values.items():
            if part not in disabled:
                spectral_scales[part], why = _robust_part(v, groups, config, part, floor)
                if spectral_scales[part] is None:
                    disabled[part] = why
    spread_scale = None
    if "spread" not in disabled:
        spread = preds[spread_task(ev.analyte)]
        log_spread = np.log(np.where(spread > 0, spread, np.nan))
        spread_scale, why = _robust_part(log_spread, groups, config, "spread")
        if spread_scale is None:
            disabled["spread"] = why
    noise_scale = None
    if "noise" not in disabled:
        noise_scale, why = _robust_part(
            measured[NOISE_PER_COUNT].to_numpy(dtype=np.float64), groups, config, "noise", config.min_noise_sigma
        )
        if noise_scale is None:
            disabled["noise"] = why
    use_spectral = any(s is not None for s in spectral_scales.values())
    return TrustCalibration(
        analyte=ev.analyte,
        units=ev.units,
        lines=names,
        line_labels=dict(ev.named),
        line_calibrations=line_cal,
        aux_scales=aux_scales,
        consistency_scales=cons_scales,
        threshold=1.0,
        per_total_areas=ev.per_total,
        intensity=intensity,
        plasma_scales=plasma_scales,
        spectral=ev.spectral if use_spectral else None,
        wavelength_scale=spectral_scales["wavelength"],
        shape_scale=spectral_scales["shape"],
        noise_scale=noise_scale,
        spread_scale=spread_scale,
        combine=config.combine,
        target_false_flag_rate=config.target_false_flag_rate,
        sample_flag_fraction=config.sample_flag_fraction,
        reason_z=config.reason_z,
        n_validation_spectra=int(rows.size),
        n_validation_samples=0 if groups is None else int(len(np.unique(groups))),
        disabled_parts=disabled,
    )


def _parts(cal: TrustCalibration, ev: _Evidence, rows: np.ndarray) -> pd.DataFrame:
    """Every enabled part's z of the evidence ``rows`` under ``cal`` (no columns when every part is off)."""
    if not cal.active:
        return pd.DataFrame(index=np.arange(rows.size))
    parts = trust_parts(cal, {k: v[rows] for k, v in ev.predictions.items()}, ev.measured.iloc[rows])
    return parts[cal.part_names()].reset_index(drop=True)


#: |z| quantile a well-calibrated part reaches at the in-distribution tail (a normal's 95 %).
NOMINAL_TAIL = 1.96


def part_tails(parts: Sequence[pd.DataFrame], target_false_flag_rate: float) -> dict[str, float]:
    """Per part, max(1, its cross-fitted (1 - rate) |z| quantile / 1.96): a part whose out-of-sample scores are
    wider than its in-sample scale promised (few samples, an extreme sample) is divided by this before the parts
    are combined, so it does not set the threshold for the parts that are well calibrated."""
    values: dict[str, list[np.ndarray]] = {}
    for frame in parts:
        for col in frame.columns:
            values.setdefault(col, []).append(np.abs(frame[col].to_numpy(dtype=np.float64)))
    tails = {}
    for col, chunks in values.items():
        v = np.concatenate(chunks)
        v = v[np.isfinite(v)]
        if v.size:
            tails[col] = max(1.0, float(np.quantile(v, 1.0 - target_false_flag_rate)) / NOMINAL_TAIL)
    return tails


def _threshold_folds(groups: np.ndarray | None, config: TrustConfig) -> list[np.ndarray]:
    """Sample folds for the threshold: one sample per fold up to ``loso_max_samples`` samples, else
    ``threshold_folds`` folds; [] (in-sample quantile) without groups, with < 4 samples or threshold_folds=0."""
    if groups is None or config.threshold_folds == 0:
        return []
    n_samples = len(np.unique(groups))
    return sample_folds(groups, n_samples if n_samples <= config.loso_max_samples else config.threshold_folds)


def _calibrate(ev: _Evidence, config: TrustConfig) -> TrustCalibration:
    """Scales on all evidence rows, threshold from scores cross-fitted by sample (see ``_threshold_folds``)."""
    everything = np.arange(len(ev.measured))
    cal = _fit_parts(ev, everything, config, ev.fixed_off)
    if not cal.active:
        return _inactive(cal, "every part is disabled (see disabled_parts)")
    names = cal.part_names()
    in_sample_parts = _parts(cal, ev, everything)
    folds = _threshold_folds(ev.groups, config)
    if folds:
        # each fold is scored with everything fitted without its samples, as a new sample would be; parts whose
        # out-of-sample tails are wide are equalised (``part_tails``) before the threshold is set
        fold_parts = []
        for fold in folds:
            rest = np.setdiff1d(everything, fold)
            fold_cal = _fit_parts(ev, rest, config, cal.disabled_parts)
            fold_parts.append((fold, fold_cal.part_names(), _parts(fold_cal, ev, fold)))
        cal.part_tails = {p: t for p, t in part_tails([f for _, _, f in fold_parts], config.target_false_flag_rate).items()
                          if p in names}
        scores = np.empty(everything.size)
        for fold, fold_names, frame in fold_parts:
            scores[fold] = combine_parts(frame, [p for p in fold_names if p in names], cal.combine, cal.part_tails)
        in_sample = combine_parts(in_sample_parts, names, cal.combine, cal.part_tails)
        loso = " (leave one sample out)" if len(folds) == len(np.unique(ev.groups)) else ""
        method = f"cross-fitted by sample, {len(folds)} folds{loso}"
    else:
        in_sample = scores = combine_parts(in_sample_parts, names, cal.combine)
        if ev.groups is None:
            method = "in-sample quantile (no sample groups)"
        else:
            method = f"in-sample quantile ({len(np.unique(ev.groups))} samples: too few to cross-fit)"
    n_finite = int(np.isfinite(scores).sum())
    if n_finite < config.min_threshold_scores:
        cal.disable_all(f"threshold: only {n_finite} finite validation scores, need >= {config.min_threshold_scores}")
        return _inactive(cal, "the threshold could not be calibrated")
    cal.threshold = calibrate_threshold(scores, config.target_false_flag_rate, config.min_threshold_scores)
    cal.extra["threshold_method"] = method
    if folds:
        cal.extra["out_of_sample_flag_rate"] = float(np.mean(scores > cal.threshold))
    cal.validation_flag_rate = float(np.mean(in_sample > cal.threshold))
    return cal


def _inactive(cal: TrustCalibration, why: str) -> TrustCalibration:
    """A valid calibration that flags nothing (every score is 0, the threshold a placeholder 1)."""
    cal.threshold = 1.0
    cal.validation_flag_rate = 0.0
    cal.extra["threshold_method"] = f"none: {why}, so nothing is flagged"
    return cal


def _setup(
    analyte: str,
    predictions: Mapping[str, np.ndarray],
    frames: Mapping[str, pd.DataFrame],
    lines: Sequence[object],
    config: TrustConfig,
    spectral: SpectralReference | None,
    plasma_tasks: Sequence[str] | None,
) -> tuple[list[tuple[str, str]], bool, list[str], dict[str, str]]:
    """Checks shared by both calibrations; (named lines, per-total areas, plasma tasks, parts off from the start)."""
    named = [line_label(x) for x in lines]
    if not named:
        raise ValueError("trust calibration: no lines given")
    names = [n for n, _ in named]
    if analyte not in predictions:
        raise ValueError(f"predictions have no analyte task {analyte!r} (keys: {sorted(predictions)})")
    for name in names:
        for what, frame in frames.items():
            if area_column(name) not in frame.columns:
                raise ValueError(f"{what} has no column {area_column(name)!r} (columns: {list(frame.columns)})")
    has_level = all(MEAN_INTENSITY in frame.columns for frame in frames.values())
    per_total = bool(config.per_total_areas and has_level)
    if plasma_tasks is None:
        plasma_tasks = [t for t in predictions if t != analyte and not t.endswith((":area", SPREAD_SUFFIX))]
    missing = [t for t in plasma_tasks if t not in predictions]
    if missing:
        raise ValueError(f"plasma tasks {missing} are not in the predictions (keys: {sorted(predictions)})")
    off = {f"aux:{n}": f"model predicts no {n} area" for n in names if area_column(n) not in predictions}
    if not config.intensity_part:
        off["intensity"] = "switched off (TrustConfig.intensity_part is false)"
    elif not has_level:
        off["intensity"] = f"the measurements have no {MEAN_INTENSITY!r} column"
    if not config.noise_part:
        off["noise"] = "switched off (TrustConfig.noise_part is false)"
    elif not all(NOISE_PER_COUNT in frame.columns for what, frame in frames.items() if what != "train_measured"):
        off["noise"] = f"the measurements have no {NOISE_PER_COUNT!r} column"
    if not config.spread_part:
        off["spread"] = "switched off (TrustConfig.spread_part is false)"
    elif spread_task(analyte) not in predictions:
        off["spread"] = "the model is a single network: no ensemble spread to check"
    if not config.plasma_parts:
        off.update({f"plasma:{t}": "switched off (TrustConfig.plasma_parts is false)" for t in plasma_tasks})
    if not config.spectral_parts:
        off.update({p: "switched off (TrustConfig.spectral_parts is false)" for p in ("wavelength", "shape")})
    elif spectral is None:
        off.update({p: "no spectral reference of the training spectra was given" for p in ("wavelength", "shape")})
    else:
        for what, frame in frames.items():
            for col in (OFFSET_CHANNELS, CORRELATION):
                if what != "train_measured" and col not in frame.columns:
                    raise ValueError(f"{what} has no column {col!r}: measure it with the same spectral reference")
    return named, per_total, list(plasma_tasks) if config.plasma_parts else [], off


def _as_columns(predictions: Mapping[str, np.ndarray], n: int, what: str) -> dict[str, np.ndarray]:
    """Predictions as float64 1-D arrays, each of ``n`` rows."""
    out = {}
    for task, values in predictions.items():
        v = np.asarray(values, dtype=np.float64).reshape(-1)
        if v.shape[0] != n:
            raise ValueError(f"{what}[{task!r}] has {v.shape[0]} rows, the measurements {n}")
        out[task] = v
    return out


def fit_trust_calibration(
    analyte: str,
    train_measured: pd.DataFrame,
    train_concentration: np.ndarray,
    val_predictions: Mapping[str, np.ndarray],
    val_measured: pd.DataFrame,
    lines: Sequence[object],
    *,
    train_groups: np.ndarray | None = None,
    val_groups: np.ndarray | None = None,
    units: str | None = None,
    config: TrustConfig | None = None,
    spectral: SpectralReference | None = None,
    plasma_tasks: Sequence[str] | None = None,
) -> TrustCalibration:
    """Learn line calibrations on training data, then part scales and the threshold on held-out validation data.

    ``train_measured`` / ``val_measured``: ``measure_spectra`` tables (``<line>:area`` columns at least;
    ``mean_intensity`` enables per-total consistency and the intensity part; the offset/correlation columns
    with ``spectral`` enable the wavelength and shape parts). ``val_predictions``: the model's outputs on
    the validation spectra (a line without a ``<line>:area`` output has its aux part off); ``plasma_tasks``
    (default: every output that is neither the analyte nor an area) get plasma-state parts. The validation
    samples must not have been used to train the model. Parts that cannot be calibrated are switched off with
    the reason in ``disabled_parts`` (see ``TrustConfig`` for the minimums), never an error.

    Threshold: the (1 - target rate) quantile of validation scores. With ``val_groups`` (>= 4 samples) the
    scores are cross-fitted by sample (each fold scored with scales fitted on the other folds; one sample per
    fold up to ``loso_max_samples`` samples), so the rate holds for new samples; the scales kept are fitted on all.
    """
    config = config or TrustConfig()
    y = np.asarray(train_concentration, dtype=np.float64)
    if len(train_measured) != y.shape[0]:
        raise ValueError(f"train_measured has {len(train_measured)} rows but train_concentration has {y.shape[0]}")
    frames = {"train_measured": train_measured, "val_measured": val_measured}
    named, per_total, plasma, off = _setup(analyte, val_predictions, frames, lines, config, spectral, plasma_tasks)
    names = [n for n, _ in named]
    preds = _as_columns(val_predictions, len(val_measured), "val_predictions")
    groups = None if train_groups is None else np.asarray(train_groups).astype(str)
    line_cal, problems = _fit_line_calibrations(train_measured, y, groups, names, per_total)
    implied = {n: cal.predict(consistency_area(val_measured, n, per_total)) for n, cal in line_cal.items()}
    evidence = _Evidence(
        analyte=analyte,
        named=named,
        predictions=preds,
        measured=val_measured.reset_index(drop=True),
        implied=implied,
        line_fit=lambda rows: (line_cal, problems),
        groups=None if val_groups is None else np.asarray(val_groups).astype(str),
        per_total=per_total,
        plasma_tasks=plasma,
        spectral=spectral if "wavelength" not in off else None,
        units=units,
        fixed_off=off,
    )
    calibration = _calibrate(evidence, config)
    calibration.extra["scales_from"] = "held-out validation spectra"
    return calibration


def fit_trust_calibration_oof(
    analyte: str,
    measured: pd.DataFrame,
    concentration: np.ndarray,
    oof_predictions: Mapping[str, np.ndarray],
    lines: Sequence[object],
    groups: np.ndarray,
    *,
    units: str | None = None,
    config: TrustConfig | None = None,
    spectral: SpectralReference | None = None,
    plasma_tasks: Sequence[str] | None = None,
) -> TrustCalibration:
    """Calibrate on the training spectra themselves, from out-of-fold predictions (each sample's rows predicted by
    a model fitted without that sample); no validation samples are taken away from training.

    Cross-fitted by sample: the predictions (caller), the concentration each line area implies (line calibration
    refitted without the row's sample), the threshold scores (folds as in ``fit_trust_calibration``, each fold
    scored with line calibrations and scales fitted without it), and the offset/correlation columns when the
    caller measured them against a reference without the row's sample (``calibrate_trust_from_oof`` does).
    In-sample: the line calibrations and scales kept (fitted on all rows, as the deployed model is).
    """
    config = config or TrustConfig()
    y = np.asarray(concentration, dtype=np.float64)
    g = np.asarray(groups).astype(str)
    if not (len(measured) == y.shape[0] == g.shape[0]):
        raise ValueError(f"measured has {len(measured)} rows, concentration {y.shape[0]}, groups {g.shape[0]}")
    measured = measured.reset_index(drop=True)
    frames = {"measured": measured}
    named, per_total, plasma, off = _setup(analyte, oof_predictions, frames, lines, config, spectral, plasma_tasks)
    names = [n for n, _ in named]
    preds = _as_columns(oof_predictions, len(measured), "oof_predictions")

    def line_fit(rows: np.ndarray) -> tuple[dict[str, LineCalibration], dict[str, str]]:
        return _fit_line_calibrations(measured.iloc[rows], y[rows], g[rows], names, per_total)

    implied = {n: np.full(len(measured), np.nan) for n in names}
    for sid in np.unique(g):
        held = np.flatnonzero(g == sid)
        cals, _ = line_fit(np.flatnonzero(g != sid))
        for n, cal in cals.items():
            implied[n][held] = cal.predict(consistency_area(measured.iloc[held], n, per_total))
    evidence = _Evidence(
        analyte=analyte,
        named=named,
        predictions=preds,
        measured=measured,
        implied=implied,
        line_fit=line_fit,
        groups=g,
        per_total=per_total,
        plasma_tasks=plasma,
        spectral=spectral if "wavelength" not in off else None,
        units=units,
        fixed_off=off,
    )
    calibration = _calibrate(evidence, config)
    calibration.extra["scales_from"] = "out-of-fold predictions on the training spectra (leave one sample out)"
    return calibration


def sample_folds(groups: np.ndarray, n_folds: int) -> list[np.ndarray]:
    """Row indices of ``n_folds`` folds that never split a sample (samples dealt round-robin in order of
    first appearance); [] when there are fewer than 4 samples."""
    g = np.asarray(groups).astype(str)
    order = list(dict.fromkeys(g.tolist()))
    if len(order) < 4 or n_folds < 2:
        return []
    k = min(n_folds, len(order))
    fold_of = {sid: i % k for i, sid in enumerate(order)}
    labels = np.array([fold_of[sid] for sid in g])
    return [np.flatnonzero(labels == i) for i in range(k)]


__all__ = [
    "LINEAR_RTOL",
    "ZERO_RTOL",
    "calibrate_threshold",
    "fit_trust_calibration",
    "fit_trust_calibration_oof",
    "line_label",
    "sample_folds",
]
