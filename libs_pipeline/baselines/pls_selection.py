"""PLS calibration whose region, normalisation and number of components are chosen by inner LOSO.

Candidates: region ``full`` (every channel unsaturated in training) or ``windows`` (the analyte line
windows widened by ``window_margin_nm`` on each side, optionally plus the internal-standard windows)
times normalisation ``none`` / ``total`` (divide by the summed unsaturated intensity) /
``internal_standard`` (divide by the area of one internal-standard line; each line a candidate), times
1..K components. K = min(max_components, inner training samples - 1, channels). One PLS fit per inner
fold gives all component counts (``truncated_predictions``); the score is the per-sample RMSEP of the
held-out samples. Centring (and optional scaling) uses training spectra only; the best candidate is
refitted on all training samples and kept as one coefficient vector on the selected channels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.cross_decomposition import PLSRegression

from libs_pipeline.baselines.internal_standards import default_internal_standards
from libs_pipeline.baselines.pls import pls_centring, truncated_predictions
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
from libs_pipeline.baselines.univariate_selection import line_area
from libs_pipeline.features.lines import LineWindow, check_unique_names

PLS_REGIONS = ("full", "windows")
PLS_NORMALISATIONS = ("none", "total", "internal_standard")
#: Simpler first, for the one-standard-error rule (after the number of components).
NORMALISATION_RANK = {"none": 0, "total": 1, "internal_standard": 2}
REGION_RANK = {"windows": 0, "full": 1}


def _check_choices(name: str, given: Sequence[str], known: tuple[str, ...]) -> tuple[str, ...]:
    given = tuple(given)
    if not given or any(g not in known for g in given):
        raise ValueError(f"{name}: must be a non-empty selection of {known}, got {given}")
    return given


def window_channels(wl: np.ndarray, lines: Sequence[LineWindow], margin_nm: float) -> np.ndarray:
    """Boolean (m,) mask of channels inside any line window widened by ``margin_nm`` on each side."""
    mask = np.zeros(wl.size, dtype=bool)
    for line in lines:
        lo, hi = line.window_nm
        mask |= (wl >= lo - margin_nm) & (wl <= hi + margin_nm)
    return mask


def pls_linear_model(X: np.ndarray, y: np.ndarray, k: int, scale: bool) -> tuple[np.ndarray, float]:
    """(coefficients on raw X, intercept) of a k-component PLS fitted on (X, y), centred on their means."""
    model = PLSRegression(n_components=k, scale=scale).fit(X, y)
    x_mean, x_std, y_mean, y_std = pls_centring(X, y, scale)
    beta = model.x_rotations_[:, :k] @ model.y_loadings_[0][:k] * y_std / x_std
    return beta, float(y_mean - x_mean @ beta)


class SelectedPLS:
    """PLS on a chosen region and normalisation, components by inner LOSO on the training samples."""

    def __init__(
        self,
        lines: Sequence[LineWindow],
        *,
        regions: Sequence[str] = PLS_REGIONS,
        normalisations: Sequence[str] = PLS_NORMALISATIONS,
        internal_standards: Sequence[LineWindow] | None = None,
        max_components: int = 10,
        window_margin_nm: float = 0.5,
        include_internal_standard_windows: bool = False,
        scale: bool = False,
        saturation: float | None = None,
        saturation_margin: float = 0.01,
        selection: str = "paired_se",
    ) -> None:
        self.lines = check_common_options(lines, selection)
        self.selection = selection
        self.regions = _check_choices("regions", regions, PLS_REGIONS)
        self.normalisations = _check_choices("normalisations", normalisations, PLS_NORMALISATIONS)
        self.internal_standards = (
            default_internal_standards() if internal_standards is None else list(internal_standards)
        )
        check_unique_names(self.internal_standards)
        if "internal_standard" in self.normalisations and not self.internal_standards:
            raise ValueError("internal_standards: normalisation 'internal_standard' needs at least one line")
        if max_components < 1:
            raise ValueError(f"max_components must be >= 1, got {max_components}")
        if not (np.isfinite(window_margin_nm) and window_margin_nm >= 0):
            raise ValueError(f"window_margin_nm must be a finite number >= 0, got {window_margin_nm}")
        self.max_components = int(max_components)
        self.window_margin_nm = float(window_margin_nm)
        self.include_internal_standard_windows = include_internal_standard_windows
        self.scale = scale
        self.saturation = saturation
        self.saturation_margin = saturation_margin
        self._limit = saturation_limit(saturation, saturation_margin)
        self.choice_: dict[str, Any] | None = None
        self.scores_: pd.DataFrame | None = None
        self._state: dict[str, Any] | None = None

    def _region_mask(self, region: str, wl: np.ndarray, usable: np.ndarray) -> np.ndarray:
        if region == "full":
            return usable.copy()
        lines = self.lines + (self.internal_standards if self.include_internal_standard_windows else [])
        return window_channels(wl, lines, self.window_margin_nm) & usable

    @staticmethod
    def _denominator(X: np.ndarray, wl: np.ndarray, norm: str, std: LineWindow | None, usable: np.ndarray):
        if norm == "none":
            return np.ones(X.shape[0])
        if norm == "total":
            return X[:, usable].sum(axis=1)
        return line_area(X, wl, std)

    def fit(
        self, intensity: np.ndarray, wavelength: np.ndarray, y: np.ndarray, groups: Sequence[object]
    ) -> SelectedPLS:
        """Score every (region, normalisation, components) by inner LOSO over ``groups``; refit the best on all."""
        X, wl, y, groups = check_fit_inputs(intensity, wavelength, y, groups)
        saturated = saturated_channels(X, self._limit)
        usable = ~saturated
        _, codes = group_codes(groups)
        n_groups = int(codes.max()) + 1
        sample_y = sample_means(y, codes, n_groups)
        rows: list[dict[str, Any]] = []
        scored: list[tuple[float, np.ndarray | None, tuple, tuple]] = []  # score, errors, complexity, choice
        norms = [(n, s) for n in self.normalisations
                 for s in (self.internal_standards if n == "internal_standard" else [None])]
        for region in self.regions:
            mask = self._region_mask(region, wl, usable)
            for norm, std in norms:
                base = {"region": region, "normalisation": norm, "internal_standard": std.name if std else None}
                reason = line_unusable(wl, std, saturated) if std is not None else None
                if reason is None and not mask.any():
                    reason = "region holds no unsaturated channel"
                denom = self._denominator(X, wl, norm, std, usable) if reason is None else None
                if reason is None and not np.all(denom > 0):
                    reason = "normalisation denominator not positive in some training spectrum"
                if reason is not None:
                    rows.append({**base, "n_components": np.nan, "inner_rmsep": np.nan, "reason": reason})
                    continue
                errors = self._inner_loso(X[:, mask] / denom[:, None], y, codes, n_groups, sample_y)
                for k, err in enumerate(errors.T, start=1):
                    finite = bool(np.all(np.isfinite(err)))
                    score = float(np.sqrt(np.mean(err**2))) if finite else np.inf
                    rows.append({**base, "n_components": k, "inner_rmsep": score, "reason": None})
                    complexity = (k, NORMALISATION_RANK.get(norm, 3), REGION_RANK.get(region, 2))
                    scored.append((score, err if finite else None, complexity, (region, norm, std, k)))
        self.scores_ = pd.DataFrame(rows, columns=["region", "normalisation", "internal_standard", "n_components",
                                                   "inner_rmsep", "reason"])
        if not any(np.isfinite(c[0]) for c in scored):
            raise ValueError("SelectedPLS.fit: no candidate could be scored (see scores_ for the reasons)")
        pick = choose_candidate([c[1] for c in scored], [c[2] for c in scored], self.selection)
        score, _, _, (region, norm, std, k) = scored[pick]
        mask = self._region_mask(region, wl, usable)
        Xn = X[:, mask] / self._denominator(X, wl, norm, std, usable)[:, None]
        beta, intercept = pls_linear_model(Xn, y, k, self.scale)
        self._state = {"wavelength": wl, "channels": np.flatnonzero(mask), "normalisation": norm,
                       "internal_standard": std, "total_mask": usable, "coef": beta, "intercept": intercept,
                       "x_mean": Xn.mean(axis=0)}
        self.choice_ = {"region": region, "normalisation": norm, "internal_standard": std.name if std else None,
                        "n_components": k, "n_channels": int(mask.sum()), "inner_rmsep": score,
                        "selection": self.selection}
        return self

    def _inner_loso(self, Xn, y, codes, n_groups, sample_y) -> np.ndarray:
        """Per-sample errors (n_groups, K) for 1..K components (K from the inner training size), one PLS fit per
        fold."""
        k_max = max(1, min(self.max_components, n_groups - 2, Xn.shape[1]))
        preds = np.full((n_groups, k_max), np.nan)
        for g in range(n_groups):
            test = codes == g
            shot = truncated_predictions(Xn[~test], y[~test], Xn[test], k_max, self.scale)  # (k_max, n_test)
            preds[g] = shot.mean(axis=1)
        return preds - sample_y[:, None]

    def predict(self, intensity: np.ndarray) -> np.ndarray:
        """Concentration per spectrum (float64) on the grid seen in fit."""
        if self._state is None:
            raise RuntimeError("SelectedPLS.predict called before fit (or from_dict)")
        s = self._state
        X = check_predict_input(intensity, s["wavelength"].size, "SelectedPLS")
        denom = self._denominator(X, s["wavelength"], s["normalisation"], s["internal_standard"], s["total_mask"])
        with np.errstate(divide="ignore", invalid="ignore"):
            Xn = X[:, s["channels"]] / denom[:, None]
        return Xn @ s["coef"] + s["intercept"]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict holding what ``predict`` needs (grid, channels, normalisation, coefficients, intercept)."""
        if self._state is None or self.choice_ is None:
            raise RuntimeError("SelectedPLS.to_dict called before fit")
        s = self._state
        return {
            "kind": "SelectedPLS",
            "lines": [line.to_dict() for line in self.lines],
            "scale": self.scale,
            "window_margin_nm": self.window_margin_nm,
            "saturation": self.saturation,
            "saturation_margin": self.saturation_margin,
            "wavelength": [float(v) for v in s["wavelength"]],
            "channels": [int(i) for i in s["channels"]],
            "normalisation": s["normalisation"],
            "internal_standard": s["internal_standard"].to_dict() if s["internal_standard"] else None,
            "excluded_channels": [int(i) for i in np.flatnonzero(~s["total_mask"])],
            "x_mean": [float(v) for v in s["x_mean"]],
            "coef": [float(v) for v in s["coef"]],
            "intercept": float(s["intercept"]),
            "choice": self.choice_,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SelectedPLS:
        """Rebuild a fitted model from ``to_dict`` output (no refitting; scores_ is not restored)."""
        if data.get("kind") != "SelectedPLS":
            raise ValueError(f"from_dict: 'kind' must be 'SelectedPLS', got {data.get('kind')!r}")
        std = LineWindow.from_dict(data["internal_standard"]) if data["internal_standard"] else None
        wl = np.asarray(data["wavelength"], dtype=np.float64)
        channels = np.asarray(data["channels"], dtype=np.int64)
        coef = np.asarray(data["coef"], dtype=np.float64)
        if channels.size != coef.size or (channels.size and (channels.min() < 0 or channels.max() >= wl.size)):
            raise ValueError(
                f"from_dict: {channels.size} channels vs {coef.size} coefficients, or a channel off the grid"
            )
        mask = np.ones(wl.size, dtype=bool)
        mask[np.asarray(data["excluded_channels"], dtype=np.int64)] = False
        model = cls([LineWindow.from_dict(d) for d in data["lines"]], normalisations=(data["normalisation"],),
                    internal_standards=[std] if std else [], scale=data["scale"],
                    window_margin_nm=data["window_margin_nm"], saturation=data["saturation"],
                    saturation_margin=data["saturation_margin"])
        model._state = {"wavelength": wl, "channels": channels, "normalisation": data["normalisation"],
                        "internal_standard": std, "total_mask": mask, "coef": coef,
                        "intercept": float(data["intercept"]), "x_mean": np.asarray(data["x_mean"])}
        model.choice_ = dict(data["choice"])
        return model
