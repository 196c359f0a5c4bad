"""Leave-one-sample-out (LOSO) and nested LOSO on duck-typed candidates: the honest protocol for small campaigns.

``loso_predictions``: for every labelled sample s, fit on the other samples' spectra only (s is physically
absent from what ``fit`` receives), predict s with its label variables removed. ``nested_loso`` does that
for every candidate and adds the *served* model: inside each outer fold (held-out h) an inner LOSO over
the remaining samples scores every served candidate by per-sample RMSEP; the winner's outer prediction
for h is the served prediction, so the model choice itself is evaluated out of sample. Each
(candidate, training set) is fitted once: the inner fit without {h, i} serves folds h and i alike.
No torch or model package is imported here; ``protocol`` holds the candidate contract.

When: report this protocol instead of a held-out split whenever ``use_nested_protocol(n_samples,
heldout_fraction)`` is true, i.e. fewer than 12 labelled samples or fewer than 4 held-out samples (a
score from so few independent errors is noise, and so much held out leaves too little to calibrate).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
import pandas as pd
import xarray as xr

from libs_pipeline.baselines.selection_common import choose_candidate
from libs_pipeline.evaluation.metrics import per_sample_predictions
from libs_pipeline.evaluation.protocol import Candidate, LeakError, use_nested_protocol  # noqa: F401 (re-export)
from libs_pipeline.evaluation.small_campaign import small_campaign_metrics
from libs_pipeline.spectra.dataset import label_names, sample_ids, select_samples, spectrum_sample_ids

SERVED = "served"
TIE_RTOL = 1e-9  # inner RMSEPs this close are a tie (floating-point noise), won by the first listed
Progress = Callable[[int, int, str], None]
Eligibility = Callable[[str, xr.Dataset], bool]
Chooser = Callable[[Sequence[str], Mapping[str, np.ndarray]], str]


@dataclass
class FitRecord:
    """One fit: the samples left out of it, what it trained on, how long it took, its ``describe()`` if any."""

    left_out: list[str]
    train_samples: list[str]
    fit_seconds: float
    predict_seconds: float
    description: dict | None = None

    def to_dict(self) -> dict:
        return {
            "left_out": self.left_out, "train_samples": self.train_samples, "fit_seconds": self.fit_seconds,
            "predict_seconds": self.predict_seconds, "description": self.description,
        }


@dataclass
class LosoResult:
    """Out-of-fold predictions of one method, aligned with the rows of the evaluated dataset (NaN = not scored)."""

    method: str
    analyte: str
    samples: list[str]
    spectrum_sample_ids: np.ndarray
    y_true: np.ndarray
    predictions: np.ndarray
    folds: dict[str, FitRecord] = field(default_factory=dict)  # held-out sample -> its outer fit
    #: every output of fitted models that have ``predict_tasks`` (e.g. a CNN's line areas), same rows, NaN elsewhere
    task_predictions: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def scored(self) -> np.ndarray:
        """Mask of the rows that took part (finite label, sample in the protocol)."""
        return np.isfinite(self.predictions)

    def per_sample(self) -> pd.DataFrame:
        """One row per sample: sample_id, y_true, y_pred (mean of shots), y_pred_std, n_spectra."""
        m = self.scored
        return per_sample_predictions(self.spectrum_sample_ids[m], self.y_true[m], self.predictions[m])

    def metrics(self, seed: int = 0, n_boot: int = 2000) -> dict:
        """``small_campaign_metrics`` of the scored rows."""
        m = self.scored
        return small_campaign_metrics(self.y_true[m], self.predictions[m], self.spectrum_sample_ids[m], seed, n_boot)

    def to_dict(self, seed: int = 0, n_boot: int = 2000) -> dict:
        """JSON-able summary (NaN written as null): per-sample predictions, metrics, folds."""
        table = self.per_sample()
        return jsonable({
            "method": self.method,
            "analyte": self.analyte,
            "samples": self.samples,
            "per_sample": dict(zip(table["sample_id"], table["y_pred"])),
            "metrics": self.metrics(seed, n_boot),
            "folds": {s: r.to_dict() for s, r in self.folds.items()},
        })


@dataclass
class FoldChoice:
    """The served model of one outer fold: the inner-LOSO winner and every served candidate's inner RMSEP."""

    held_out: str
    winner: str
    inner_rmsep: dict[str, float]
    inner_samples: list[str]

    def to_dict(self) -> dict:
        return {"held_out": self.held_out, "winner": self.winner, "inner_rmsep": self.inner_rmsep,
                "inner_samples": self.inner_samples}


