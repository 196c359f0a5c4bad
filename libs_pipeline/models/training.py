"""Training loop (seeded, early stopping on by-sample validation, state_dict checkpoints) and the trained model.

``train_model`` is the single entry point for every variant: single-task vs multitask, with or
without synthetic augmentation, learned or fixed task weights -- all switches of ``TrainingConfig``.
"""

from __future__ import annotations

import copy
import io
import logging
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from libs_pipeline.config import TrainingConfig
from libs_pipeline.features.lines import LineWindow, resolve_lines
from libs_pipeline.models.data_loading import (
    InputOptions,
    SourceLike,
    SourceRows,
    SpectraBatches,
    SplitPlan,
    chunk_rows,
    fit_transforms,
    open_source,
    plan_split,
    source_fingerprint,
    synthetic_mask,
)
from libs_pipeline.models.calibration_curve import choose_calibration_curve, per_sample_means
from libs_pipeline.models.inputs import background_channels, input_channels, masked_input_windows
from libs_pipeline.models.losses import MultitaskLoss, masked_task_losses
from libs_pipeline.models.network import MultitaskCNN, NetworkSpec, enable_mc_dropout, fit_pool
from libs_pipeline.models.normalisation import SpectrumNormaliser, TargetScaler
from libs_pipeline.models.tasks import build_taskset
from libs_pipeline.spectra.atomic import atomic_write_bytes
from libs_pipeline.spectra.dataset import spectrum_sample_ids
from libs_pipeline.spectra.grid import same_grid

log = logging.getLogger(__name__)

PREDICT_BATCH = 256


