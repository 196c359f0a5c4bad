"""Calibration-curve forms fitted on shot-averaged (value, concentration) pairs, and their inversion.

- ``linear``: value = b0 + b1*c (inverse calibration, c = (value - b0) / b1);
- ``quadratic``: value = a*c^2 + b*c + c0, inverted as in ``UnivariateCalibration(degree=2)``;
- ``loglog``: log value = a + b*log c (power law; values and concentrations must be positive, a
  non-positive value predicts NaN);
- ``weighted``: linear, least squares weighted by 1/c^2 (constant *relative* error, the usual LIBS
  case where the spread of a line area grows with concentration), so low-concentration samples count;
- ``direct_linear`` / ``direct_quadratic``: the concentration regressed on the value (c = b0 + b1*v
  [+ b2*v^2]; "inverse calibration" in the chemometric sense), least squares on the per-sample means. It
  needs no inversion, and a curved response (self-absorption) bends the fit where the samples are, not
  where the inverted classical curve has to extrapolate. Predictions outside the calibrated value range
  follow the fitted polynomial.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from libs_pipeline.baselines.univariate import UnivariateCalibration

FORMS = ("linear", "quadratic", "loglog", "weighted", "direct_linear", "direct_quadratic")
#: Polynomial degree of the direct forms.
DIRECT_DEGREE = {"direct_linear": 1, "direct_quadratic": 2}


def check_forms(forms: tuple[str, ...]) -> tuple[str, ...]:
    """The forms, or a ValueError naming an unknown one."""
    forms = tuple(forms)
    if not forms:
        raise ValueError(f"forms: need at least one of {FORMS}")
    for form in forms:
        if form not in FORMS:
            raise ValueError(f"forms: unknown calibration form {form!r}; known: {FORMS}")
    return forms


def fit_curve(form: str, value: np.ndarray, conc: np.ndarray) -> dict[str, Any]:
    """Parameters (JSON-able) of ``form`` fitted on per-sample means; ValueError when the form cannot apply."""
    value = np.asarray(value, dtype=np.float64)
    conc = np.asarray(conc, dtype=np.float64)
    if np.unique(conc).size < (3 if form in ("quadratic", "direct_quadratic") else 2):
        raise ValueError(f"{form} calibration: too few distinct concentrations ({np.unique(conc).size})")
    if form == "quadratic":
        model = UnivariateCalibration(degree=2).fit(value, conc)
        return {"coef": [float(v) for v in model.coef_], "range": list(model.range_)}
    if form in DIRECT_DEGREE:
        degree = DIRECT_DEGREE[form]
        if np.unique(value).size < degree + 1:
            raise ValueError(f"{form} calibration: too few distinct values ({np.unique(value).size})")
        coef = np.polyfit(value, conc, degree)  # highest power first
        if not (np.all(np.isfinite(coef)) and np.any(coef[:-1] != 0)):
            raise ValueError(f"{form} calibration: the fitted curve is flat or undefined (coefficients {coef})")
        return {"coef": [float(v) for v in coef]}
    if form == "loglog":
        if np.any(value <= 0) or np.any(conc <= 0):
            raise ValueError("loglog calibration: needs positive values and concentrations")
        b, a = np.polyfit(np.log(conc), np.log(value), 1)
        slope = b
    elif form in ("linear", "weighted"):
        if form == "weighted" and np.any(conc <= 0):
            raise ValueError("weighted calibration: weights 1/c^2 need positive concentrations")
        w = 1.0 / conc if form == "weighted" else None  # polyfit squares w: residual weights 1/c^2
        b, a = np.polyfit(conc, value, 1, w=w)
        slope = b
    else:
        raise ValueError(f"unknown calibration form {form!r}; known: {FORMS}")
    if not (np.isfinite(slope) and abs(slope) > 0):
        raise ValueError(f"{form} calibration: the fitted curve is flat (slope {slope})")
    return {"coef": [float(b), float(a)]}


def predict_curve(form: str, params: dict[str, Any], value: np.ndarray) -> np.ndarray:
    """Concentration for each value under the fitted curve (float64; NaN where undefined)."""
    value = np.asarray(value, dtype=np.float64)
    coef = params["coef"]
    if form == "quadratic":
        model = UnivariateCalibration(degree=2)
        model.coef_ = np.asarray(coef, dtype=np.float64)
        model.range_ = (float(params["range"][0]), float(params["range"][1]))
        return model.predict(value)
    if form in DIRECT_DEGREE:
        return np.polyval(np.asarray(coef, dtype=np.float64), value)
    b, a = coef
    if form == "loglog":
        out = np.full(value.shape, np.nan)
        pos = value > 0
        with np.errstate(over="ignore"):
            out[pos] = np.exp((np.log(value[pos]) - a) / b)
        return out
    if form in ("linear", "weighted"):
        return (value - a) / b
    raise ValueError(f"unknown calibration form {form!r}; known: {FORMS}")
