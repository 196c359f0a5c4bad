"""The scales a trust calibration is made of: per-line area -> concentration calibrations, heteroscedastic
residual scales, robust scales, the intensity-level model, and the measured quantities they standardise
(``consistency_area``, ``dissimilarity``). Each is fitted on in-distribution evidence by ``trust.fitting``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy.optimize import nnls

from libs_pipeline.trust.measurements import MEAN_INTENSITY

MAD_TO_SIGMA = 1.4826
TAIL_Z = 1.959964


def tail_spread(deviation: np.ndarray, center: float) -> float:
    """Spread matched to the 95 % tail: quantile(|x - center|, 0.95) / 1.96 (= sigma for Gaussian data).

    Unlike the MAD it grows with heavy tails, so every part reaches a given |z| equally rarely on
    in-distribution data and no heavy-tailed part dominates the false flags of a max-combined score.
    """
    d = np.abs(np.asarray(deviation, dtype=np.float64) - center)
    return float(np.quantile(d[np.isfinite(d)], 0.95) / TAIL_Z) if np.isfinite(d).any() else float("nan")


def area_column(line: str) -> str:
    """Column / task name of a line's area (the auxiliary target)."""
    return f"{line}:area"


@dataclass(frozen=True)
class LineCalibration:
    """Univariate calibration of one line: concentration = intercept + slope * area (fitted on training data)."""

    intercept: float
    slope: float

    def predict(self, area: np.ndarray) -> np.ndarray:
        return (self.intercept + self.slope * np.asarray(area, dtype=np.float64)).astype(np.float64)

    @classmethod
    def fit(cls, area: np.ndarray, concentration: np.ndarray, groups: np.ndarray | None = None) -> LineCalibration:
        """Least squares on per-sample means when ``groups`` is given (less noise in the regressor), else per shot."""
        area = np.asarray(area, dtype=np.float64)
        conc = np.asarray(concentration, dtype=np.float64)
        ok = np.isfinite(area) & np.isfinite(conc)
        area, conc = area[ok], conc[ok]
        if groups is not None:
            g = np.asarray(groups)[ok]
            frame = pd.DataFrame({"g": g, "a": area, "c": conc}).groupby("g", sort=False).mean()
            if len(frame) >= 2:
                area, conc = frame["a"].to_numpy(), frame["c"].to_numpy()
        if area.size < 2 or np.ptp(area) == 0 or np.ptp(conc) == 0:
            raise ValueError(
                f"cannot fit line calibration: need >= 2 distinct areas and concentrations, got {area.size} points"
            )
        slope, intercept = np.polyfit(area, conc, 1)
        return cls(intercept=float(intercept), slope=float(slope))