@dataclass
class TrainedModel:
    """A trained network with everything needed to apply it: input normalisation, target scaling, tasks, grid."""

    network: MultitaskCNN
    normaliser: SpectrumNormaliser
    scaler: TargetScaler
    wavelength: np.ndarray
    lines: list[dict]
    config: TrainingConfig
    metrics: dict[str, Any] = field(default_factory=dict)
    data_versions: list[dict] = field(default_factory=list)

    @property
    def task_names(self) -> list[str]:
        """Task names, primary (the analyte) first, then ``<line>:area`` and plasma tasks."""
        return list(self.scaler.task_names)

    @property
    def analyte(self) -> str:
        return self.task_names[0]

    def line_windows(self) -> list[LineWindow]:
        return [LineWindow.from_dict(d) for d in self.lines]

    def _inputs(self, intensity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(network input, spectrum totals) for raw spectra (n, m) or (m,)."""
        x = np.asarray(intensity, dtype=np.float32)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self.wavelength.size:
            raise ValueError(
                f"intensity shape {np.shape(intensity)} does not match the model's wavelength grid of "
                f"{self.wavelength.size} channels ({self.wavelength[0]:.3f}-{self.wavelength[-1]:.3f} nm)"
            )
        return self.normaliser.transform(x), self.normaliser.divisors(x)

    def _forward_scaled(self, x: np.ndarray) -> np.ndarray:
        device = next(self.network.parameters()).device
        outs = []
        with torch.no_grad():
            for b in range(0, x.shape[0], PREDICT_BATCH):
                outs.append(self.network(torch.from_numpy(x[b : b + PREDICT_BATCH]).to(device)).cpu().numpy())
        return np.concatenate(outs) if outs else np.empty((0, len(self.task_names)), np.float32)

    def _as_dict(self, values: np.ndarray) -> dict[str, np.ndarray]:
        return {name: values[:, j] for j, name in enumerate(self.task_names)}

    @property
    def has_masked_auxiliaries(self) -> bool:
        return self.network.masked_heads is not None

    def _forward_masked(self, x: np.ndarray, scaled: np.ndarray) -> np.ndarray:
        """``scaled`` with the auxiliary line columns replaced by their masked-window predictions."""
        device = next(self.network.parameters()).device
        out = scaled.copy()
        k = len(self.network.spec.masked_windows)
        with torch.no_grad():
            for b in range(0, x.shape[0], PREDICT_BATCH):
                xb = torch.from_numpy(x[b : b + PREDICT_BATCH]).to(device)
                out[b : b + PREDICT_BATCH, 1 : 1 + k] = self.network.forward_masked(xb).cpu().numpy()
        return out

    def predict(self, intensity: np.ndarray, auxiliaries: str = "masked") -> dict[str, np.ndarray]:
        """Deterministic prediction (dropout off) of every task in raw units, for spectra (n, m) or (m,).

        ``auxiliaries``: with masked-window heads (``config.masked_auxiliaries``), "masked" reports each line
        area as predicted with that line's window hidden (what trust compares with the measured area) and
        "visible" the ordinary heads; the primary prediction is the same either way.
        """
        if auxiliaries not in ("masked", "visible"):
            raise ValueError(f"auxiliaries must be 'masked' or 'visible', got {auxiliaries!r}")
        x, totals = self._inputs(intensity)
        self.network.eval()
        scaled = self._forward_scaled(x)
        if auxiliaries == "masked" and self.has_masked_auxiliaries:
            scaled = self._forward_masked(x, scaled)
        return self._as_dict(self.scaler.inverse(scaled, totals))

    def predict_with_uncertainty(
        self, intensity: np.ndarray, n_samples: int = 20, seed: int = 0, dropout: float | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """MC-dropout predictive mean and std of every task (raw units), from ``n_samples`` seeded passes.

        ``dropout``: the drop probability of the test-time passes (None: the training rate), so the
        MC-dropout comparator can be tuned on calibration data.
        """
        if n_samples < 2:
            raise ValueError(f"n_samples must be >= 2 for a standard deviation, got {n_samples}")
        if dropout is not None and not 0.0 < dropout < 1.0:
            raise ValueError(f"dropout must be in (0, 1), got {dropout}")
        x, totals = self._inputs(intensity)
        draws = []
        layers = [m for m in self.network.modules() if isinstance(m, torch.nn.Dropout)]
        rates = [m.p for m in layers]
        try:
            enable_mc_dropout(self.network)
            if dropout is not None:
                for m in layers:
                    m.p = float(dropout)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                for _ in range(n_samples):
                    scaled = self._forward_scaled(x)
                    if self.has_masked_auxiliaries:
                        scaled = self._forward_masked(x, scaled)
                    draws.append(self.scaler.inverse(scaled, totals))
        finally:
            for m, p in zip(layers, rates):
                m.p = p
            self.network.eval()
        stack = np.stack(draws)
        return self._as_dict(stack.mean(axis=0)), self._as_dict(stack.std(axis=0, ddof=1))


def select_device(choice: str) -> torch.device:
    """'auto' -> CUDA when available else CPU; 'cuda' without a GPU is an error."""
    if choice == "cpu":
        return torch.device("cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but torch.cuda.is_available() is False")
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _evaluate(network: MultitaskCNN, batches: SpectraBatches, device: torch.device, n_tasks: int) -> np.ndarray:
    """Scaled predictions and targets on a fixed batch sequence: returns per-task RMSE (standardised units)."""
    network.eval()
    sq = np.zeros(n_tasks)
    count = np.zeros(n_tasks)
    with torch.no_grad():
        for x, y in batches:
            pred = network(x.to(device)).cpu().numpy()
            y = y.numpy()
            ok = np.isfinite(y)
            sq += np.where(ok, (pred - np.where(ok, y, 0.0)) ** 2, 0.0).sum(axis=0)
            count += ok.sum(axis=0)
    with np.errstate(invalid="ignore"):
        return np.sqrt(sq / count)


def _save_checkpoint(directory: Path, step: int, network: MultitaskCNN, loss_fn: MultitaskLoss) -> None:
    """Atomic state_dict checkpoint (network + loss log-variances) at ``directory/checkpoint.pt``."""
    buf = io.BytesIO()
    torch.save({"step": torch.tensor(step), "network": network.state_dict(), "loss": loss_fn.state_dict()}, buf)
    atomic_write_bytes(directory / "checkpoint.pt", buf.getvalue())


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]train[/bold] {task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} steps"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=not enabled,
        transient=True,
    )


@contextmanager
def _torch_threads(n: int | None):
    """Temporarily set torch's CPU thread count (on a busy 2-core host, 1 thread avoids spin-wait slowdowns)."""
    previous = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n is not None:
            torch.set_num_threads(previous)


def train_model(
    train_sources: Sequence[SourceLike],
    config: TrainingConfig,
    val_sources: Sequence[SourceLike] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> TrainedModel:
    """Train one model on ``train_sources`` (measured and synthetic spectra; paths, URIs or Datasets).

    ``progress(step, max_steps)``: called at every evaluation step of the main phase (live progress, e.g. a
    Prefect progress artifact in flows/train.py); training may stop early, before ``max_steps``.

    Validation: ``val_sources`` if given, else ``config.val_fraction`` of the measured samples (by
    sample); early stopping on the validation RMSE of the primary task, best weights restored.
    Without validation (val_fraction=0) it trains exactly ``max_steps`` and keeps the final weights.
    Pretraining (``pretrain_uris``/``pretrain_steps``): phase 1 runs exactly ``pretrain_steps`` on those
    spectra, then phase 2 (fresh optimiser) trains on ``train_sources``. Input normalisation, saturation
    mask and target scaling are fitted on the phase-2 training rows (the data the model is applied to);
    tasks without targets there (T_K, n_e from simulation) take their scaling from the pretraining rows.
    """
    with _torch_threads(config.num_threads):
        return _train(train_sources, config, val_sources, progress=progress)[0]


def _optimiser(network: MultitaskCNN, loss_fn: MultitaskLoss, config: TrainingConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(
        [
            {"params": network.parameters(), "weight_decay": config.weight_decay},
            {"params": [loss_fn.log_vars], "weight_decay": 0.0, "lr": config.learning_rate * config.log_var_lr_factor},
        ],
        lr=config.learning_rate,
    )


@dataclass
class _Phase:
    """Outcome of one optimisation phase: steps, epochs, evaluation history, best (score, step, state), snapshots."""

    steps: int
    epochs: int
    history: list[dict[str, Any]]
    best: tuple
    snapshots: dict[int, dict]


def _optimise(
    network: MultitaskCNN,
    loss_fn: MultitaskLoss,
    config: TrainingConfig,
    train_batches: SpectraBatches,
    val_batches: SpectraBatches | None,
    max_steps: int,
    task_names: list[str],
    device: torch.device,
    label: str,
    checkpoint_dir: Path | None = None,
    snapshot_steps: Sequence[int] = (),
    on_step: Callable[[int, int], None] | None = None,
) -> _Phase:
    """Run up to ``max_steps`` optimiser steps (early stopping only with ``val_batches``); snapshot weights at given steps."""
    loader = torch.utils.data.DataLoader(train_batches, batch_size=None, num_workers=config.num_workers)
    optimiser = _optimiser(network, loss_fn, config)
    history: list[dict[str, Any]] = []
    snapshots: dict[int, dict] = {}
    wanted = set(int(s) for s in snapshot_steps)
    best = (np.inf, 0, copy.deepcopy(network.state_dict()))
    step, epoch, stale, running, running_tasks = 0, 0, 0, [], []
    with _progress(config.progress_bar) as progress:
        bar = progress.add_task(f"{label} ({len(task_names)} tasks)", total=max_steps)
        while step < max_steps and stale < config.patience:
            train_batches.set_epoch(epoch)
            step_at_epoch_start = step
            for x, y in loader:
                network.train()
                x, y = x.to(device), y.to(device)
                pred = network(x)
                loss, per_task = loss_fn(pred, y)
                if network.masked_heads is not None:
                    k = len(network.spec.masked_windows)
                    masked_losses, has = masked_task_losses(
                        network.forward_masked(x), y[:, 1 : 1 + k], config.loss, config.huber_delta
                    )
                    loss = loss + masked_losses[has].sum()
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(network.parameters(), 5.0)
                optimiser.step()
                step += 1
                running.append(float(loss.detach()))
                running_tasks.append(per_task.cpu().numpy())
                progress.advance(bar)
                if step in wanted:
                    snapshots[step] = copy.deepcopy(network.state_dict())
                if step % config.eval_every == 0 or step == max_steps:
                    record: dict[str, Any] = {
                        "step": step,
                        "epoch": epoch,
                        "train_loss": float(np.mean(running)),
                        "train_task_loss": dict(zip(task_names, map(float, np.nanmean(running_tasks, axis=0)))),
                    }
                    running, running_tasks = [], []
                    if val_batches is not None:
                        val_rmse = _evaluate(network, val_batches, device, len(task_names))
                        record["val_rmse_scaled"] = {
                            t: (float(v) if np.isfinite(v) else None) for t, v in zip(task_names, val_rmse)
                        }
                        score = float(val_rmse[0])
                        if score < best[0] - 1e-6:
                            best, stale = (score, step, copy.deepcopy(network.state_dict())), 0
                            if checkpoint_dir is not None:
                                _save_checkpoint(checkpoint_dir, step, network, loss_fn)
                        else:
                            stale += 1
                    elif checkpoint_dir is not None:
                        _save_checkpoint(checkpoint_dir, step, network, loss_fn)
                    history.append(record)
                    progress.update(bar, description=f"{label} loss {record['train_loss']:.3f}")
                    if on_step is not None:
                        on_step(step, max_steps)
                if step >= max_steps or stale >= config.patience:
                    break
            if step == step_at_epoch_start:  # pragma: no cover - guarded by the n_train checks
                raise RuntimeError("an epoch produced no training batch")
            epoch += 1
    return _Phase(step, epoch, history, best, snapshots)


def _refit_calibration(
    network: MultitaskCNN, plan: SplitPlan, normaliser: SpectrumNormaliser, scaler: TargetScaler
) -> None:
    """Least-squares refit of the primary calibration on the network's own auxiliary predictions (training rows).

    The scaled concentration is regressed (with intercept) on the predicted auxiliary outputs, i.e. a
    univariate-style calibration on learned line areas; the gradient-trained weights are replaced.
    """
    batches = SpectraBatches(plan.train, normaliser, scaler, PREDICT_BATCH, shuffle=False)
    aux, target = [], []
    with torch.no_grad():
        for x, y in batches:
            aux.append(network(x)[:, 1:].numpy().astype(np.float64))
            target.append(y[:, 0].numpy().astype(np.float64))
    a, t = np.concatenate(aux), np.concatenate(target)
    ok = np.isfinite(t)
    design = np.column_stack([a[ok], np.ones(int(ok.sum()))])
    coef, *_ = np.linalg.lstsq(design, t[ok], rcond=None)
    with torch.no_grad():
        network.calibration.weight.copy_(torch.as_tensor(coef[None, :-1], dtype=torch.float32))
        network.calibration.bias.copy_(torch.as_tensor(coef[-1:], dtype=torch.float32))


def _measured_train_outputs(
    network: MultitaskCNN, plan: SplitPlan, normaliser: SpectrumNormaliser, scaler: TargetScaler
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(network outputs, scaled targets, sample ids) of the measured (not synthetic) training rows."""
    outputs, targets, ids = [], [], []
    with torch.no_grad():
        for src in plan.train:
            for positions in src.blocks():
                measured = positions[~np.asarray(src.synthetic[positions], dtype=bool)]
                if measured.size == 0:
                    continue
                x = torch.from_numpy(normaliser.transform(src.read(measured)))
                outputs.append(network(x).numpy().astype(np.float64))
                targets.append(scaler.transform(src.targets[measured], src.totals[measured])[:, 0].astype(np.float64))
                ids.append(src.sample_ids[measured])
    if not outputs:
        return np.empty((0, network.spec.n_tasks)), np.empty(0), np.empty(0, dtype=str)
    return np.concatenate(outputs), np.concatenate(targets), np.concatenate(ids)


def _fit_calibration_curve(
    network: MultitaskCNN, plan: SplitPlan, normaliser: SpectrumNormaliser, scaler: TargetScaler, n_lines: int,
    task_names: Sequence[str],
) -> dict[str, Any]:
    """``calibration_fit: "curve"``: the concentration becomes a curve on one line's predicted area, chosen by
    leave-one-sample-out over the training samples (``models.calibration_curve``). Where no curve can be chosen
    (fewer than 4 labelled samples, ...), the least-squares linear calibration on every output stays, and the
    returned record says why."""
    # the auxiliary outputs do not depend on the calibration layers: choose the curve first, refit only to fall back
    outputs, targets, ids = _measured_train_outputs(network, plan, normaliser, scaler)
    means, y = per_sample_means(outputs[:, 1 : 1 + n_lines], targets, ids)
    try:
        curve = choose_calibration_curve(means, y, list(task_names[1 : 1 + n_lines]))
    except ValueError as exc:
        log.warning("calibration curve not used, least-squares calibration kept: %s", exc)
        _refit_calibration(network, plan, normaliser, scaler)
        return {"form": "least_squares", "reason": str(exc)}
    coef = np.zeros(3)
    coef[3 - len(curve.coef):] = curve.coef  # (b2, b1, b0)
    linear = torch.zeros_like(network.calibration.weight)
    quadratic = torch.zeros_like(network.curvature.weight)
    linear[0, curve.task] = float(coef[1])
    quadratic[0, curve.task] = float(coef[0])
    with torch.no_grad():
        network.calibration.weight.copy_(linear)
        network.calibration.bias.fill_(float(coef[2]))
        network.curvature.weight.copy_(quadratic)
    return curve.to_dict()


def _pretrain_plan(config: TrainingConfig, wavelength: np.ndarray) -> SplitPlan | None:
    """The pretraining rows (every spectrum of ``pretrain_uris`` with a finite analyte label, synthetic or not),
    or None without pretraining."""
    if bool(config.pretrain_uris) != (config.pretrain_steps > 0):
        raise ValueError(
            f"pretraining needs both pretrain_uris and pretrain_steps > 0 (got {len(config.pretrain_uris)} URI(s), "
            f"{config.pretrain_steps} steps)"
        )
    if not config.pretrain_uris:
        return None
    rows = []
    for i, uri in enumerate(config.pretrain_uris):
        name, ds = open_source(uri, i)
        wl = np.asarray(ds["wavelength"].values, dtype=np.float64)
        if not same_grid(wl, wavelength):
            raise ValueError(
                f"pretraining source {name}: wavelength grid ({wl.size} channels) differs from the training "
                f"sources' ({wavelength.size} channels)"
            )
        if config.analyte not in ds:
            raise ValueError(f"pretraining source {name}: no label variable {config.analyte!r}")
        keep = np.flatnonzero(np.isfinite(np.asarray(ds[config.analyte].values, dtype=np.float64)))
        sids = spectrum_sample_ids(ds)[keep]
        rows.append(SourceRows(name, ds, keep, sids, synthetic_mask(ds)[keep], chunk_rows(ds)))
    rows = [r for r in rows if r.rows.size]
    plan = SplitPlan(rows, [], sorted({s for r in rows for s in r.sample_ids}), [], wavelength)
    if plan.n_train < 2:
        raise ValueError(f"pretraining needs at least 2 labelled spectra, the sources hold {plan.n_train}")
    return plan


def _input_options(config: TrainingConfig, wavelength: np.ndarray, lines: list[LineWindow]) -> InputOptions:
    """Normalisation, channel selection (ROI) and saturation options of a run, resolved on its grid."""
    reference = background_channels(wavelength, lines) if config.normalisation == "background" else None
    return InputOptions(
        method=config.normalisation,
        scaling=config.channel_scaling,
        channels=input_channels(config, wavelength, lines),
        reference=reference,
        saturation=config.saturation,
        saturation_margin=config.saturation_margin,
    )


def _masked_windows(config: TrainingConfig, tasks, wavelength: np.ndarray, normaliser: SpectrumNormaliser):
    """Input ranges of the auxiliary lines for masked-window heads (none unless ``masked_auxiliaries``)."""
    if not config.masked_auxiliaries:
        return ()
    if not tasks.lines:
        raise ValueError("masked_auxiliaries needs auxiliary line tasks (multitask with lines)")
    return masked_input_windows(wavelength, tasks.lines, normaliser.channels)


def _train(
    train_sources: Sequence[SourceLike],
    config: TrainingConfig,
    val_sources: Sequence[SourceLike] | None,
    snapshot_steps: Sequence[int] = (),
    progress: Callable[[int, int], None] | None = None,
) -> tuple[TrainedModel, dict[int, dict]]:
    t0 = time.perf_counter()
    split_seed = config.seed if config.split_seed is None else config.split_seed
    plan = plan_split(train_sources, config.analyte, config.val_fraction, split_seed, val_sources, config.augmentation)
    n_syn = int(sum(s.synthetic.sum() for s in plan.train))
    if plan.n_train < 2:
        raise ValueError(f"training needs at least 2 spectra, the split left {plan.n_train}")
    if config.augmentation and n_syn == 0:
        raise ValueError(
            "augmentation is on but the training sources hold no synthetic spectrum of a training sample "
            "(add a synthetic store, or set augmentation: false)"
        )
    pre_plan = _pretrain_plan(config, plan.wavelength)
    lines = resolve_lines(config.analyte, config.lines)
    tasks = build_taskset(
        config.analyte,
        lines,
        config.multitask,
        config.plasma_tasks,
        [s.ds for s in plan.train] + ([s.ds for s in pre_plan.train] if pre_plan else []),
        config.log_primary,
        areas_per_total=config.normalisation != "none",
    )
    normaliser, scaler = fit_transforms(
        plan, tasks, _input_options(config, plan.wavelength, lines), fallback=pre_plan.train if pre_plan else ()
    )

    seeds = np.random.SeedSequence(config.seed).generate_state(2)
    device = select_device(config.device)
    n_inputs = normaliser.input_size(plan.wavelength.size)
    primary_head = config.primary_head if config.multitask else "features"
    if config.calibration_fit != "gradient" and primary_head != "auxiliary":
        raise ValueError(f"calibration_fit {config.calibration_fit!r} needs primary_head 'auxiliary' (and multitask)")
    spec = NetworkSpec(
        n_channels=n_inputs,
        n_tasks=len(tasks.names),
        stem_channels=config.stem_channels,
        block_channels=tuple(config.block_channels),
        pool=fit_pool(n_inputs, 1 + len(config.block_channels), config.pool),
        dense_units=config.dense_units,
        head_units=config.head_units,
        dropout=config.dropout,
        primary_head=primary_head,
        linear_skip=config.linear_skip,
        masked_windows=_masked_windows(config, tasks, plan.wavelength, normaliser),
        quadratic_calibration=config.calibration_fit == "curve",
    )
    train_batches = SpectraBatches(
        plan.train, normaliser, scaler, config.batch_size, shuffle=True, seed=int(seeds[0]),
        buffer_chunks=config.shuffle_buffer_chunks, min_last_batch=2,
    )
    val_batches = (
        SpectraBatches(plan.val, normaliser, scaler, max(config.batch_size, 64), shuffle=False) if plan.val else None
    )
    checkpoint_dir = Path(config.checkpoint_dir) if config.checkpoint_dir else None

    pre_phase = None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seeds[1]))
        network = MultitaskCNN(spec).to(device)
        loss_fn = MultitaskLoss(
            tasks.names, config.task_weighting, config.fixed_weights, config.loss, config.huber_delta
        ).to(device)
        if pre_plan is not None:
            # phase 1: pretraining spectra, no validation, exactly pretrain_steps steps, fresh optimiser after
            pre_batches = SpectraBatches(
                pre_plan.train, normaliser, scaler, config.batch_size, shuffle=True,
                seed=int(np.random.SeedSequence([config.seed, 1]).generate_state(1)[0]),
                buffer_chunks=config.shuffle_buffer_chunks, min_last_batch=2,
            )
            pre_phase = _optimise(
                network, loss_fn, config, pre_batches, None, config.pretrain_steps, tasks.names, device,
                f"pretrain {config.analyte}",
            )
        phase = _optimise(
            network, loss_fn, config, train_batches, val_batches, config.max_steps, tasks.names, device,
            config.analyte, checkpoint_dir, snapshot_steps, on_step=progress,
        )
    if val_batches is not None:
        network.load_state_dict(phase.best[2])
    network = network.cpu().eval()
    curve_record = None
    if config.calibration_fit == "least_squares":
        _refit_calibration(network, plan, normaliser, scaler)
    elif config.calibration_fit == "curve":
        curve_record = _fit_calibration_curve(network, plan, normaliser, scaler, len(tasks.lines), tasks.names)

    model = TrainedModel(
        network=network,
        normaliser=normaliser,
        scaler=scaler,
        wavelength=plan.wavelength.astype(np.float64),
        lines=[ln.to_dict() for ln in lines],
        config=config,
        data_versions=_data_versions(plan),
    )
    model.metrics = _final_metrics(
        model, plan, phase.history, phase.best, phase.steps, phase.epochs, loss_fn, n_syn, time.perf_counter() - t0
    )
    model.metrics["input_channels"] = n_inputs
    if curve_record is not None:
        model.metrics["calibration_curve"] = curve_record
    model.metrics["saturated_inputs"] = int(normaliser.masked.size)
    model.metrics["pool"] = spec.pool
    model.metrics["pretrain_steps"] = pre_phase.steps if pre_phase else 0
    if pre_phase is not None:
        model.metrics["pretrain_history"] = pre_phase.history
        model.metrics["n_pretrain_spectra"] = pre_plan.n_train
    log.info("trained %s: %d steps (best %d), %.1f s", model.task_names, phase.steps, model.metrics["best_step"], model.metrics["seconds"])
    return model, phase.snapshots


def _data_versions(plan: SplitPlan) -> list[dict]:
    records = []
    seen: set[str] = set()
    for side, sources in (("train", plan.train), ("val", plan.val)):
        for src in sources:
            rec = source_fingerprint(src.name, src.ds)
            rec.update({"split": side, "rows_used": int(src.rows.size)})
            key = f"{side}:{src.name}"
            if key not in seen:
                seen.add(key)
                records.append(rec)
    return records


def _final_metrics(
    model: TrainedModel,
    plan: SplitPlan,
    history: list[dict],
    best: tuple,
    steps: int,
    epochs: int,
    loss_fn: MultitaskLoss,
    n_syn: int,
    seconds: float,
) -> dict[str, Any]:
    metrics: dict[str, Any] = {
        "task_names": model.task_names,
        "device": str(select_device(model.config.device)),
        "steps": steps,
        "epochs": epochs,
        "best_step": int(best[1]) if plan.val else steps,
        "train_samples": plan.train_samples,
        "val_samples": plan.val_samples,
        "n_train_spectra": plan.n_train,
        "n_train_synthetic": n_syn,
        "n_val_spectra": plan.n_val,
        "excluded_spectra": plan.excluded,
        "task_weights": loss_fn.task_weights(),
        "log_vars": {t: float(v) for t, v in zip(model.task_names, loss_fn.log_vars.detach().cpu())},
        "history": history,
        "seconds": round(seconds, 3),
    }
    if plan.val:
        pred_parts, true_parts = [], []
        for src in plan.val:
            for positions in src.blocks():
                pred_parts.append(np.column_stack(list(model.predict(src.read(positions)).values())))
                true_parts.append(src.targets[positions])
        pred, true = np.concatenate(pred_parts), np.concatenate(true_parts)
        val = {}
        for j, name in enumerate(model.task_names):
            ok = np.isfinite(true[:, j])
            if ok.any():
                err = pred[ok, j] - true[ok, j]
                val[name] = {"rmse": float(np.sqrt(np.mean(err**2))), "bias": float(np.mean(err)), "n": int(ok.sum())}
        metrics["validation"] = val
    return metrics