@dataclass
class NestedResult:
    """Outer LOSO of every candidate, the served (inner-LOSO-chosen) model, and the choice made in each fold."""

    analyte: str
    samples: list[str]
    candidates: dict[str, LosoResult]
    served: LosoResult | None
    choices: dict[str, FoldChoice]
    n_fits: int
    seconds: float

    def methods(self) -> dict[str, LosoResult]:
        """Every evaluated method by name; ``served`` last when present."""
        out = dict(self.candidates)
        if self.served is not None:
            out[SERVED] = self.served
        return out

    def predictions(self) -> dict[str, np.ndarray]:
        """Per-spectrum out-of-fold predictions of each method (rows of the evaluated dataset)."""
        return {name: r.predictions for name, r in self.methods().items()}

    def per_sample(self) -> pd.DataFrame:
        """One row per sample: sample_id, y_true, then one column of mean predictions per method."""
        tables = {name: r.per_sample() for name, r in self.methods().items()}
        first = next(iter(tables.values()))
        out = first[["sample_id", "y_true"]].copy()
        for name, table in tables.items():
            out[name] = table["y_pred"].to_numpy()
        return out

    def metrics(self, seed: int = 0, n_boot: int = 2000) -> dict[str, dict]:
        """``small_campaign_metrics`` of each method."""
        return {name: r.metrics(seed, n_boot) for name, r in self.methods().items()}

    def to_dict(self, seed: int = 0, n_boot: int = 2000) -> dict:
        """JSON-able summary (NaN written as null)."""
        return jsonable({
            "protocol": "nested leave-one-sample-out",
            "analyte": self.analyte,
            "samples": self.samples,
            "methods": {name: r.to_dict(seed, n_boot) for name, r in self.methods().items()},
            "choices": {h: c.to_dict() for h, c in self.choices.items()},
            "n_fits": self.n_fits,
            "seconds": self.seconds,
        })