@dataclass(frozen=True)
class ResidualScale:
    """Standardises a residual r observed at reference value p: z = (r / s(p) - center) / spread.

    s(p) = sqrt(a² + b²p²) with p clipped to the validation range [p_low, p_high]: the heteroscedastic
    scale absorbs noise that grows with the signal (shot-to-shot intensity fluctuation) without letting a
    wild prediction widen its own tolerance; center is the median of r / s(p), spread its 95 %-tail
    matched sd (``tail_spread``), both over all validation residuals.
    """

    a: float
    b: float
    center: float
    spread: float
    p_low: float
    p_high: float

    def scale(self, reference: np.ndarray) -> np.ndarray:
        p = np.clip(np.asarray(reference, dtype=np.float64), self.p_low, self.p_high)
        return np.sqrt(self.a**2 + (self.b * p) ** 2)

    def standardise(self, residual: np.ndarray, reference: np.ndarray) -> np.ndarray:
        u = np.asarray(residual, dtype=np.float64) / self.scale(reference)
        return (u - self.center) / self.spread

    @classmethod
    def fit(cls, residual: np.ndarray, reference: np.ndarray, outlier_z: float = 5.0, name: str = "part") -> ResidualScale:
        """Fit r² ≈ a² + b²p² by iteratively reweighted non-negative least squares (weights 1/s(p)⁴, since
        var(r²) ∝ s⁴), leaving out residuals beyond ``outlier_z`` robust sigmas."""
        r = np.asarray(residual, dtype=np.float64)
        p = np.asarray(reference, dtype=np.float64)
        ok = np.isfinite(r) & np.isfinite(p)
        r, p = r[ok], p[ok]
        if r.size < 5:
            raise ValueError(f"cannot fit residual scale of {name}: need >= 5 finite validation residuals, got {r.size}")
        rms = float(np.sqrt(np.mean(r**2)))
        if rms == 0:
            raise ValueError(f"cannot fit residual scale of {name}: validation residuals are all zero")
        p_low, p_high = float(np.min(p)), float(np.max(p))
        p = np.clip(p, p_low, p_high)
        keep = np.ones(r.size, dtype=bool)
        weight = np.ones(r.size)
        floor = 1e-6 * rms
        a = b = center = spread = 0.0
        for _ in range(8):
            design = np.column_stack([np.ones(keep.sum()), p[keep] ** 2]) * weight[keep, None]
            (a2, b2), _ = nnls(design, r[keep] ** 2 * weight[keep])
            a, b = max(float(np.sqrt(a2)), floor), float(np.sqrt(b2))
            s2 = a**2 + (b * p) ** 2
            u = r / np.sqrt(s2)
            center = float(np.median(u[keep]))
            spread = float(MAD_TO_SIGMA * np.median(np.abs(u[keep] - center)))
            if not np.isfinite(spread) or spread <= 0:
                spread = float(np.std(u[keep]))
            if not np.isfinite(spread) or spread <= 0:
                raise ValueError(f"cannot fit residual scale of {name}: validation residuals have zero spread")
            new_keep = np.abs(u - center) / spread <= outlier_z
            if new_keep.sum() < 5:
                break
            keep = new_keep
            weight = 1.0 / s2 / np.mean(1.0 / s2)
        u = r / np.sqrt(a**2 + (b * p) ** 2)
        center = float(np.median(u))
        spread = max(tail_spread(u, center), spread)
        return cls(a=a, b=b, center=center, spread=spread, p_low=p_low, p_high=p_high)


@dataclass(frozen=True)
class RobustScale:
    """z = (value - center) / spread: median and 95 %-tail matched sd (``tail_spread``) of validation values."""

    center: float
    spread: float

    def standardise(self, values: np.ndarray) -> np.ndarray:
        return (np.asarray(values, dtype=np.float64) - self.center) / self.spread

    @classmethod
    def fit(cls, values: np.ndarray, floor: float = 0.0, name: str = "part") -> RobustScale:
        v = np.asarray(values, dtype=np.float64)
        v = v[np.isfinite(v)]
        if v.size < 5:
            raise ValueError(f"cannot fit scale of {name}: need >= 5 finite validation values, got {v.size}")
        center = float(np.median(v))
        spread = max(tail_spread(v, center), float(floor))
        if not np.isfinite(spread) or spread <= 0:
            spread = float(np.std(v))
        if not np.isfinite(spread) or spread <= 0:
            raise ValueError(f"cannot fit scale of {name}: validation values have zero spread")
        return cls(center=center, spread=spread)


