"""Univariate calibration whose line, normalisation and curve form are chosen by inner leave-one-sample-out.

Every (line, normalisation, form) candidate is scored by LOSO over the training samples: the curve is
fitted on the shot-averaged values of all samples but one, the held-out sample's shots are predicted and
averaged, and the per-sample RMSEP over the held-out samples is the score. The chosen candidate (by default
the simplest one unless another beats it by more than a paired standard error: with ~6 samples, the minimum
over ~40 candidates chases noise; see ``selection_common.choose_candidate``) is refitted on all training samples. Line features are computed once per spectrum; only the tiny curve fits repeat.

Normalisations of the baseline-corrected line area: ``none``; ``total`` (area / summed intensity of the
channels unsaturated in training); ``background`` (area / mean intensity of the line's background
windows, the local continuum); ``internal_standard`` (area / area of an internal-standard line, each one
a separate candidate). Windows that reach the saturation limit in any training spectrum are not candidates.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from libs_pipeline.baselines.calibration_forms import FORMS, check_forms, fit_curve, predict_curve
from libs_pipeline.baselines.internal_standards import default_internal_standards
from libs_pipeline.baselines.selection_common import (
    check_common_options,
    check_fit_inputs,
    check_predict_input,
    choose_candidate,
    group_codes,
    line_unusable,
    sample_means,
    saturated_channels,
    saturation_limit,
)
from libs_pipeline.features.line_features import feature_column, line_features
from libs_pipeline.features.lines import LineWindow, check_unique_names

UNIVARIATE_NORMALISATIONS = ("none", "total", "background", "internal_standard")
#: Simpler first, for the one-standard-error rule: no normalisation, one local level, a second line.
NORMALISATION_RANK = {"none": 0, "background": 1, "total": 1, "internal_standard": 2}
FORM_RANK = {"linear": 0, "direct_linear": 0, "weighted": 1, "loglog": 1, "quadratic": 2, "direct_quadratic": 2}


def _check_choices(name: str, given: Sequence[str], known: tuple[str, ...]) -> tuple[str, ...]:
    given = tuple(given)
    if not given:
        raise ValueError(f"{name}: need at least one of {known}")
    for g in given:
        if g not in known:
            raise ValueError(f"{name}: unknown option {g!r}; known: {known}")
    return given


def background_level(X: np.ndarray, wl: np.ndarray, line: LineWindow) -> np.ndarray:
    """Mean intensity over the channels of the line's background windows (the local continuum), per row."""
    mask = np.zeros(wl.size, dtype=bool)
    for lo, hi in line.background_nm:
        mask |= (wl >= lo) & (wl <= hi)
    return X[:, mask].mean(axis=1)


def line_area(X: np.ndarray, wl: np.ndarray, line: LineWindow) -> np.ndarray:
    """Baseline-corrected area of ``line`` per row (``features.line_features``)."""
    return line_features(X, wl, [line])[feature_column(line, "area")].to_numpy()


def normalised_value(
    X: np.ndarray,
    wl: np.ndarray,
    line: LineWindow,
    normalisation: str,
    internal_standard: LineWindow | None,
    total_mask: np.ndarray,
    areas: dict[str, np.ndarray] | None = None,
) -> np.ndarray:
    """The line area under ``normalisation`` (NaN where the denominator is not positive).

    ``areas`` (line name -> area per row) reuses areas computed once for many candidates.
    """
    def area_of(ln: LineWindow) -> np.ndarray:
        return areas[ln.name] if areas is not None else line_area(X, wl, ln)

    area = area_of(line)
    if normalisation == "none":
        return area
    if normalisation == "total":
        denom = X[:, total_mask].sum(axis=1)
    elif normalisation == "background":
        denom = background_level(X, wl, line)
    elif normalisation == "internal_standard":
        denom = area_of(internal_standard)
    else:
        raise ValueError(f"unknown normalisation {normalisation!r}; known: {UNIVARIATE_NORMALISATIONS}")
    return np.where(denom > 0, area / np.where(denom > 0, denom, 1.0), np.nan)


