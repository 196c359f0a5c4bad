"""Robust per-task losses and their combination by learned homoscedastic uncertainty (Kendall et al. 2018).

Each task i has a robust loss L_i (Huber or log-cosh, on standardised targets, NaN targets masked out)
and, when weights are learned, a log-variance s_i: total = sum_i 0.5 * exp(-s_i) * L_i + 0.5 * s_i.
The optimum is s_i = log L_i, so a noisier/harder task is down-weighted instead of dominating.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torch.nn import functional as F

ROBUST_LOSSES = ("huber", "logcosh")


def robust_loss(pred: torch.Tensor, target: torch.Tensor, kind: str = "huber", delta: float = 1.0) -> torch.Tensor:
    """Element-wise robust loss: quadratic near 0, linear in the tails (outliers do not dominate)."""
    if kind == "huber":
        return F.huber_loss(pred, target, reduction="none", delta=delta)
    if kind == "logcosh":
        d = pred - target
        # log(cosh(d)) = |d| + log1p(exp(-2|d|)) - log 2, stable for large |d|
        return d.abs() + torch.log1p(torch.exp(-2.0 * d.abs())) - math.log(2.0)
    raise ValueError(f"loss {kind!r} is not one of {ROBUST_LOSSES}")


def masked_task_losses(
    pred: torch.Tensor, target: torch.Tensor, kind: str = "huber", delta: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean robust loss per task over the finite targets; returns (losses (n_tasks,), has_target (n_tasks,) bool)."""
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
    mask = torch.isfinite(target)
    safe_target = torch.where(mask, target, pred.detach())
    elem = robust_loss(pred, safe_target, kind, delta) * mask
    counts = mask.sum(dim=0)
    losses = elem.sum(dim=0) / counts.clamp(min=1)
    return losses, counts > 0


class MultitaskLoss(nn.Module):
    """Combine per-task robust losses with learned log-variances, or with fixed weights (ablation)."""

    def __init__(
        self,
        task_names: Sequence[str],
        weighting: str = "learned",
        fixed_weights: Mapping[str, float] | None = None,
        kind: str = "huber",
        delta: float = 1.0,
    ) -> None:
        super().__init__()
        if weighting not in ("learned", "fixed"):
            raise ValueError(f"task weighting {weighting!r} is not 'learned' or 'fixed'")
        if kind not in ROBUST_LOSSES:
            raise ValueError(f"loss {kind!r} is not one of {ROBUST_LOSSES}")
        self.task_names = list(task_names)
        self.weighting = weighting
        self.kind = kind
        self.delta = float(delta)
        fixed_weights = dict(fixed_weights or {})
        unknown = sorted(set(fixed_weights) - set(self.task_names))
        if unknown:
            raise ValueError(f"fixed_weights names unknown tasks {unknown}; tasks are {self.task_names}")
        if any(w < 0 or not math.isfinite(w) for w in fixed_weights.values()):
            raise ValueError(f"fixed_weights must be finite and >= 0, got {fixed_weights}")
        self.log_vars = nn.Parameter(torch.zeros(len(self.task_names)), requires_grad=weighting == "learned")
        self.register_buffer(
            "weights", torch.tensor([float(fixed_weights.get(t, 1.0)) for t in self.task_names], dtype=torch.float32)
        )

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (total loss scalar, per-task losses (n_tasks,), detached)."""
        losses, present = masked_task_losses(pred, target, self.kind, self.delta)
        if self.weighting == "fixed":
            total = (self.weights * losses).sum()
        else:
            s = self.log_vars
            # a task without targets in this batch contributes nothing (its s_i would otherwise drift to -inf)
            total = (present * (0.5 * torch.exp(-s) * losses + 0.5 * s)).sum()
        return total, losses.detach()

    def task_weights(self) -> dict[str, float]:
        """Effective weight of each task's loss (exp(-s_i)/2 when learned)."""
        if self.weighting == "fixed":
            w = self.weights
        else:
            w = 0.5 * torch.exp(-self.log_vars.detach())
        return {t: float(v) for t, v in zip(self.task_names, w)}
