"""Choose the optimiser-step budget of a tiny campaign by inner leave-one-sample-out over the training samples.

With 5-10 training samples a validation split rests on one or two samples, so early stopping on it is
noise. Instead every training sample is held out once; one run of ``max(budgets)`` steps per inner
fold (val_fraction=0) is snapshotted at each budget, and the budget with the smallest per-sample RMSE
of the held-out sample-mean predictions wins (ties: the smaller budget). Only training samples are used.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from libs_pipeline.config import TrainingConfig
from libs_pipeline.models.data_loading import SourceLike, open_source, sample_parents, synthetic_mask
from libs_pipeline.models.training import _torch_threads, _train
from libs_pipeline.spectra.dataset import spectrum_sample_ids

log = logging.getLogger(__name__)

DEFAULT_BUDGETS = (100, 200, 400, 800)


def _split_off(opened: Sequence[xr.Dataset], sample: str) -> tuple[list[xr.Dataset], np.ndarray]:
    """(sources without any spectrum of or derived from ``sample``, that sample's measured intensity)."""
    rest, held = [], []
    for ds in opened:
        touches = np.array([sample in parents for parents in sample_parents(ds)], dtype=bool)
        measured = touches & ~synthetic_mask(ds)
        if measured.any():
            held.append(np.asarray(ds["intensity"].isel(spectrum=np.flatnonzero(measured)).values, dtype=np.float32))
        if (~touches).any():
            rest.append(ds.isel(spectrum=np.flatnonzero(~touches)))
    return rest, np.concatenate(held)


def inner_loso_errors(
    train_sources: Sequence[SourceLike], config: TrainingConfig, budgets: Sequence[int] = DEFAULT_BUDGETS
) -> dict[int, dict[str, float]]:
    """Per budget: {held-out training sample: sample-mean prediction error (raw units)} from inner LOSO."""
    budgets = sorted({int(b) for b in budgets})
    if not budgets or budgets[0] < 1:
        raise ValueError(f"budgets must be positive step counts, got {budgets}")
    opened = [open_source(s, i)[1] for i, s in enumerate(train_sources)]
    labels: dict[str, float] = {}
    for ds in opened:
        measured = ~synthetic_mask(ds)
        for sid, value in zip(spectrum_sample_ids(ds)[measured],
                              np.asarray(ds[config.analyte].values, dtype=np.float64)[measured]):
            if np.isfinite(value):
                labels.setdefault(str(sid), float(value))
    if len(labels) < 3:
        raise ValueError(f"inner leave-one-sample-out needs at least 3 labelled training samples, got {len(labels)}")
    inner = config.model_copy(update={"val_fraction": 0.0, "max_steps": budgets[-1], "checkpoint_dir": None})
    errors: dict[int, dict[str, float]] = {b: {} for b in budgets}
    for sample in sorted(labels):
        rest, held = _split_off(opened, sample)
        with _torch_threads(config.num_threads):
            model, snapshots = _train(rest, inner, None, snapshot_steps=budgets)
        for b in budgets:
            model.network.load_state_dict(snapshots[b])
            model.network.eval()
            errors[b][sample] = float(np.mean(model.predict(held)[config.analyte]) - labels[sample])
        log.info("inner fold %s: errors %s", sample, {b: round(errors[b][sample], 3) for b in budgets})
    return errors


def select_step_budget(
    config: TrainingConfig, train_sources: Sequence[SourceLike] | SourceLike, budgets: Sequence[int] = DEFAULT_BUDGETS
) -> int:
    """The ``max_steps`` with the smallest inner-LOSO RMSE over the training samples (ties: fewer steps)."""
    sources = [train_sources] if isinstance(train_sources, str | Path | xr.Dataset) else list(train_sources)
    errors = inner_loso_errors(sources, config, budgets)
    rmse = {b: float(np.sqrt(np.mean(np.square(list(e.values()))))) for b, e in errors.items()}
    best = min(rmse, key=lambda b: (rmse[b], b))
    log.info("step budget by inner LOSO: %s -> %d", {b: round(v, 3) for b, v in rmse.items()}, best)
    return best
