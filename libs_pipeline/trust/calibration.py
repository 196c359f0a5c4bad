"""The trust calibration of a model, stored as ``trust.json`` beside it: per-line calibrations, the scale of every
part, the flag threshold, and the parts switched off with their reasons (``TrustCalibration.disabled_parts``).

``trust.fitting`` learns it (``fit_trust_calibration``, ``fit_trust_calibration_oof``), ``trust.scores`` applies it;
the scales themselves are in ``trust.scales``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from libs_pipeline.spectra.atomic import atomic_write_json
from libs_pipeline.trust.measurements import SpectralReference
from libs_pipeline.trust.scales import IntensityModel, LineCalibration, ResidualScale, RobustScale

TRUST_FILE = "trust.json"
COMBINATIONS = ("rms", "max")
TRUST_SCHEMA_VERSION = "1"


@dataclass
class TrustCalibration:
    """Everything ``trust_scores`` needs besides a new spectrum's measurements and the model's outputs.

    ``disabled_parts`` maps every part that could not be calibrated (or was switched off) to the reason; a line's
    ``aux``/``cons`` part is enabled exactly when its scale is in ``aux_scales``/``consistency_scales``.
    """

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
    noise_scale: RobustScale | None = None
    spread_scale: RobustScale | None = None
    part_tails: dict[str, float] = field(default_factory=dict)
    combine: str = "max"
    target_false_flag_rate: float = 0.05
    validation_flag_rate: float = float("nan")
    sample_flag_fraction: float = 0.5
    reason_z: float = 3.0
    n_validation_spectra: int = 0
    n_validation_samples: int = 0
    disabled_parts: dict[str, str] = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    def part_names(self) -> list[str]:
        names = [f"aux:{line}" for line in self.lines if line in self.aux_scales]
        names += [f"cons:{line}" for line in self.lines if line in self.consistency_scales]
        if self.intensity is not None:
            names.append("intensity")
        names += [f"plasma:{task}" for task in self.plasma_scales]
        if self.wavelength_scale is not None:
            names.append("wavelength")
        if self.shape_scale is not None:
            names.append("shape")
        if self.noise_scale is not None:
            names.append("noise")
        if self.spread_scale is not None:
            names.append("spread")
        return names

    def error_parts(self) -> list[str]:
        """The parts the error score ranks by (``trust.scores.error_score``): the ensemble's spread when it is
        enabled (the members disagreeing on this number, scaled by the predicted concentration), else every part
        (the trust score)."""
        return ["spread"] if self.spread_scale is not None else self.part_names()

    @property
    def active(self) -> bool:
        """False when every part is disabled: the calibration is valid but never flags anything."""
        return bool(self.part_names())

    def disable_all(self, reason: str) -> None:
        """Switch every enabled part off with ``reason`` (e.g. the threshold could not be calibrated)."""
        for part in self.part_names():
            self.disabled_parts[part] = reason
        self.aux_scales, self.consistency_scales, self.plasma_scales = {}, {}, {}
        self.intensity = self.wavelength_scale = self.shape_scale = self.spectral = self.noise_scale = None
        self.spread_scale = None
        self.part_tails = {}

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
            "noise_scale": None if self.noise_scale is None else asdict(self.noise_scale),
            "spread_scale": None if self.spread_scale is None else asdict(self.spread_scale),
            "part_tails": {k: float(v) for k, v in self.part_tails.items()},
            "threshold": self.threshold,
            "combine": self.combine,
            "target_false_flag_rate": self.target_false_flag_rate,
            "validation_flag_rate": self.validation_flag_rate,
            "sample_flag_fraction": self.sample_flag_fraction,
            "reason_z": self.reason_z,
            "n_validation_spectra": self.n_validation_spectra,
            "n_validation_samples": self.n_validation_samples,
            "disabled_parts": dict(self.disabled_parts),
            "extra": self.extra,
        }

    @classmethod
    def from_dict(cls, d: Mapping, source: str = "trust calibration") -> TrustCalibration:
        """Parse and validate; errors name ``source`` and the offending field. Files written before
        ``disabled_parts`` existed load with every line part required."""
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
        disabled = d.get("disabled_parts") or {}
        if not isinstance(disabled, Mapping) or not all(isinstance(v, str) for v in disabled.values()):
            raise ValueError(f"{source}: field 'disabled_parts' must be an object of part name -> reason text")
        disabled = {str(k): v for k, v in disabled.items()}

        def number(where: str, v: object) -> float:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v):
                raise ValueError(f"{source}: field '{where}' must be a finite number, got {v!r}")
            return float(v)

        def parse(section: str, kind: type, keys: tuple[str, ...], required: Sequence[str]) -> dict:
            table = d.get(section)
            if not isinstance(table, Mapping):
                raise ValueError(f"{source}: field '{section}' must be an object")
            unknown = [k for k in table if k not in lines]
            if unknown:
                raise ValueError(f"{source}: field '{section}' has entries {unknown} that are not in 'lines'")
            out = {}
            for name in lines:
                entry = table.get(name)
                if entry is None and name not in required:
                    continue
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
        aux = parse("aux_scales", ResidualScale, scales, [n for n in lines if f"aux:{n}" not in disabled])
        cons = parse("consistency_scales", ResidualScale, scales, [n for n in lines if f"cons:{n}" not in disabled])
        line_cal = parse("line_calibrations", LineCalibration, ("intercept", "slope"), list(cons))
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
            line_calibrations=line_cal,
            aux_scales=aux,
            consistency_scales=cons,
            threshold=threshold,
            per_total_areas=bool(d.get("per_total_areas", False)),
            intensity=None if d.get("intensity") is None else IntensityModel.from_dict(d["intensity"], source),
            plasma_scales={str(k): robust(f"plasma_scales.{k}", v) for k, v in plasma.items()},
            spectral=None if spectral is None else SpectralReference.from_dict(spectral, source),
            wavelength_scale=None if wl_scale is None else robust("wavelength_scale", wl_scale),
            shape_scale=None if sp_scale is None else robust("shape_scale", sp_scale),
            noise_scale=None if d.get("noise_scale") is None else robust("noise_scale", d["noise_scale"]),
            spread_scale=None if d.get("spread_scale") is None else robust("spread_scale", d["spread_scale"]),
            part_tails=_part_tails(d.get("part_tails") or {}, source),
            combine=combine,
            target_false_flag_rate=float(d.get("target_false_flag_rate", 0.05)),
            validation_flag_rate=float(d.get("validation_flag_rate", float("nan"))),
            sample_flag_fraction=float(d.get("sample_flag_fraction", 0.5)),
            reason_z=float(d.get("reason_z", 3.0)),
            n_validation_spectra=int(d.get("n_validation_spectra", 0)),
            n_validation_samples=int(d.get("n_validation_samples", 0)),
            disabled_parts=disabled,
            extra=dict(d.get("extra", {})),
        )


def _part_tails(d: object, source: str) -> dict[str, float]:
    if not isinstance(d, Mapping) or not all(isinstance(v, (int, float)) and v >= 1.0 for v in d.values()):
        raise ValueError(f"{source}: field 'part_tails' must map part names to numbers >= 1")
    return {str(k): float(v) for k, v in d.items()}


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


__all__ = [
    "COMBINATIONS",
    "IntensityModel",
    "LineCalibration",
    "ResidualScale",
    "RobustScale",
    "TRUST_FILE",
    "TRUST_SCHEMA_VERSION",
    "TrustCalibration",
    "load_trust",
    "save_trust",
]