def jsonable(value):
    """Plain JSON types: numpy scalars/arrays converted, non-finite floats written as None."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [jsonable(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def _prepare(ds: xr.Dataset, analyte: str, samples: Sequence[str] | None) -> tuple[xr.Dataset, np.ndarray, list[str]]:
    """(labelled spectra of the protocol's samples, their row positions in ``ds``, sample order)."""
    if analyte not in ds:
        raise ValueError(f"dataset has no label variable {analyte!r}")
    labelled = np.isfinite(np.asarray(ds[analyte].values, dtype=np.float64))
    sids = spectrum_sample_ids(ds)
    if samples is None:
        order = [s for s in sample_ids(ds) if labelled[sids == s].any()]
    else:
        order = [str(s) for s in samples]
        if len(set(order)) != len(order):
            raise ValueError(f"samples lists a sample twice: {order}")
        for s in order:
            if not (sids == s).any():
                raise ValueError(f"samples: {s!r} is not in the dataset")
            if not labelled[sids == s].any():
                raise ValueError(f"samples: {s!r} has no spectrum with a finite {analyte!r} label")
    if len(order) < 2:
        raise ValueError(f"leave-one-sample-out needs at least 2 labelled samples, got {len(order)}: {order}")
    rows = np.flatnonzero(labelled & np.isin(sids, order))
    return ds.isel(spectrum=rows), rows, order


class _Fitter:
    """Fits each (candidate, left-out set) once, checks it for leaks, and keeps its held-out predictions."""

    def __init__(self, ds: xr.Dataset, analyte: str, samples: list[str], candidates: Mapping[str, Candidate],
                 total: int, progress: Progress | None) -> None:
        self.ds, self.analyte, self.samples, self.candidates = ds, analyte, samples, candidates
        self.sids = spectrum_sample_ids(ds)
        self.records: dict[tuple[str, frozenset], FitRecord] = {}
        self.preds: dict[tuple[str, frozenset, str], np.ndarray] = {}
        self.tasks: dict[tuple[str, frozenset, str], dict[str, np.ndarray]] = {}
        self.total, self.progress = total, progress
        hidden = [v for v in label_names(ds) if v in ds] + ([analyte] if analyte not in label_names(ds) else [])
        self.unlabelled = ds.drop_vars(hidden)

    def prediction(self, name: str, left_out: frozenset, sample: str) -> np.ndarray:
        """Per-spectrum prediction of ``sample`` by candidate ``name`` fitted without ``left_out``."""
        if (name, left_out) not in self.records:
            self._fit(name, left_out)
        return self.preds[(name, left_out, sample)]

    def record(self, name: str, left_out: frozenset) -> FitRecord:
        if (name, left_out) not in self.records:
            self._fit(name, left_out)
        return self.records[(name, left_out)]

    def _fit(self, name: str, left_out: frozenset) -> None:
        train_ids = [s for s in self.samples if s not in left_out]
        out_ids = [s for s in self.samples if s in left_out]
        fold = f"candidate {name!r}, fold leaving out {out_ids}"
        train = select_samples(self.ds, train_ids)
        start = time.perf_counter()
        try:
            fitted = self.candidates[name].fit(train, self.analyte)
        except Exception as exc:
            exc.add_note(f"while fitting {fold}")
            raise
        fit_seconds = time.perf_counter() - start
        declared = getattr(fitted, "train_samples", None)
        if declared is None or isinstance(declared, str):
            raise TypeError(f"{fold}: the fitted model has no train_samples list (the samples its fit used)")
        declared = [str(s) for s in declared]
        leaked = [s for s in declared if s not in set(train_ids)]
        if leaked:
            raise LeakError(
                f"{fold}: the fitted model declares train_samples {leaked} that were not in its training set "
                f"(held-out sample(s) {out_ids}); a fit may use only the spectra it is given"
            )
        start = time.perf_counter()
        for s in out_ids:
            part = select_samples(self.unlabelled, [s])
            try:
                pred = np.asarray(fitted.predict_dataset(part), dtype=np.float64)
            except Exception as exc:
                exc.add_note(f"while predicting sample {s!r} with {fold}")
                raise
            if pred.shape != (part.sizes["spectrum"],):
                raise ValueError(f"{fold}: predict_dataset returned shape {pred.shape} for "
                                 f"{part.sizes['spectrum']} spectra of sample {s!r}")
            if not np.all(np.isfinite(pred)):
                raise ValueError(f"{fold}: predict_dataset returned non-finite values for sample {s!r}")
            self.preds[(name, left_out, s)] = pred
            predict_tasks = getattr(fitted, "predict_tasks", None)
            if callable(predict_tasks) and len(left_out) == 1:  # outer folds only: what trust calibration uses
                self.tasks[(name, left_out, s)] = {k: np.asarray(v, dtype=np.float64)
                                                   for k, v in predict_tasks(part).items()}
        describe = getattr(fitted, "describe", None)
        self.records[(name, left_out)] = FitRecord(
            left_out=out_ids, train_samples=declared, fit_seconds=fit_seconds,
            predict_seconds=time.perf_counter() - start, description=describe() if callable(describe) else None,
        )
        if self.progress is not None:
            self.progress(len(self.records), self.total, f"fitted {fold}")

    def outer(self, name: str, full: xr.Dataset, rows: np.ndarray) -> LosoResult:
        """The outer LOSO result of candidate ``name``, aligned with the rows of ``full``."""
        preds = np.full(full.sizes["spectrum"], np.nan)
        folds = {}
        tasks: dict[str, np.ndarray] = {}
        for s in self.samples:
            left_out = frozenset([s])
            where = rows[self.sids == s]
            preds[where] = self.prediction(name, left_out, s)
            folds[s] = self.record(name, left_out)
            for task, values in self.tasks.get((name, left_out, s), {}).items():
                tasks.setdefault(task, np.full(full.sizes["spectrum"], np.nan))[where] = values
        result = _result(name, self.analyte, self.samples, full, preds, folds)
        result.task_predictions = tasks
        return result


def _result(method: str, analyte: str, samples: list[str], full: xr.Dataset, preds: np.ndarray,
            folds: dict[str, FitRecord]) -> LosoResult:
    return LosoResult(
        method=method, analyte=analyte, samples=list(samples),
        spectrum_sample_ids=spectrum_sample_ids(full),
        y_true=np.asarray(full[analyte].values, dtype=np.float64), predictions=preds, folds=folds,
    )


def loso_predictions(
    ds: xr.Dataset, analyte: str, candidate: Candidate, samples: Sequence[str] | None = None,
    progress: Progress | None = None,
) -> LosoResult:
    """One level of LOSO for ``candidate`` over ``samples`` (default: every sample with a finite label).

    ``progress(done, total, message)`` is called after each fit. Raises ``LeakError`` if a fit declares
    a held-out sample in its ``train_samples``.
    """
    labelled, rows, order = _prepare(ds, analyte, samples)
    name = str(getattr(candidate, "name", "candidate"))
    fitter = _Fitter(labelled, analyte, order, {name: candidate}, len(order), progress)
    return fitter.outer(name, ds, rows)


def inner_errors(fitter: _Fitter, name: str, held_out: str) -> np.ndarray:
    """Per-sample errors (mean shot prediction - label) of ``name`` by LOSO over the samples other than ``held_out``."""
    errors = []
    for i in fitter.samples:
        if i == held_out:
            continue
        pred = fitter.prediction(name, frozenset([held_out, i]), i)
        truth = float(fitter.ds[fitter.analyte].values[fitter.sids == i][0])
        errors.append(float(pred.mean()) - truth)
    return np.asarray(errors, dtype=np.float64)


def choose_family(names: Sequence[str], errors: Mapping[str, np.ndarray]) -> str:
    """The served choice from per-sample errors on the same samples; ``names`` simplest first (the default).

    The paired-standard-error rule of the baselines (``baselines.selection_common.choose_candidate``): the
    simplest family is served unless another has a mean squared error lower by more than one standard error of
    the paired per-sample difference; among those, the lowest RMSEP. With 6-10 samples the plain minimum
    (``lowest_rmsep``) follows noise (nested on OREAS: 1 002 ppm with the minimum, univariate alone 943).
    """
    order = list(names)
    pick = choose_candidate([errors[n] for n in order], [(i,) for i in range(len(order))], "paired_se")
    return order[pick]


def lowest_rmsep(names: Sequence[str], errors: Mapping[str, np.ndarray]) -> str:
    """The default served choice: lowest RMSEP; ties (within ``TIE_RTOL``) go to the name listed first."""
    rmsep = {n: float(np.sqrt(np.mean(np.square(errors[n])))) for n in names}
    winner = names[0]
    for n in names[1:]:
        if rmsep[n] < rmsep[winner] and not math.isclose(rmsep[n], rmsep[winner], rel_tol=TIE_RTOL):
            winner = n
    return winner


def nested_loso(
    ds: xr.Dataset, analyte: str, candidates: Mapping[str, Candidate], served: Sequence[str] | None = None,
    progress: Progress | None = None, samples: Sequence[str] | None = None, eligible: Eligibility | None = None,
    choose: Chooser | None = None,
) -> NestedResult:
    """Outer LOSO of every candidate plus the served model chosen by inner LOSO among ``served`` (default: all).

    Ties in inner RMSEP (within relative ``TIE_RTOL``) go to the candidate listed first in ``served``.
    Needs at least 3 samples when anything is served (the inner LOSO needs 2). ``samples`` and ``progress``
    as in ``loso_predictions``. ``eligible(name, training_spectra)`` may rule a candidate out of one fold's
    choice from that fold's training samples only (as recalibration rules out an augmented family whose
    synthetic spectra fail the realism check); a fold where none is eligible keeps them all.
    ``choose(names, inner_errors)`` picks the fold's winner from the per-sample inner errors (default:
    ``choose_family``, recalibration's rule; ``lowest_rmsep`` is the plain minimum).
    """
    if not candidates:
        raise ValueError("candidates: need at least one candidate")
    names = [str(n) for n in candidates]
    if SERVED in names:
        raise ValueError(f"candidate name {SERVED!r} is reserved for the served model")
    served_names = names if served is None else [str(n) for n in served]
    unknown = [n for n in served_names if n not in names]
    if unknown:
        raise ValueError(f"served names {unknown} are not among the candidates {names}")
    labelled, rows, order = _prepare(ds, analyte, samples)
    if served_names and len(order) < 3:
        raise ValueError(f"nested LOSO needs at least 3 labelled samples to choose a served model, got {len(order)}")
    total = len(names) * len(order) + len(served_names) * len(list(combinations(order, 2)))
    start = time.perf_counter()
    fitter = _Fitter(labelled, analyte, order, {n: candidates[n] for n in names}, total, progress)
    outer = {n: fitter.outer(n, ds, rows) for n in names}
    choices: dict[str, FoldChoice] = {}
    served_result = None
    if served_names:
        served_preds = np.full(ds.sizes["spectrum"], np.nan)
        served_folds = {}
        for h in order:
            names_h = served_names
            if eligible is not None:
                inner_ds = select_samples(labelled, [s for s in order if s != h])
                names_h = [n for n in served_names if eligible(n, inner_ds)] or served_names
            errors = {n: inner_errors(fitter, n, h) for n in names_h}
            table = {n: float(np.sqrt(np.mean(np.square(e)))) for n, e in errors.items()}
            winner = (choose or choose_family)(names_h, errors)
            choices[h] = FoldChoice(held_out=h, winner=winner, inner_rmsep=table,
                                    inner_samples=[s for s in order if s != h])
            mask = outer[winner].spectrum_sample_ids == h
            served_preds[mask] = outer[winner].predictions[mask]
            served_folds[h] = outer[winner].folds[h]
        served_result = _result(SERVED, analyte, order, ds, served_preds, served_folds)
    return NestedResult(
        analyte=analyte, samples=order, candidates=outer, served=served_result, choices=choices,
        n_fits=len(fitter.records), seconds=time.perf_counter() - start,
    )
