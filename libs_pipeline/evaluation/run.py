"""One evaluation run: split by sample (or nested leave-one-sample-out on small campaigns), fit the baselines
(and load the neural model), score, write the report.

``run_evaluation(config)`` writes ``<root>/reports/<run>/`` atomically (built in a temporary sibling
folder, then renamed; on an object-store root built in a local temporary folder and uploaded, summary.json last): ``report.md``, ``metrics.csv``, ``predictions.csv``, ``parity.png``,
``residuals.png``, ``summary.json``. The evaluate flow and the CLI are thin wrappers around it.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from libs_pipeline.candidates import MeanCandidate, PLSCandidate, UnivariateCandidate, load_servable
from libs_pipeline.config import EvaluationConfig
from libs_pipeline.evaluation.metrics import evaluate_methods
from libs_pipeline.evaluation.nested import jsonable, nested_loso
from libs_pipeline.evaluation.plots import parity_plot, residual_plot
from libs_pipeline.evaluation.protocol import LeakError, use_nested_protocol
from libs_pipeline.evaluation.report import markdown_report
from libs_pipeline.features.lines import LineWindow, resolve_lines
from libs_pipeline.spectra.sample_splits import split_samples
from libs_pipeline.spectra.atomic import atomic_write_json, atomic_write_text, publish_directory, temporary_sibling
from libs_pipeline.spectra.dataset import resolve_analyte, sample_ids, select_samples, spectrum_sample_ids
from libs_pipeline.spectra.grid import same_grid
from libs_pipeline.spectra.location import Location, open_location
from libs_pipeline.spectra.store import open_spectra

UNIVARIATE = "univariate"
PLS = "pls"
MEAN = "mean"
NEURAL = "neural"


@dataclass
class EvaluationResult:
    """What a run wrote and measured (paths are inside ``report_dir``: local ``Path``s, or URLs (str) when the
    root is an object store)."""

    run_name: str
    report_dir: Path | str
    report_path: Path | str
    table: pd.DataFrame
    figures: dict[str, Path | str]
    predictions_path: Path | str
    analyte: str
    units: str
    train_samples: list[str]
    test_samples: list[str]
    details: dict = field(default_factory=dict)
    markdown: str = ""


def publish_report(tmp: Path, final: Location) -> None:
    """Make a fully written local report folder ``tmp`` the report ``final``: renamed into place on a local
    root; uploaded file by file on an object store with ``summary.json`` last (a report without it is
    incomplete). FileExistsError when ``final`` appeared meanwhile."""
    if final.is_local:
        if not publish_directory(tmp, final.local_path):
            raise FileExistsError(f"report folder {final.url} appeared while writing; choose another run_name")
        return
    if final.exists():
        raise FileExistsError(f"report folder {final.url} appeared while writing; choose another run_name")
    for path in sorted(p for p in tmp.rglob("*") if p.is_file() and p.name != "summary.json"):
        final.join(*path.relative_to(tmp).parts).write_bytes(path.read_bytes())
    if (tmp / "summary.json").is_file():
        (final / "summary.json").write_bytes((tmp / "summary.json").read_bytes())


def _in(final: Location, name: str) -> Path | str:
    """A file of the report: a local ``Path``, or its URL on an object store."""
    where = final / name
    return where.local_path if where.is_local else where.url


def default_run_name(now: dt.datetime | None = None) -> str:
    """``evaluate-YYYYmmddTHHMMSSZ`` (UTC)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return f"evaluate-{now.strftime('%Y%m%dT%H%M%SZ')}"


def _labelled(ds: xr.Dataset, analyte: str) -> xr.Dataset:
    """Spectra whose label is known (NaN = unknown is dropped)."""
    keep = np.flatnonzero(np.isfinite(np.asarray(ds[analyte].values, dtype=np.float64)))
    return ds.isel(spectrum=keep)


def baseline_candidates(lines: Sequence[LineWindow], config: EvaluationConfig) -> dict:
    """The baselines every evaluation scores (their choices made by inner LOSO on the training samples), and the
    training-mean null control."""
    uni_lines = list(lines)
    if config.univariate_line is not None:
        uni_lines = [ln for ln in lines if ln.name == config.univariate_line]
        if not uni_lines:
            raise ValueError(
                f"univariate_line {config.univariate_line!r} is not one of the lines {[ln.name for ln in lines]}"
            )
    return {
        UNIVARIATE: UnivariateCandidate(lines=[ln.to_dict() for ln in uni_lines]),
        PLS: PLSCandidate(lines=[ln.to_dict() for ln in lines], options={"max_components": config.pls_max_components}),
        MEAN: MeanCandidate(),
    }


