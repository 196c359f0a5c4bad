"""The concentration as a calibration curve on one of the network's own predicted line areas.

``calibration_fit: "curve"`` (primary_head "auxiliary"): after training, the network's auxiliary outputs on
the measured training spectra are averaged per sample, and the concentration is regressed on one line's
predicted area, ``c = b0 + b1*a`` (``direct_linear``) or ``+ b2*a^2`` (``direct_quadratic``). Line and form are
chosen by leave-one-sample-out over the training samples with the univariate baseline's rule (the simplest
candidate unless another beats it by more than a paired standard error), so a curved response
(self-absorption) is fitted where the samples are, as the univariate baseline does on measured areas.

Pure numpy (no torch): ``training`` writes the chosen curve into the network's calibration layers. Everything
is in the network's scaled target units (``TargetScaler``), the space its outputs live in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from libs_pipeline.baselines.calibration_forms import fit_curve, predict_curve
from libs_pipeline.baselines.selection_common import choose_candidate, sample_means

#: Forms tried, simplest first (their rank is the complexity the selection rule prefers).
CURVE_FORMS = ("direct_linear", "direct_quadratic")
#: Fewest training samples with a label: leave-one-out must leave 3 distinct concentrations for a quadratic.
MIN_CURVE_SAMPLES = 4


@dataclass(frozen=True)
class CalibrationCurve:
    """Concentration = polyval(coef, a[task]): ``task`` indexes the auxiliary outputs (0 = the first line)."""

    task: int
    task_name: str
    form: str
    coef: tuple[float, ...]  # highest power first, as numpy.polyval
    inner_rmsep: float  # leave-one-sample-out RMSEP of the chosen candidate over the training samples (scaled)
    n_samples: int

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task_name, "form": self.form, "coef": list(self.coef),
                "inner_rmsep_scaled": self.inner_rmsep, "n_samples": self.n_samples}


def _loso_errors(form: str, value: np.ndarray, y: np.ndarray) -> np.ndarray | None:
    """Per-sample errors of ``form`` fitted without that sample (None when some fold cannot be fitted)."""
    errors = np.empty(y.size)
    for g in range(y.size):
        keep = np.arange(y.size) != g
        try:
            params = fit_curve(form, value[keep], y[keep])
        except ValueError:
            return None
        errors[g] = float(predict_curve(form, params, value[g : g + 1])[0]) - y[g]
    return errors if np.all(np.isfinite(errors)) else None


def choose_calibration_curve(
    values: np.ndarray, y: np.ndarray, task_names: Sequence[str], rule: str = "paired_se"
) -> CalibrationCurve:
    """The curve picked by leave-one-sample-out over the samples.

    ``values``: (n_samples, n_tasks) per-sample mean of each candidate auxiliary output; ``y``: (n_samples,) the
    samples' (scaled) concentrations. ValueError, naming the reason, when no candidate can be scored.
    """
    values = np.asarray(values, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if values.ndim != 2 or values.shape[0] != y.size or values.shape[1] != len(task_names):
        raise ValueError(f"values must be (n_samples={y.size}, n_tasks={len(task_names)}), got {values.shape}")
    if values.shape[1] == 0:
        raise ValueError("calibration curve: no line-area output to calibrate on")
    ok = np.isfinite(y) & np.all(np.isfinite(values), axis=1)
    values, y = values[ok], y[ok]
    if y.size < MIN_CURVE_SAMPLES:
        raise ValueError(f"calibration curve: needs >= {MIN_CURVE_SAMPLES} labelled training samples, got {y.size}")
    candidates = [(t, form) for rank, form in enumerate(CURVE_FORMS) for t in range(values.shape[1])]
    errors = [_loso_errors(form, values[:, t], y) for t, form in candidates]
    if all(e is None for e in errors):
        raise ValueError("calibration curve: no line and form could be fitted in every leave-one-sample-out fold")
    complexity = [(CURVE_FORMS.index(form), t) for t, form in candidates]
    pick = choose_candidate(errors, complexity, rule)
    task, form = candidates[pick]
    params = fit_curve(form, values[:, task], y)
    return CalibrationCurve(
        task=task, task_name=str(task_names[task]), form=form, coef=tuple(float(c) for c in params["coef"]),
        inner_rmsep=float(np.sqrt(np.mean(np.square(errors[pick])))), n_samples=int(y.size),
    )


def per_sample_means(outputs: np.ndarray, targets: np.ndarray, sample_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(per-sample mean outputs (n_samples, k), per-sample mean target) over rows grouped by ``sample_ids``
    (samples in sorted order; NaN values ignored)."""
    _, codes = np.unique(np.asarray(sample_ids).astype(str), return_inverse=True)
    n = int(codes.max()) + 1 if codes.size else 0
    return sample_means(outputs, codes, n), sample_means(targets, codes, n)


__all__ = ["CURVE_FORMS", "CalibrationCurve", "MIN_CURVE_SAMPLES", "choose_calibration_curve", "per_sample_means"]
