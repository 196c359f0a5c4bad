"""Evaluation figures (PNG, Agg canvas, no pyplot state): parity plot and residuals vs concentration, all methods.

Faint dots are single spectra; markers with error bars are per-sample means +- shot standard deviation,
nudged sideways per method (1 % of the range) so that overlapping methods stay readable.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from libs_pipeline.evaluation.metrics import per_sample_predictions
from libs_pipeline.spectra.atomic import atomic_write_bytes

_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def _save(fig: Figure, path: str | Path, dpi: int) -> Path:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def _label(units: str) -> str:
    return f" ({units})" if units else ""


def _series(predictions: Mapping[str, np.ndarray], y_true: np.ndarray, sample_ids: Sequence[object]):
    """(index, method, y_true, y_pred, per-sample table, x offset of the sample markers) per method."""
    if not predictions:
        raise ValueError("predictions: need at least one method to plot")
    t = np.asarray(y_true, dtype=np.float64).ravel()
    step = 0.01 * (float(np.ptp(t)) if t.size else 0.0)
    k = len(predictions)
    tables = [
        (str(m), np.asarray(p, dtype=np.float64).ravel(), per_sample_predictions(sample_ids, t, p))
        for m, p in predictions.items()
    ]
    for i, (method, p, table) in enumerate(tables):
        yield i, method, t, p, table, (i - (k - 1) / 2.0) * step


def _methods_figure(
    predictions: Mapping[str, np.ndarray],
    y_true: np.ndarray,
    sample_ids: Sequence[object],
    path: str | Path,
    units: str,
    title: str,
    dpi: int,
    residual: bool,
) -> Path:
    """Every method's spectra (dots) and sample means +- std (markers) against the certified value: the
    prediction with the 1:1 line, or (``residual``) prediction - certified with the zero line."""
    fig = Figure(figsize=(6.5, 4.5) if residual else (6.0, 5.5))
    ax = fig.add_subplot()
    lo, hi = np.inf, -np.inf
    for i, method, t, p, table, dx in _series(predictions, y_true, sample_ids):
        color = f"C{i % 10}"
        y_spectra = p - t if residual else p
        y_samples = table["y_pred"] - table["y_true"] if residual else table["y_pred"]
        ax.scatter(t, y_spectra, s=6, alpha=0.25, color=color, linewidths=0)
        ax.errorbar(
            table["y_true"] + dx, y_samples, yerr=table["y_pred_std"].fillna(0.0), fmt=_MARKERS[i % len(_MARKERS)],
            color=color, capsize=3, label=method,
        )
        lo, hi = min(lo, t.min(), p.min()), max(hi, t.max(), p.max())
    if residual:
        ax.axhline(0.0, color="0.3", lw=1, ls="--")
    else:
        pad = 0.05 * (hi - lo if hi > lo else 1.0)
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="0.3", lw=1, ls="--", label="1:1")
    ax.set_xlabel(f"certified{_label(units)}")
    ax.set_ylabel(f"{'residual' if residual else 'predicted'}{_label(units)}")
    ax.set_title(title)
    ax.legend(fontsize="small")
    fig.tight_layout()
    return _save(fig, path, dpi)


def parity_plot(
    predictions: Mapping[str, np.ndarray],
    y_true: np.ndarray,
    sample_ids: Sequence[object],
    path: str | Path,
    units: str = "",
    title: str = "Predicted vs certified",
    dpi: int = 110,
) -> Path:
    """Predicted vs certified concentration for every method, with the 1:1 line; returns ``path``."""
    return _methods_figure(predictions, y_true, sample_ids, path, units, title, dpi, residual=False)


def residual_plot(
    predictions: Mapping[str, np.ndarray],
    y_true: np.ndarray,
    sample_ids: Sequence[object],
    path: str | Path,
    units: str = "",
    title: str = "Residuals vs concentration",
    dpi: int = 110,
) -> Path:
    """Prediction - certified value against certified concentration, every method; returns ``path``."""
    return _methods_figure(predictions, y_true, sample_ids, path, units, title, dpi, residual=True)
