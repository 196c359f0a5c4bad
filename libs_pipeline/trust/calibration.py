"""What the trust score learns, stored as ``trust.json`` beside the model: per-line area->concentration
relations (training data); on held-out in-distribution validation data the scales of every part (line-area
residuals and consistency, intensity level, plasma outputs, wavelength offset and spectral shape) and the
flag threshold for the target false-flag rate.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import nnls

from libs_pipeline.config import TrustConfig
from libs_pipeline.spectra.atomic import atomic_write_json
from libs_pipeline.trust.measurements import CORRELATION, MEAN_INTENSITY, OFFSET_CHANNELS, SpectralReference

TRUST_FILE = "trust.json"
COMBINATIONS = ("rms", "max")
TRUST_SCHEMA_VERSION = "1"
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
    the measured level disagreeing with it means the counts scale changed (gain, laser energy, collection)."""

    features: list[str]
    mean: np.ndarray
    sd: np.ndarray
    coef: np.ndarray
    scale: RobustScale

    def expected(self, values: Mapping[str, np.ndarray]) -> np.ndarray:
        x = np.column_stack([np.asarray(values[f], dtype=np.float64) for f in self.features]) if self.features else None
        n = len(next(iter(values.values())))
        design = np.ones((n, 1)) if x is None else np.column_stack([np.ones(n), (x - self.mean) / self.sd])
        return design @ self.coef

    def to_dict(self) -> dict:
        return {
            "features": list(self.features),
            "mean": [float(v) for v in self.mean],
            "sd": [float(v) for v in self.sd],
            "coef": [float(v) for v in self.coef],
            "scale": asdict(self.scale),
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
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{source}: field 'intensity' is invalid ({type(exc).__name__}: {exc})") from None
        k = len(out.features)
        if out.mean.shape != (k,) or out.sd.shape != (k,) or out.coef.shape != (k + 1,) or out.scale.spread <= 0:
            raise ValueError(f"{source}: field 'intensity' has inconsistent lengths or a non-positive spread")
        return out


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


@dataclass
class TrustCalibration:
    """Everything ``trust_scores`` needs besides a new spectrum's measurements and the model's outputs."""

    analyte: str
    units: str | None
    lines: list[str]
    line_labels: dict[str, str]
    line_calibrations: dict[str, LineCalibration]
    aux_scales: dict[str, ResidualScale]
    consistency_scales: dict[str, ResidualScale]
    threshold: float
    per_total_areas: bool = False
    intensity: IntensityModel | None = None
    plasma_scales: dict[str, RobustScale] = field(default_factory=dict)
    spectral: SpectralReference | None = None
    wavelength_scale: RobustScale | None = None
    shape_scale: RobustScale | None = None
    combine: str = "max"
    target_false_flag_rate: float = 0.05
    validation_flag_rate: float = float("nan")
    sample_flag_fraction: float = 0.5
    reason_z: float = 3.0
    n_validation_spectra: int = 0
    n_validation_samples: int = 0
    extra: dict = field(default_factory=dict)

    def part_names(self) -> list[str]:
        names = [f"aux:{line}" for line in self.lines] + [f"cons:{line}" for line in self.lines]
        if self.intensity is not None:
            names.append("intensity")
        names += [f"plasma:{task}" for task in self.plasma_scales]
        if self.wavelength_scale is not None:
            names.append("wavelength")
        if self.shape_scale is not None:
            names.append("shape")
        return names

    def to_dict(self) -> dict:
        return {
            "schema_version": TRUST_SCHEMA_VERSION,
            "analyte": self.analyte,
            "units": self.units,
            "lines": list(self.lines),
            "line_labels": dict(self.line_labels),
            "line_calibrations": {k: asdict(v) for k, v in self.line_calibrations.items()},
            "aux_scales": {k: asdict(v) for k, v in self.aux_scales.items()},
            "consistency_scales": {k: asdict(v) for k, v in self.consistency_scales.items()},
            "per_total_areas": self.per_total_areas,
            "intensity": None if self.intensity is None else self.intensity.to_dict(),
            "plasma_scales": {k: asdict(v) for k, v in self.plasma_scales.items()},
            "spectral": None if self.spectral is None else self.spectral.to_dict(),
            "wavelength_scale": None if self.wavelength_scale is None else asdict(self.wavelength_scale),
            "shape_scale": None if self.shape_scale is None else asdict(self.shape_scale),
            "threshold": self.threshold,
            "combine": self.combine,
            "target_false_flag_rate": self.target_false_flag_rate,
            "validation_flag_rate": self.validation_flag_rate,
            "sample_flag_fraction": self.sample_flag_fraction,
            "reason_z": self.reason_z,
            "n_validation_spectra": self.n_validation_spectra,
            "n_validation_samples": self.n_validation_samples,
            "extra": self.extra,
        }

    @classmethod
    def from_dict(cls, d: Mapping, source: str = "trust calibration") -> TrustCalibration:
        """Parse and validate; errors name ``source`` and the offending field."""
        if not isinstance(d, Mapping):
            raise ValueError(f"{source}: expected a JSON object, got {type(d).__name__}")
        if d.get("schema_version") != TRUST_SCHEMA_VERSION:
            raise ValueError(
                f"{source}: field 'schema_version' is {d.get('schema_version')!r}, expected {TRUST_SCHEMA_VERSION!r}"
            )
        for key in ("analyte", "lines", "line_calibrations", "aux_scales", "consistency_scales", "threshold"):
            if key not in d:
                raise ValueError(f"{source}: missing field {key!r}")
        lines = [str(x) for x in d["lines"]]
        if not lines:
            raise ValueError(f"{source}: field 'lines' is empty")

        def number(where: str, v: object) -> float:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v):
                raise ValueError(f"{source}: field '{where}' must be a finite number, got {v!r}")
            return float(v)

        def parse(section: str, kind: type, keys: tuple[str, ...], names: Sequence[str]) -> dict:
            out = {}
            for name in names:
                entry = d[section].get(name) if isinstance(d.get(section), Mapping) else None
                if not isinstance(entry, Mapping):
                    raise ValueError(f"{source}: field '{section}.{name}' is missing")
                out[name] = kind(**{k: number(f"{section}.{name}.{k}", entry.get(k)) for k in keys})
            return out

        def robust(where: str, entry: object) -> RobustScale:
            if not isinstance(entry, Mapping):
                raise ValueError(f"{source}: field '{where}' must be an object")
            s = RobustScale(number(f"{where}.center", entry.get("center")), number(f"{where}.spread", entry.get("spread")))
            if s.spread <= 0:
                raise ValueError(f"{source}: field '{where}.spread' must be positive")
            return s

        threshold = number("threshold", d["threshold"])
        if threshold <= 0:
            raise ValueError(f"{source}: field 'threshold' must be a positive finite number, got {threshold!r}")
        combine = d.get("combine", "max")
        if combine not in COMBINATIONS:
            raise ValueError(f"{source}: field 'combine' must be one of {COMBINATIONS}, got {combine!r}")
        scales = ("a", "b", "center", "spread", "p_low", "p_high")
        aux = parse("aux_scales", ResidualScale, scales, lines)
        cons = parse("consistency_scales", ResidualScale, scales, lines)
        for section, parsed in (("aux_scales", aux), ("consistency_scales", cons)):
            for line, s in parsed.items():
                if s.spread <= 0 or s.a <= 0:
                    raise ValueError(f"{source}: field '{section}.{line}' needs a > 0 and spread > 0")
        plasma = d.get("plasma_scales") or {}
        if not isinstance(plasma, Mapping):
            raise ValueError(f"{source}: field 'plasma_scales' must be an object")
        spectral = d.get("spectral")
        wl_scale, sp_scale = d.get("wavelength_scale"), d.get("shape_scale")
        if (wl_scale is not None or sp_scale is not None) and spectral is None:
            raise ValueError(f"{source}: fields 'wavelength_scale'/'shape_scale' need field 'spectral'")
        return cls(
            analyte=str(d["analyte"]),
            units=d.get("units"),
            lines=lines,
            line_labels={line: str(d.get("line_labels", {}).get(line, line)) for line in lines},
            line_calibrations=parse("line_calibrations", LineCalibration, ("intercept", "slope"), lines),
            aux_scales=aux,
            consistency_scales=cons,
            threshold=threshold,
            per_total_areas=bool(d.get("per_total_areas", False)),
            intensity=None if d.get("intensity") is None else IntensityModel.from_dict(d["intensity"], source),
            plasma_scales={str(k): robust(f"plasma_scales.{k}", v) for k, v in plasma.items()},
            spectral=None if spectral is None else SpectralReference.from_dict(spectral, source),
            wavelength_scale=None if wl_scale is None else robust("wavelength_scale", wl_scale),
            shape_scale=None if sp_scale is None else robust("shape_scale", sp_scale),
            combine=combine,
            target_false_flag_rate=float(d.get("target_false_flag_rate", 0.05)),
            validation_flag_rate=float(d.get("validation_flag_rate", float("nan"))),
            sample_flag_fraction=float(d.get("sample_flag_fraction", 0.5)),
            reason_z=float(d.get("reason_z", 3.0)),
            n_validation_spectra=int(d.get("n_validation_spectra", 0)),
            n_validation_samples=int(d.get("n_validation_samples", 0)),
            extra=dict(d.get("extra", {})),
        )


