"""What the trust score learns: per-line area->concentration relations (training data), residual scales and
the flag threshold (held-out in-distribution validation data); stored as ``trust.json`` beside the model.
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

TRUST_FILE = "trust.json"
TRUST_SCHEMA_VERSION = "1"
MAD_TO_SIGMA = 1.4826


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
    wild prediction widen its own tolerance; center/spread are a robust median/MAD of r / s(p).
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
        return cls(a=a, b=b, center=center, spread=spread, p_low=p_low, p_high=p_high)


@dataclass
class TrustCalibration:
    """Everything ``trust_scores`` needs besides a new spectrum's measured features and the model's outputs."""

    analyte: str
    units: str | None
    lines: list[str]
    line_labels: dict[str, str]
    line_calibrations: dict[str, LineCalibration]
    aux_scales: dict[str, ResidualScale]
    consistency_scales: dict[str, ResidualScale]
    threshold: float
    combine: str = "rms"
    target_false_flag_rate: float = 0.05
    validation_flag_rate: float = float("nan")
    sample_flag_fraction: float = 0.5
    reason_z: float = 3.0
    n_validation_spectra: int = 0
    n_validation_samples: int = 0
    extra: dict = field(default_factory=dict)

    def part_names(self) -> list[str]:
        return [f"aux:{line}" for line in self.lines] + [f"cons:{line}" for line in self.lines]

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

        def parse(section: str, kind: type, keys: tuple[str, ...]) -> dict:
            out = {}
            for line in lines:
                entry = d[section].get(line) if isinstance(d[section], Mapping) else None
                if not isinstance(entry, Mapping):
                    raise ValueError(f"{source}: field '{section}.{line}' is missing")
                values = {}
                for k in keys:
                    v = entry.get(k)
                    if not isinstance(v, (int, float)) or not np.isfinite(v):
                        raise ValueError(f"{source}: field '{section}.{line}.{k}' must be a finite number, got {v!r}")
                    values[k] = float(v)
                out[line] = kind(**values)
            return out

        threshold = d["threshold"]
        if not isinstance(threshold, (int, float)) or not np.isfinite(threshold) or threshold <= 0:
            raise ValueError(f"{source}: field 'threshold' must be a positive finite number, got {threshold!r}")
        combine = d.get("combine", "rms")
        if combine not in ("rms", "max"):
            raise ValueError(f"{source}: field 'combine' must be 'rms' or 'max', got {combine!r}")
        scales = ("a", "b", "center", "spread", "p_low", "p_high")
        aux = parse("aux_scales", ResidualScale, scales)
        cons = parse("consistency_scales", ResidualScale, scales)
        for section, parsed in (("aux_scales", aux), ("consistency_scales", cons)):
            for line, s in parsed.items():
                if s.spread <= 0 or s.a <= 0:
                    raise ValueError(f"{source}: field '{section}.{line}' needs a > 0 and spread > 0")
        return cls(
            analyte=str(d["analyte"]),
            units=d.get("units"),
            lines=lines,
            line_labels={line: str(d.get("line_labels", {}).get(line, line)) for line in lines},
            line_calibrations=parse("line_calibrations", LineCalibration, ("intercept", "slope")),
            aux_scales=aux,
            consistency_scales=cons,
            threshold=float(threshold),
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


def fit_trust_calibration(
    analyte: str,
    train_areas: pd.DataFrame,
    train_concentration: np.ndarray,
    val_predictions: Mapping[str, np.ndarray],
    val_areas: pd.DataFrame,
    lines: Sequence[object],
    *,
    train_groups: np.ndarray | None = None,
    val_groups: np.ndarray | None = None,
    units: str | None = None,
    config: TrustConfig | None = None,
) -> TrustCalibration:
    """Learn line calibrations on training data, then part scales and the threshold on held-out validation data.

    ``train_areas`` / ``val_areas``: measured line features with ``<line>:area`` columns; ``val_predictions``:
    the model's outputs on the validation spectra (``analyte`` and ``<line>:area`` keys); ``lines``: LineWindows,
    their dicts, or names. The validation samples must not have been used to train the model.
    """
    from libs_pipeline.trust.scores import combine_parts, trust_parts

    config = config or TrustConfig()
    named = [line_label(x) for x in lines]
    if not named:
        raise ValueError("fit_trust_calibration: no lines given")
    names = [n for n, _ in named]
    labels = dict(named)
    y = np.asarray(train_concentration, dtype=np.float64)
    if len(train_areas) != y.shape[0]:
        raise ValueError(f"train_areas has {len(train_areas)} rows but train_concentration has {y.shape[0]}")
    if analyte not in val_predictions:
        raise ValueError(f"val_predictions has no analyte task {analyte!r} (keys: {sorted(val_predictions)})")
    n_val = len(val_areas)
    for name in names:
        col = area_column(name)
        for frame, what in ((train_areas, "train_areas"), (val_areas, "val_areas")):
            if col not in frame.columns:
                raise ValueError(f"{what} has no column {col!r} (columns: {list(frame.columns)})")
        if col not in val_predictions:
            raise ValueError(f"val_predictions has no auxiliary task {col!r} (keys: {sorted(val_predictions)})")
        if np.asarray(val_predictions[col]).shape[0] != n_val:
            raise ValueError(f"val_predictions[{col!r}] has {np.asarray(val_predictions[col]).shape[0]} rows, val_areas {n_val}")

    line_cal = {
        n: LineCalibration.fit(train_areas[area_column(n)].to_numpy(), y, train_groups) for n in names
    }
    c_pred = np.asarray(val_predictions[analyte], dtype=np.float64)
    aux_scales, cons_scales = {}, {}
    for n in names:
        measured = val_areas[area_column(n)].to_numpy(dtype=np.float64)
        predicted = np.asarray(val_predictions[area_column(n)], dtype=np.float64)
        aux_scales[n] = ResidualScale.fit(measured - predicted, predicted, config.outlier_z, name=f"aux:{n}")
        implied = line_cal[n].predict(measured)
        cons_scales[n] = ResidualScale.fit(c_pred - implied, c_pred, config.outlier_z, name=f"cons:{n}")

    calibration = TrustCalibration(
        analyte=analyte,
        units=units,
        lines=names,
        line_labels=labels,
        line_calibrations=line_cal,
        aux_scales=aux_scales,
        consistency_scales=cons_scales,
        threshold=1.0,
        combine=config.combine,
        target_false_flag_rate=config.target_false_flag_rate,
        sample_flag_fraction=config.sample_flag_fraction,
        reason_z=config.reason_z,
        n_validation_spectra=n_val,
        n_validation_samples=int(len(np.unique(val_groups))) if val_groups is not None else 0,
    )
    parts = trust_parts(calibration, val_predictions, val_areas)
    scores = combine_parts(parts, calibration.part_names(), calibration.combine)
    calibration.threshold = calibrate_threshold(scores, config.target_false_flag_rate)
    calibration.validation_flag_rate = float(np.mean(scores > calibration.threshold))
    return calibration
