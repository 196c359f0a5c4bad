"""Multitask 1-D CNN: a shared Inception-style convolutional trunk over the full spectrum, one head per task.

Why these sizes: emission lines are a few channels wide (FWHM 2-5 channels) on spectra of thousands
of channels. The stem (kernel 7 at full resolution, i.e. a line profile plus its shoulders) acts as a
bank of matched filters; 4x max-pooling then keeps each line's peak response while shrinking the
sequence. Each Inception block has parallel kernel-3 branches with dilations 1, 2, 4 (footprints 3,
5, 9 pooled channels = 12-36 raw channels after the first pooling: line core, line + wings, line +
local background, which is how blends and baselines are separated) plus a max-pool/1x1 branch.
The trunk ends by *flattening* (not global pooling) because position on the wavelength axis is the
element's identity. Dropout in the trunk and heads gives MC-dropout predictive uncertainty.
A region-of-interest input (tens to hundreds of channels) uses a smaller pooling factor (``fit_pool``);
``linear_skip`` adds a linear map of the input to every output so predictions can extrapolate linearly.

Masked-window auxiliaries (``masked_windows``): a network that reads a line's window predicts that line's
area by integrating it, so a contaminated area is predicted contaminated and the trust residual stays
small exactly when it should not. With masked windows, each auxiliary line also gets a second head that
sees the spectrum with that line's input window replaced by a straight line between its edge channels:
it must infer the area from the other lines and the continuum (the line-ratio and matrix context), so
its residual against the measured area is independent of that window. The trunk features for these heads
are computed in evaluation mode without gradient (``forward_masked``), so the main heads, the trunk and
its batch-norm statistics are trained exactly as without them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch
from torch import nn


PRIMARY_HEADS = ("features", "auxiliary", "both")


@dataclass(frozen=True)
class NetworkSpec:
    """Everything needed to rebuild the network before loading a state_dict."""

    n_channels: int
    n_tasks: int
    stem_channels: int = 8
    block_channels: tuple[int, ...] = field(default=(4, 8))
    dilations: tuple[int, ...] = field(default=(1, 2, 4))
    pool: int = 4
    dense_units: int = 64
    head_units: int = 32
    dropout: float = 0.1
    primary_head: str = "features"
    linear_skip: bool = False
    masked_windows: tuple[tuple[int, int], ...] = ()
    quadratic_calibration: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "block_channels", tuple(int(c) for c in self.block_channels))
        object.__setattr__(self, "dilations", tuple(int(d) for d in self.dilations))
        object.__setattr__(self, "masked_windows", tuple((int(a), int(b)) for a, b in self.masked_windows))
        if self.n_tasks < 1:
            raise ValueError("the network needs at least one task")
        if self.primary_head not in PRIMARY_HEADS:
            raise ValueError(f"primary_head {self.primary_head!r} is not one of {PRIMARY_HEADS}")
        if self.primary_head != "features" and self.n_tasks < 2:
            raise ValueError(f"primary_head {self.primary_head!r} needs auxiliary tasks (multitask)")
        if self.quadratic_calibration and self.primary_head == "features":
            raise ValueError("quadratic_calibration needs a calibration on the auxiliary outputs (primary_head "
                             "'auxiliary' or 'both')")
        if self.masked_windows:
            if len(self.masked_windows) > self.n_tasks - 1:
                raise ValueError(
                    f"{len(self.masked_windows)} masked windows but only {self.n_tasks - 1} auxiliary tasks"
                )
            for a, b in self.masked_windows:
                if not 0 <= a < b <= self.n_channels:
                    raise ValueError(f"masked window ({a}, {b}) is not a channel range of 0..{self.n_channels}")
        if self.flat_length < 1:
            raise ValueError(
                f"{self.n_channels} channels are too few for {1 + len(self.block_channels)} pooling stages of {self.pool}"
            )

    @property
    def flat_length(self) -> int:
        length = self.n_channels
        for _ in range(1 + len(self.block_channels)):
            length //= self.pool
        return length

    def to_dict(self) -> dict:
        d = asdict(self)
        d["block_channels"] = list(self.block_channels)
        d["dilations"] = list(self.dilations)
        d["masked_windows"] = [list(w) for w in self.masked_windows]
        return d

    @classmethod
    def from_dict(cls, data: dict) -> NetworkSpec:
        return cls(**data)


class InceptionBlock1d(nn.Module):
    """Parallel dilated kernel-3 convolutions plus a max-pool/1x1 branch, concatenated, batch-normed, GELU."""

    def __init__(self, in_channels: int, branch_channels: int, dilations: Sequence[int]) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Conv1d(in_channels, branch_channels, kernel_size=3, padding=d, dilation=d) for d in dilations
        )
        self.pool_branch = nn.Sequential(nn.MaxPool1d(3, stride=1, padding=1), nn.Conv1d(in_channels, branch_channels, 1))
        self.out_channels = branch_channels * (len(dilations) + 1)
        self.norm = nn.BatchNorm1d(self.out_channels)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = [conv(x) for conv in self.branches]
        parts.append(self.pool_branch(x))
        return self.act(self.norm(torch.cat(parts, dim=1)))


class MultitaskCNN(nn.Module):
    """Shared trunk -> dense shared representation -> one small regression head per task (output (n, n_tasks))."""

    def __init__(self, spec: NetworkSpec) -> None:
        super().__init__()
        self.spec = spec
        layers: list[nn.Module] = [
            nn.Conv1d(1, spec.stem_channels, kernel_size=7, padding=3),
            nn.BatchNorm1d(spec.stem_channels),
            nn.GELU(),
            nn.MaxPool1d(spec.pool),
        ]
        channels = spec.stem_channels
        for width in spec.block_channels:
            block = InceptionBlock1d(channels, width, spec.dilations)
            layers += [block, nn.MaxPool1d(spec.pool)]
            channels = block.out_channels
        self.trunk = nn.Sequential(*layers)
        self.shared = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(spec.dropout),
            nn.Linear(channels * spec.flat_length, spec.dense_units),
            nn.GELU(),
        )
        self.heads = nn.ModuleList(self._head(spec) for _ in range(spec.n_tasks))
        # primary_head "auxiliary"/"both": the concentration is (also) a linear calibration on the
        # network's own auxiliary predictions (detached, so the auxiliary heads learn only their targets)
        self.calibration = nn.Linear(spec.n_tasks - 1, 1) if spec.primary_head != "features" else None
        # quadratic_calibration: plus a quadratic term in the auxiliary outputs, set after training (a curve on
        # one line's predicted area; models.calibration_curve), never trained by gradient
        self.curvature = None
        if spec.quadratic_calibration:
            self.curvature = nn.Linear(spec.n_tasks - 1, 1, bias=False)
            nn.init.zeros_(self.curvature.weight)
            self.curvature.weight.requires_grad_(False)
        # linear_skip: a linear map of the input added to every task output ("wide and deep"): line areas are
        # linear in the counts, so the outputs can extrapolate linearly beyond the few training samples
        self.skip = nn.Linear(spec.n_channels, spec.n_tasks) if spec.linear_skip else None
        # masked_windows: one extra head per auxiliary line, fed the spectrum with that line's window masked
        self.masked_heads = nn.ModuleList(self._head(spec) for _ in spec.masked_windows) if spec.masked_windows else None

    @staticmethod
    def _head(spec: NetworkSpec) -> nn.Sequential:
        """Dropout then a small MLP (or, with head_units=0, a linear map: extrapolates linearly in the features)."""
        if spec.head_units == 0:
            return nn.Sequential(nn.Dropout(spec.dropout), nn.Linear(spec.dense_units, 1))
        return nn.Sequential(
            nn.Dropout(spec.dropout),
            nn.Linear(spec.dense_units, spec.head_units),
            nn.GELU(),
            nn.Linear(spec.head_units, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 2:
            x = x.unsqueeze(1)
        if x.shape[-1] != self.spec.n_channels:
            raise ValueError(f"input has {x.shape[-1]} channels; the network expects {self.spec.n_channels}")
        z = self.shared(self.trunk(x))
        out = [head(z) for head in self.heads]
        if self.skip is not None:
            linear = self.skip(x.flatten(1))
            out = [o + linear[:, j : j + 1] for j, o in enumerate(out)]
        if self.calibration is not None:
            aux = torch.cat(out[1:], dim=1).detach()
            from_aux = self.calibration(aux)
            if self.curvature is not None:
                from_aux = from_aux + self.curvature(aux * aux)
            out[0] = from_aux if self.spec.primary_head == "auxiliary" else out[0] + from_aux
        return torch.cat(out, dim=1)


    def forward_masked(self, x: torch.Tensor) -> torch.Tensor:
        """(n, n_masked): auxiliary line j predicted from the input with window j masked (see module doc).

        Trunk and shared layers run in evaluation mode without gradient; only the masked heads learn from
        this pass, and they keep their own dropout mode (so MC-dropout also samples them).
        """
        if self.masked_heads is None:
            raise ValueError("this network has no masked-window auxiliary heads")
        if x.ndim == 2:
            x = x.unsqueeze(1)
        was_training = self.training
        out = []
        try:
            self.trunk.eval()
            self.shared.eval()
            for (a, b), head in zip(self.spec.masked_windows, self.masked_heads):
                with torch.no_grad():
                    z = self.shared(self.trunk(mask_window(x, a, b)))
                out.append(head(z))
        finally:
            self.trunk.train(was_training)
            self.shared.train(was_training)
        return torch.cat(out, dim=1)


def mask_window(x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """Copy of ``x`` (..., n) with channels ``start:stop`` replaced by the straight line between the channels
    just outside them (the edge value repeated at a spectrum end)."""
    n = x.shape[-1]
    left = x[..., max(start - 1, 0)]
    right = x[..., min(stop, n - 1)]
    if start == 0:
        left = right
    if stop >= n:
        right = left
    t = torch.linspace(0.0, 1.0, stop - start + 2, dtype=x.dtype, device=x.device)[1:-1]
    out = x.clone()
    out[..., start:stop] = left.unsqueeze(-1) + (right - left).unsqueeze(-1) * t
    return out


def enable_mc_dropout(module: nn.Module) -> None:
    """Evaluation mode everywhere (batch-norm uses running stats) except dropout layers, which keep sampling."""
    module.eval()
    for m in module.modules():
        if isinstance(m, nn.Dropout):
            m.train()


def fit_pool(n_channels: int, n_stages: int, pool: int, min_length: int = 8) -> int:
    """Largest pooling factor <= ``pool`` that leaves >= ``min_length`` positions after ``n_stages`` poolings (>= 1).

    Full spectra keep the configured factor; a short region-of-interest input (tens to hundreds of
    channels) gets a smaller one instead of being pooled down to a single position.
    """
    for p in range(int(pool), 1, -1):
        if n_channels // p**n_stages >= min_length:
            return p
    return 1