def save_trust(calibration: TrustCalibration, model_dir: str | Path) -> Path:
    """Write ``<model_dir>/trust.json`` atomically; returns its path."""
    path = Path(model_dir) / TRUST_FILE
    atomic_write_json(path, calibration.to_dict())
    return path


def load_trust(model_dir: str | Path) -> TrustCalibration:
    """Read ``<model_dir>/trust.json`` (or the file itself); a clear error when it is missing or invalid."""
    path = Path(model_dir)
    if path.is_dir():
        path = path / TRUST_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no trust calibration (run fit_trust_calibration and save_trust first)")
    try:
        d = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from exc
    return TrustCalibration.from_dict(d, source=str(path))


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


def calibrate_threshold(scores: np.ndarray, target_false_flag_rate: float) -> float:
    """The (1 - rate) quantile of in-distribution scores: a score above it is flagged."""
    s = np.asarray(scores, dtype=np.float64)
    s = s[np.isfinite(s)]
    if s.size < 20:
        raise ValueError(f"threshold calibration needs >= 20 finite validation scores, got {s.size}")
    if not 0 < target_false_flag_rate < 1:
        raise ValueError(f"target_false_flag_rate must be in (0, 1), got {target_false_flag_rate}")
    return float(np.quantile(s, 1.0 - target_false_flag_rate, method="linear"))