@dataclass
class IntensityModel:
    """log(mean intensity) expected from scale-free model outputs (linear, fitted on validation spectra):
    the measured level disagreeing with it means the counts scale changed (gain, laser energy, collection).

    ``sample_precision``: pinv(Xs'Xs) of the validation samples' mean design rows. The fit rests on as many
    points as there are samples, so a spectrum whose outputs lie away from theirs (a concentration outside the
    validation range) is judged with the regression's prediction interval, ``spread * sqrt(1 + h)`` with
    h = x' pinv(Xs'Xs) x, not with the in-range spread. None (files written before it existed): h = 0.
    """

    features: list[str]
    mean: np.ndarray
    sd: np.ndarray
    coef: np.ndarray
    scale: RobustScale
    sample_precision: np.ndarray | None = None

    def design(self, values: Mapping[str, np.ndarray]) -> np.ndarray:
        x = np.column_stack([np.asarray(values[f], dtype=np.float64) for f in self.features]) if self.features else None
        n = len(next(iter(values.values())))
        return np.ones((n, 1)) if x is None else np.column_stack([np.ones(n), (x - self.mean) / self.sd])

    def expected(self, values: Mapping[str, np.ndarray]) -> np.ndarray:
        return self.design(values) @ self.coef

    def inflation(self, values: Mapping[str, np.ndarray]) -> np.ndarray:
        """sqrt(1 + h) per spectrum (1 without ``sample_precision``)."""
        design = self.design(values)
        if self.sample_precision is None:
            return np.ones(design.shape[0])
        return prediction_inflation(design, self.sample_precision)

    def standardise(self, values: Mapping[str, np.ndarray], residual: np.ndarray) -> np.ndarray:
        """z of the residual log level (measured - expected), widened by ``inflation``."""
        return self.scale.standardise(residual) / self.inflation(values)

    def to_dict(self) -> dict:
        return {
            "features": list(self.features),
            "mean": [float(v) for v in self.mean],
            "sd": [float(v) for v in self.sd],
            "coef": [float(v) for v in self.coef],
            "scale": asdict(self.scale),
            "sample_precision": None if self.sample_precision is None else self.sample_precision.tolist(),
        }

    @classmethod
    def from_dict(cls, d: Mapping, source: str) -> IntensityModel:
        try:
            out = cls(
                [str(f) for f in d["features"]],
                np.asarray(d["mean"], dtype=np.float64),
                np.asarray(d["sd"], dtype=np.float64),
                np.asarray(d["coef"], dtype=np.float64),
                RobustScale(float(d["scale"]["center"]), float(d["scale"]["spread"])),
                None if d.get("sample_precision") is None else np.asarray(d["sample_precision"], dtype=np.float64),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{source}: field 'intensity' is invalid ({type(exc).__name__}: {exc})") from None
        k = len(out.features)
        if out.mean.shape != (k,) or out.sd.shape != (k,) or out.coef.shape != (k + 1,) or out.scale.spread <= 0:
            raise ValueError(f"{source}: field 'intensity' has inconsistent lengths or a non-positive spread")
        p = out.sample_precision
        if p is not None and (p.shape != (k + 1, k + 1) or not np.isfinite(p).all()):
            raise ValueError(f"{source}: field 'intensity.sample_precision' must be a finite {k + 1} x {k + 1} matrix")
        return out


def prediction_inflation(design: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """sqrt(1 + h) per row, h = x' P x (clipped at 0 against rounding)."""
    h = np.einsum("ij,jk,ik->i", design, precision, design)
    return np.sqrt(1.0 + np.maximum(h, 0.0))


def sample_precision(design: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """pinv(Xs'Xs) of the per-sample mean rows of ``design``: the leverage of a new spectrum against the samples
    the fit rests on."""
    names, inverse = np.unique(groups, return_inverse=True)
    means = np.zeros((names.size, design.shape[1]))
    np.add.at(means, inverse, design)
    means /= np.bincount(inverse)[:, None]
    return np.linalg.pinv(means.T @ means)


def intensity_features(
    analyte: str, plasma_tasks: Sequence[str], predictions: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Scale-free model outputs (of a total-normalised network): the analyte and the plasma outputs.

    Predicted line areas are left out: a model may scale them with the measured level, which would leak
    the very quantity this part checks.
    """
    out = {analyte: np.asarray(predictions[analyte], dtype=np.float64)}
    for task in plasma_tasks:
        out[task] = np.asarray(predictions[task], dtype=np.float64)
    return out


def consistency_area(measured: pd.DataFrame, line: str, per_total: bool) -> np.ndarray:
    """The measured area the consistency part calibrates: raw, or per unit mean intensity."""
    area = measured[area_column(line)].to_numpy(dtype=np.float64)
    if not per_total:
        return area
    level = measured[MEAN_INTENSITY].to_numpy(dtype=np.float64)
    return area / np.where(level > 0, level, np.nan)


def dissimilarity(correlation: np.ndarray) -> np.ndarray:
    """log(1 - correlation): how unlike the training reference a spectrum is (larger = less alike)."""
    c = np.asarray(correlation, dtype=np.float64)
    return np.log(np.clip(1.0 - c, 1e-9, None))


__all__ = [
    "IntensityModel",
    "LineCalibration",
    "MAD_TO_SIGMA",
    "ResidualScale",
    "RobustScale",
    "TAIL_Z",
    "area_column",
    "consistency_area",
    "dissimilarity",
    "intensity_features",
    "tail_spread",
]