def fit_baselines(train: xr.Dataset, analyte: str, candidates: dict) -> dict:
    """Each candidate fitted on ``train`` (``name -> fitted``; ``fitted.predict_dataset``, ``.describe``,
    ``.model``)."""
    return {name: candidate.fit(train, analyte) for name, candidate in candidates.items()}


def baseline_predictions(
    train: xr.Dataset, test: xr.Dataset, analyte: str, candidates: dict
) -> tuple[dict[str, np.ndarray], dict]:
    """Per-spectrum test predictions of each baseline fitted on ``train``, and the choices each made."""
    fitted = fit_baselines(train, analyte, candidates)
    preds = {name: f.predict_dataset(test) for name, f in fitted.items()}
    details = {name: f.describe() for name, f in fitted.items()}
    return preds, details


def predictions_frame(test: xr.Dataset, y_true: np.ndarray, preds: dict[str, np.ndarray]) -> pd.DataFrame:
    """One row per test spectrum: spectrum id, sample id, certified value, one column per method
    (``predictions.csv``)."""
    frame = pd.DataFrame({
        "spectrum": np.asarray(test["spectrum"].values),
        "sample_id": spectrum_sample_ids(test),
        "y_true": y_true,
    })
    for method, p in preds.items():
        frame[method] = p
    return frame


def write_figures(
    preds: dict[str, np.ndarray], y_true: np.ndarray, sample_ids: np.ndarray, out_dir: str | Path, units: str,
    parity_title: str, residual_title: str,
) -> dict[str, Path]:
    """``parity.png`` and ``residuals.png`` of every method in ``out_dir``."""
    out = Path(out_dir)
    return {
        "parity": parity_plot(preds, y_true, sample_ids, out / "parity.png", units, parity_title),
        "residuals": residual_plot(preds, y_true, sample_ids, out / "residuals.png", units, residual_title),
    }


MODEL_METRICS = "metrics.json"  # written by libs_pipeline.models.save_model


def check_model_unseen(model_dir: str | Path, test_samples: Sequence[str]) -> None:
    """Refuse (LeakError) a neural model whose train_samples or val_samples include a test sample.

    Reads ``metrics.json`` of the model directory directly (no torch), so it runs before the model is loaded.
    """
    path = Path(model_dir) / MODEL_METRICS
    if not path.is_file():
        raise LeakError(
            f"model_dir {model_dir}: no {MODEL_METRICS}, so the samples it was trained on are unknown and "
            "cannot be checked against the test samples"
        )
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    test = {str(s) for s in test_samples}
    found = []
    for key in ("train_samples", "val_samples"):
        used = metrics.get(key) if isinstance(metrics, dict) else None
        if not isinstance(used, list):
            raise ValueError(f"{path}: field {key!r} is missing or not a list of sample ids")
        overlap = sorted(test & {str(s) for s in used})
        if overlap:
            found.append(f"{overlap} in its {key}")
    if found:
        raise LeakError(
            f"model {model_dir} saw test sample(s) during training: {'; '.join(found)}; "
            "evaluate it on samples it never saw (or use nested leave-one-sample-out)"
        )


def model_predictions(model_dir: str | Path, test: xr.Dataset, analyte: str) -> np.ndarray:
    """The saved model's primary-task prediction per spectrum: any servable model directory (a network, a CNN
    ensemble, or a univariate/PLS baseline that recalibration served instead of the network)."""
    model = load_servable(model_dir)
    wl = np.asarray(test["wavelength"].values, dtype=np.float64)
    model_wl = getattr(model, "wavelength", None)
    if model_wl is not None:
        model_wl = np.asarray(model_wl, dtype=np.float64)
        if not same_grid(model_wl, wl):
            raise ValueError(
                f"model {model_dir}: trained on a {model_wl.size}-channel grid that differs from the dataset's "
                f"{wl.size}-channel grid; resample the spectra first"
            )
    out = model.predict(np.asarray(test["intensity"].values, dtype=np.float32))
    names = list(getattr(model, "task_names", list(out)))
    key = analyte if analyte in out else names[0]
    return np.asarray(out[key], dtype=np.float64).ravel()


def _nested(config: EvaluationConfig, n_samples: int) -> bool:
    if config.protocol != "auto":
        return config.protocol == "nested"
    return config.test_samples is None and use_nested_protocol(n_samples, config.test_fraction)


