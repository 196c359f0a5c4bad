"""Per-spectrum and per-sample trust scores from measured line areas plus the model's outputs.

Parts per auxiliary line: ``aux:<line>`` = standardised (measured - predicted) area; ``cons:<line>`` =
standardised (predicted concentration - concentration implied by the measured area through the training
calibration). The score combines the parts (RMS or max |z|); it is flagged above the calibrated threshold.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from libs_pipeline.trust.calibration import TrustCalibration, area_column
from libs_pipeline.trust.explanation import explain


def trust_parts(
    calibration: TrustCalibration, predictions: Mapping[str, np.ndarray], measured_areas: pd.DataFrame
) -> pd.DataFrame:
    """One row per spectrum: ``prediction``, every part's z (``aux:<line>``, ``cons:<line>``), ``implied:<line>``."""
    analyte = calibration.analyte
    if analyte not in predictions:
        raise ValueError(f"predictions have no analyte task {analyte!r} (keys: {sorted(predictions)})")
    c_pred = np.asarray(predictions[analyte], dtype=np.float64).reshape(-1)
    n = c_pred.shape[0]
    if len(measured_areas) != n:
        raise ValueError(f"measured_areas has {len(measured_areas)} rows but predictions have {n}")
    columns: dict[str, np.ndarray] = {"prediction": c_pred}
    implied_cols: dict[str, np.ndarray] = {}
    for line in calibration.lines:
        col = area_column(line)
        if col not in measured_areas.columns:
            raise ValueError(f"measured_areas has no column {col!r} (columns: {list(measured_areas.columns)})")
        if col not in predictions:
            raise ValueError(f"predictions have no auxiliary task {col!r} (keys: {sorted(predictions)})")
        measured = measured_areas[col].to_numpy(dtype=np.float64)
        predicted = np.asarray(predictions[col], dtype=np.float64).reshape(-1)
        if predicted.shape[0] != n:
            raise ValueError(f"predictions[{col!r}] has {predicted.shape[0]} rows, expected {n}")
        columns[f"aux:{line}"] = calibration.aux_scales[line].standardise(measured - predicted, predicted)
        implied = calibration.line_calibrations[line].predict(measured)
        columns[f"cons:{line}"] = calibration.consistency_scales[line].standardise(c_pred - implied, c_pred)
        implied_cols[f"implied:{line}"] = implied
    frame = pd.DataFrame({**columns, **implied_cols}, index=measured_areas.index)
    return frame


def combine_parts(parts: pd.DataFrame, part_names: Sequence[str], combine: str = "rms") -> np.ndarray:
    """RMS (or max) of |z| over the parts; a non-finite part makes the score +inf (cannot be checked => flag)."""
    z = parts[list(part_names)].to_numpy(dtype=np.float64)
    bad = ~np.isfinite(z).all(axis=1)
    if combine == "rms":
        score = np.sqrt(np.mean(np.where(np.isfinite(z), z, 0.0) ** 2, axis=1))
    elif combine == "max":
        score = np.max(np.abs(np.where(np.isfinite(z), z, 0.0)), axis=1)
    else:
        raise ValueError(f"combine must be 'rms' or 'max', got {combine!r}")
    score[bad] = np.inf
    return score


def trust_scores(
    calibration: TrustCalibration, predictions: Mapping[str, np.ndarray], measured_areas: pd.DataFrame
) -> pd.DataFrame:
    """Per spectrum: prediction, score, flag, reason (empty when not flagged), top_part, and every part."""
    parts = trust_parts(calibration, predictions, measured_areas)
    names = calibration.part_names()
    score = combine_parts(parts, names, calibration.combine)
    flag = score > calibration.threshold
    reasons, tops = [], []
    z = parts[names].to_numpy(dtype=np.float64)
    implied_names = [f"implied:{line}" for line in calibration.lines]
    implied = parts[implied_names].to_numpy(dtype=np.float64)
    for i in range(len(parts)):
        reason, top = explain(
            dict(zip(names, z[i])),
            line_labels=calibration.line_labels,
            analyte=calibration.analyte,
            units=calibration.units,
            predicted=float(parts["prediction"].iat[i]),
            implied=dict(zip(calibration.lines, implied[i])),
            reason_z=calibration.reason_z,
        )
        reasons.append(reason if flag[i] else "")
        tops.append(top)
    head = pd.DataFrame(
        {"score": score, "flag": flag, "reason": reasons, "top_part": tops}, index=parts.index
    )
    return pd.concat([parts[["prediction"]], head, parts.drop(columns="prediction")], axis=1)


def sample_trust(
    table: pd.DataFrame,
    sample_ids: Sequence[str],
    calibration: TrustCalibration,
    uncertainty: np.ndarray | None = None,
) -> pd.DataFrame:
    """Aggregate shots per sample: mean prediction, median score, flagged fraction, flag, reason.

    A sample is flagged when more than ``calibration.sample_flag_fraction`` of its shots are flagged. With
    per-shot predictive std ``uncertainty`` the sample's uncertainty is sqrt(mean(std²) + var(shots)/n).
    """
    sids = np.asarray(sample_ids).astype(str)
    if sids.shape[0] != len(table):
        raise ValueError(f"sample_ids has {sids.shape[0]} entries but the table has {len(table)} rows")
    names = calibration.part_names()
    rows = []
    order = list(dict.fromkeys(sids.tolist()))
    unc = None if uncertainty is None else np.asarray(uncertainty, dtype=np.float64).reshape(-1)
    if unc is not None and unc.shape[0] != len(table):
        raise ValueError(f"uncertainty has {unc.shape[0]} entries but the table has {len(table)} rows")
    for sid in order:
        idx = np.flatnonzero(sids == sid)
        sub = table.iloc[idx]
        pred = sub["prediction"].to_numpy(dtype=np.float64)
        n = idx.size
        flagged = int(sub["flag"].sum())
        fraction = flagged / n
        flag = fraction > calibration.sample_flag_fraction
        z_med = {p: float(np.median(sub[p].to_numpy(dtype=np.float64))) for p in names}
        implied = {
            line: float(np.median(sub[f"implied:{line}"].to_numpy(dtype=np.float64))) for line in calibration.lines
        }
        reason, top = explain(
            z_med,
            line_labels=calibration.line_labels,
            analyte=calibration.analyte,
            units=calibration.units,
            predicted=float(np.mean(pred)),
            implied=implied,
            reason_z=calibration.reason_z,
        )
        row = {
            "sample_id": sid,
            "n_spectra": n,
            "prediction": float(np.mean(pred)),
            "score": float(np.median(sub["score"].to_numpy(dtype=np.float64))),
            "flagged_fraction": fraction,
            "flag": bool(flag),
            "reason": f"{flagged}/{n} shots flagged; {reason}" if flag else "",
            "top_part": top,
        }
        if unc is not None:
            var_between = float(np.var(pred, ddof=1)) if n > 1 else 0.0
            row["uncertainty"] = float(np.sqrt(np.mean(unc[idx] ** 2) + var_between / n))
        rows.append(row)
    return pd.DataFrame(rows)