class SelectedUnivariate:
    """Line area -> concentration; line, normalisation and curve form chosen by inner LOSO on training samples."""

    def __init__(
        self,
        lines: Sequence[LineWindow],
        *,
        normalisations: Sequence[str] = UNIVARIATE_NORMALISATIONS,
        forms: Sequence[str] = FORMS,
        internal_standards: Sequence[LineWindow] | None = None,
        saturation: float | None = None,
        saturation_margin: float = 0.01,
        selection: str = "paired_se",
    ) -> None:
        self.lines = check_common_options(lines, selection)
        self.selection = selection
        self.normalisations = _check_choices("normalisations", normalisations, UNIVARIATE_NORMALISATIONS)
        self.forms = check_forms(tuple(forms))
        self.internal_standards = (
            default_internal_standards() if internal_standards is None else list(internal_standards)
        )
        if "internal_standard" in self.normalisations and not self.internal_standards:
            raise ValueError("internal_standards: normalisation 'internal_standard' needs at least one line")
        check_unique_names(self.internal_standards)
        own = {ln.name: ln for ln in self.lines}
        for std in self.internal_standards:
            if std.name in own and own[std.name] != std:
                raise ValueError(f"internal_standards: {std.name!r} is also an analyte line name with other windows")
        self.saturation = saturation
        self.saturation_margin = saturation_margin
        self._limit = saturation_limit(saturation, saturation_margin)
        self.choice_: dict[str, Any] | None = None
        self.scores_: pd.DataFrame | None = None
        self._state: dict[str, Any] | None = None

    def _candidates(self, wl: np.ndarray, saturated: np.ndarray) -> tuple[list[tuple], list[dict]]:
        """Usable (line, normalisation, internal standard) triples and the rejected ones with their reason."""
        usable, rejected = [], []
        for line in self.lines:
            why = line_unusable(wl, line, saturated)
            for norm in self.normalisations:
                standards = self.internal_standards if norm == "internal_standard" else [None]
                for std in standards:
                    reason = why or (line_unusable(wl, std, saturated) if std is not None else None)
                    if reason is None:
                        usable.append((line, norm, std))
                    else:
                        rejected.append({"line": line.name, "normalisation": norm,
                                         "internal_standard": std.name if std else None, "reason": reason})
        return usable, rejected

    def fit(
        self, intensity: np.ndarray, wavelength: np.ndarray, y: np.ndarray, groups: Sequence[object]
    ) -> SelectedUnivariate:
        """Score every candidate by inner LOSO over ``groups`` (sample ids), then refit the chosen one on all."""
        X, wl, y, groups = check_fit_inputs(intensity, wavelength, y, groups)
        saturated = saturated_channels(X, self._limit)
        total_mask = ~saturated
        usable, rejected = self._candidates(wl, saturated)
        _, codes = group_codes(groups)
        n_groups = int(codes.max()) + 1
        sample_y = sample_means(y, codes, n_groups)
        rows = [{**r, "form": f, "inner_rmsep": np.nan} for r in rejected for f in self.forms]
        scored: list[tuple[float, np.ndarray | None, tuple, tuple, str]] = []  # score, errors, complexity, choice
        areas = self._areas(X, wl, usable)
        for li, (line, norm, std) in enumerate(usable):
            value = normalised_value(X, wl, line, norm, std, total_mask, areas)
            means = sample_means(value, codes, n_groups)
            for form in self.forms:
                score, errors, reason = self._inner_loso(form, value, means, sample_y, codes, n_groups)
                rows.append({"line": line.name, "normalisation": norm, "internal_standard": std.name if std else None,
                             "form": form, "inner_rmsep": score, "reason": reason})
                complexity = (NORMALISATION_RANK.get(norm, 3), FORM_RANK.get(form, 3), li)
                scored.append((score, errors, complexity, (line, norm, std), form))
        self.scores_ = pd.DataFrame(rows, columns=["line", "normalisation", "internal_standard", "form",
                                                   "inner_rmsep", "reason"])
        if not any(np.isfinite(c[0]) for c in scored):
            raise ValueError("SelectedUnivariate.fit: no candidate could be scored (see scores_ for the reasons)")
        pick = choose_candidate([c[1] for c in scored], [c[2] for c in scored], self.selection)
        score, _, _, (line, norm, std), form = scored[pick]
        value = normalised_value(X, wl, line, norm, std, total_mask, areas)
        params = fit_curve(form, sample_means(value, codes, n_groups), sample_y)
        self._state = {"wavelength": wl, "line": line, "normalisation": norm, "internal_standard": std,
                       "form": form, "params": params, "total_mask": total_mask}
        self.choice_ = {"line": line.name, "normalisation": norm, "form": form,
                        "internal_standard": std.name if std else None, "inner_rmsep": float(score),
                        "selection": self.selection}
        return self

    @staticmethod
    def _areas(X: np.ndarray, wl: np.ndarray, usable: list[tuple]) -> dict[str, np.ndarray]:
        """Area of every line the candidates read, computed once (name -> area per spectrum)."""
        lines = {ln.name: ln for line, _, std in usable for ln in (line, std) if ln is not None}
        if not lines:
            return {}
        table = line_features(X, wl, list(lines.values()))
        return {name: table[feature_column(name, "area")].to_numpy() for name in lines}

    @staticmethod
    def _inner_loso(form, value, means, sample_y, codes, n_groups) -> tuple[float, np.ndarray | None, str | None]:
        """(per-sample RMSEP, per-sample errors) of ``form`` by LOSO over the training samples (inf, None and a
        reason when it fails)."""
        if not np.all(np.isfinite(means)):
            return np.inf, None, "non-finite normalised value for some sample"
        preds = np.empty(n_groups)
        for g in range(n_groups):
            keep = np.arange(n_groups) != g
            try:
                params = fit_curve(form, means[keep], sample_y[keep])
            except ValueError as err:
                return np.inf, None, str(err)
            shot_pred = predict_curve(form, params, value[codes == g])
            preds[g] = np.nanmean(shot_pred) if np.any(np.isfinite(shot_pred)) else np.nan
        errors = preds - sample_y
        if not np.all(np.isfinite(errors)):
            return np.inf, None, "no finite prediction for some held-out sample"
        return float(np.sqrt(np.mean(errors**2))), errors, None

    def predict(self, intensity: np.ndarray) -> np.ndarray:
        """Concentration per spectrum (float64) on the grid seen in fit."""
        if self._state is None:
            raise RuntimeError("SelectedUnivariate.predict called before fit (or from_dict)")
        s = self._state
        X = check_predict_input(intensity, s["wavelength"].size, "SelectedUnivariate")
        value = normalised_value(X, s["wavelength"], s["line"], s["normalisation"], s["internal_standard"],
                                 s["total_mask"])
        return predict_curve(s["form"], s["params"], value)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict holding everything ``predict`` needs (grid, lines, mask, curve), read by ``from_dict``."""
        if self._state is None or self.choice_ is None:
            raise RuntimeError("SelectedUnivariate.to_dict called before fit")
        s = self._state
        return {
            "kind": "SelectedUnivariate",
            "wavelength": [float(v) for v in s["wavelength"]],
            "line": s["line"].to_dict(),
            "normalisation": s["normalisation"],
            "internal_standard": s["internal_standard"].to_dict() if s["internal_standard"] else None,
            "form": s["form"],
            "params": s["params"],
            "excluded_channels": [int(i) for i in np.flatnonzero(~s["total_mask"])],
            "saturation": self.saturation,
            "saturation_margin": self.saturation_margin,
            "choice": self.choice_,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SelectedUnivariate:
        """Rebuild a fitted model from ``to_dict`` output (no refitting; scores_ is not restored)."""
        if data.get("kind") != "SelectedUnivariate":
            raise ValueError(f"from_dict: 'kind' must be 'SelectedUnivariate', got {data.get('kind')!r}")
        line = LineWindow.from_dict(data["line"])
        std = LineWindow.from_dict(data["internal_standard"]) if data["internal_standard"] else None
        model = cls([line], normalisations=(data["normalisation"],), forms=(data["form"],),
                    internal_standards=[std] if std else [], saturation=data["saturation"],
                    saturation_margin=data["saturation_margin"])
        wl = np.asarray(data["wavelength"], dtype=np.float64)
        mask = np.ones(wl.size, dtype=bool)
        mask[np.asarray(data["excluded_channels"], dtype=np.int64)] = False
        model._state = {"wavelength": wl, "line": line, "normalisation": data["normalisation"],
                        "internal_standard": std, "form": data["form"], "params": data["params"],
                        "total_mask": mask}
        model.choice_ = dict(data["choice"])
        return model