def run_evaluation(config: EvaluationConfig) -> EvaluationResult:
    """Evaluate the baselines (and the neural model if ``config.model_dir``) on held-out samples, or every sample
    by nested leave-one-sample-out on a small campaign; write the report."""
    ds = open_spectra(config.dataset_uri)
    analyte, units = resolve_analyte(ds, config.analyte, f"dataset {config.dataset_uri}")
    ds = _labelled(ds, analyte)
    if ds.sizes["spectrum"] == 0:
        raise ValueError(f"dataset {config.dataset_uri}: no spectrum has a known {analyte!r} label")
    lines = resolve_lines(analyte, config.lines)
    samples = sample_ids(ds)
    candidates = baseline_candidates(lines, config)
    if _nested(config, len(samples)):
        if config.model_dir is not None:
            raise ValueError(
                f"{len(samples)} labelled samples: evaluation is by nested leave-one-sample-out of the model "
                "families, which cannot score one fitted model; give --test-sample ids the model never saw "
                "(protocol holdout) to evaluate it"
            )
        nested = nested_loso(ds, analyte, candidates, served=[UNIVARIATE, PLS])
        preds = {name: r.predictions for name, r in nested.methods().items()}
        test = ds
        train_ids, test_ids = samples, samples
        details = {"protocol": "nested leave-one-sample-out", "nested": nested.to_dict(seed=config.seed)}
    else:
        labels = dict(zip(spectrum_sample_ids(ds), np.asarray(ds[analyte].values, float)))
        train_ids, test_ids = split_samples(samples, config.test_samples, config.test_fraction, config.seed, labels)
        if config.model_dir is not None:
            check_model_unseen(config.model_dir, test_ids)
        train, test = select_samples(ds, train_ids), select_samples(ds, test_ids)
        preds, fits = baseline_predictions(train, test, analyte, candidates)
        details = {"protocol": "holdout", **fits}
        if config.model_dir is not None:
            preds[NEURAL] = model_predictions(config.model_dir, test, analyte)
    y_true = np.asarray(test[analyte].values, dtype=np.float64)
    test_sids = spectrum_sample_ids(test)
    table = evaluate_methods(preds, y_true, test_sids)

    run_name = config.run_name or default_run_name()
    final = open_location(config.root) / "reports" / run_name
    if final.exists():
        raise FileExistsError(f"report folder {final.url} already exists; choose another run_name")
    tmp = temporary_sibling(final.local_path) if final.is_local else Path(tempfile.mkdtemp(prefix=f"{run_name}-"))
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        figures = write_figures(preds, y_true, test_sids, tmp, units, f"{analyte}: predicted vs certified",
                                f"{analyte}: residuals")
        atomic_write_text(tmp / "predictions.csv", predictions_frame(test, y_true, preds).to_csv(index=False))
        atomic_write_text(tmp / "metrics.csv", table.to_csv())
        facts = {
            "dataset": config.dataset_uri,
            "analyte": f"{analyte} ({units})" if units else analyte,
            "protocol": details["protocol"],
            "train samples": f"{len(train_ids)}: {', '.join(train_ids)}",
            "test samples": f"{len(test_ids)}: {', '.join(test_ids)}",
            "baselines": "univariate (line, normalisation, calibration form) and PLS (region, normalisation, "
                         f"components <= {config.pls_max_components}) chosen by inner leave-one-sample-out on the "
                         "training samples; mean = the training mean (null control)",
        }
        if "nested" in details:
            facts["served"] = "univariate or PLS, chosen inside each fold by inner leave-one-sample-out"
        if config.model_dir is not None:
            facts["neural model"] = str(config.model_dir)
        text = markdown_report(
            table, f"Evaluation {run_name}", units,
            figures={"parity plot": "parity.png", "residuals vs concentration": "residuals.png"}, facts=facts,
        )
        atomic_write_text(tmp / "report.md", text)
        summary = {
            "run_name": run_name, "analyte": analyte, "units": units, "dataset_uri": config.dataset_uri,
            "train_samples": train_ids, "test_samples": test_ids, "details": details,
            "config": config.model_dump(mode="json"),
        }
        atomic_write_json(tmp / "summary.json", jsonable(summary))
        publish_report(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    shown = final.local_path if final.is_local else final.url
    return EvaluationResult(
        run_name=run_name,
        report_dir=shown,
        report_path=_in(final, "report.md"),
        table=table,
        figures={k: _in(final, v.name) for k, v in figures.items()},
        predictions_path=_in(final, "predictions.csv"),
        analyte=analyte,
        units=units,
        train_samples=train_ids,
        test_samples=test_ids,
        details=details,
        markdown=text,
    )