def consistency_area(measured: pd.DataFrame, line: str, per_total: bool) -> np.ndarray:
    """The measured area the consistency part calibrates: raw, or per unit mean intensity."""
    area = measured[area_column(line)].to_numpy(dtype=np.float64)
    if not per_total:
        return area
    level = measured[MEAN_INTENSITY].to_numpy(dtype=np.float64)
    return area / np.where(level > 0, level, np.nan)


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
    the validation spectra; ``plasma_tasks`` (default: every output that is neither the analyte nor an area)
    get plasma-state parts. The validation samples must not have been used to train the model.

    Threshold: the (1 - target rate) quantile of validation scores. With ``val_groups`` (>= 4 samples) the
    scores are cross-fitted by sample (each fold scored with scales fitted on the other folds), so the
    rate holds for new samples, not only for the validation ones; the scales kept are fitted on all.
    """
    from libs_pipeline.trust.scores import combine_parts, trust_parts

    config = config or TrustConfig()
    named = [line_label(x) for x in lines]
    if not named:
        raise ValueError("fit_trust_calibration: no lines given")
    names = [n for n, _ in named]
    y = np.asarray(train_concentration, dtype=np.float64)
    if len(train_measured) != y.shape[0]:
        raise ValueError(f"train_measured has {len(train_measured)} rows but train_concentration has {y.shape[0]}")
    if analyte not in val_predictions:
        raise ValueError(f"val_predictions has no analyte task {analyte!r} (keys: {sorted(val_predictions)})")
    n_val = len(val_measured)
    for task, values in val_predictions.items():
        if np.asarray(values).shape[0] != n_val:
            raise ValueError(f"val_predictions[{task!r}] has {np.asarray(values).shape[0]} rows, val_measured {n_val}")
    for name in names:
        col = area_column(name)
        for frame, what in ((train_measured, "train_measured"), (val_measured, "val_measured")):
            if col not in frame.columns:
                raise ValueError(f"{what} has no column {col!r} (columns: {list(frame.columns)})")
        if col not in val_predictions:
            raise ValueError(f"val_predictions has no auxiliary task {col!r} (keys: {sorted(val_predictions)})")
    has_level = MEAN_INTENSITY in train_measured.columns and MEAN_INTENSITY in val_measured.columns
    per_total = bool(config.per_total_areas and has_level)
    if plasma_tasks is None:
        plasma_tasks = [t for t in val_predictions if t != analyte and t not in {area_column(n) for n in names}]
    missing = [t for t in plasma_tasks if t not in val_predictions]
    if missing:
        raise ValueError(f"plasma tasks {missing} are not in val_predictions (keys: {sorted(val_predictions)})")
    plasma_tasks = list(plasma_tasks) if config.plasma_parts else []

    line_cal = {
        n: LineCalibration.fit(consistency_area(train_measured, n, per_total), y, train_groups) for n in names
    }
    use_spectral = spectral is not None and config.spectral_parts
    if use_spectral:
        for col in (OFFSET_CHANNELS, CORRELATION):
            if col not in val_measured.columns:
                raise ValueError(f"val_measured has no column {col!r}: measure it with the same spectral reference")

    def fit_parts(rows: np.ndarray) -> TrustCalibration:
        """Every part's scale from the validation spectra ``rows`` (threshold left at a placeholder)."""
        preds = {k: np.asarray(v)[rows] for k, v in val_predictions.items()}
        measured = val_measured.iloc[rows]
        c_pred = np.asarray(preds[analyte], dtype=np.float64)
        aux_scales, cons_scales = {}, {}
        for n in names:
            area = measured[area_column(n)].to_numpy(dtype=np.float64)
            predicted = np.asarray(preds[area_column(n)], dtype=np.float64)
            aux_scales[n] = ResidualScale.fit(area - predicted, predicted, config.outlier_z, name=f"aux:{n}")
            implied = line_cal[n].predict(consistency_area(measured, n, per_total))
            cons_scales[n] = ResidualScale.fit(c_pred - implied, c_pred, config.outlier_z, name=f"cons:{n}")
        intensity = None
        if config.intensity_part and has_level:
            intensity = _fit_intensity_model(
                intensity_features(analyte, plasma_tasks, preds), measured[MEAN_INTENSITY].to_numpy(dtype=np.float64)
            )
        plasma_scales = {
            t: RobustScale.fit(np.asarray(preds[t], dtype=np.float64), name=f"plasma:{t}") for t in plasma_tasks
        }
        wavelength_scale = shape_scale = None
        if use_spectral:
            wavelength_scale = RobustScale.fit(
                measured[OFFSET_CHANNELS].to_numpy(dtype=np.float64), config.min_offset_sigma_channels, "wavelength"
            )
            shape_scale = RobustScale.fit(dissimilarity(measured[CORRELATION].to_numpy()), name="shape")
        return TrustCalibration(
            analyte=analyte,
            units=units,
            lines=names,
            line_labels=dict(named),
            line_calibrations=line_cal,
            aux_scales=aux_scales,
            consistency_scales=cons_scales,
            threshold=1.0,
            per_total_areas=per_total,
            intensity=intensity,
            plasma_scales=plasma_scales,
            spectral=spectral if use_spectral else None,
            wavelength_scale=wavelength_scale,
            shape_scale=shape_scale,
            combine=config.combine,
            target_false_flag_rate=config.target_false_flag_rate,
            sample_flag_fraction=config.sample_flag_fraction,
            reason_z=config.reason_z,
            n_validation_spectra=int(rows.size),
            n_validation_samples=int(len(np.unique(np.asarray(val_groups)[rows]))) if val_groups is not None else 0,
        )

    def scores_of(cal: TrustCalibration, rows: np.ndarray) -> np.ndarray:
        parts = trust_parts(cal, {k: np.asarray(v)[rows] for k, v in val_predictions.items()}, val_measured.iloc[rows])
        return combine_parts(parts, cal.part_names(), cal.combine)

    everything = np.arange(n_val)
    calibration = fit_parts(everything)
    in_sample = scores_of(calibration, everything)
    folds = sample_folds(val_groups, config.threshold_folds) if val_groups is not None else []
    if folds:
        # cross-fitted by sample: each fold is scored with scales fitted without it, as a new sample would be
        out_of_sample = np.empty(n_val)
        for fold in folds:
            rest = np.setdiff1d(everything, fold)
            out_of_sample[fold] = scores_of(fit_parts(rest), fold)
        calibration.threshold = calibrate_threshold(out_of_sample, config.target_false_flag_rate)
        calibration.extra["threshold_method"] = f"cross-fitted by sample, {len(folds)} folds"
        calibration.extra["out_of_sample_flag_rate"] = float(np.mean(out_of_sample > calibration.threshold))
    else:
        calibration.threshold = calibrate_threshold(in_sample, config.target_false_flag_rate)
        calibration.extra["threshold_method"] = "in-sample quantile (no sample groups)"
    calibration.validation_flag_rate = float(np.mean(in_sample > calibration.threshold))
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


def _fit_intensity_model(features: Mapping[str, np.ndarray], level: np.ndarray) -> IntensityModel:
    """Least squares of log(mean intensity) on the standardised scale-free outputs."""
    x = np.column_stack(list(features.values()))
    target = np.log(np.where(level > 0, level, np.nan))
    ok = np.isfinite(x).all(axis=1) & np.isfinite(target)
    if ok.sum() < 20:
        raise ValueError(f"intensity part: need >= 20 validation spectra with positive mean intensity, got {int(ok.sum())}")
    mean, sd = x[ok].mean(axis=0), x[ok].std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    design = np.column_stack([np.ones(int(ok.sum())), (x[ok] - mean) / sd])
    coef, *_ = np.linalg.lstsq(design, target[ok], rcond=None)
    resid = target[ok] - design @ coef
    return IntensityModel(list(features), mean, sd, coef, RobustScale.fit(resid, name="intensity"))


def dissimilarity(correlation: np.ndarray) -> np.ndarray:
    """log(1 - correlation): how unlike the training reference a spectrum is (larger = less alike)."""
    c = np.asarray(correlation, dtype=np.float64)
    return np.log(np.clip(1.0 - c, 1e-9, None))
