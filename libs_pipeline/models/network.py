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

    def __post_init__(self) -> None:
        object.__setattr__(self, "block_channels", tuple(int(c) for c in self.block_channels))
        object.__setattr__(self, "dilations", tuple(int(d) for d in self.dilations))
        if self.n_tasks < 1:
            raise ValueError("the network needs at least one task")
        if self.primary_head not in PRIMARY_HEADS:
            raise ValueError(f"primary_head {self.primary_head!r} is not one of {PRIMARY_HEADS}")
        if self.primary_head != "features" and self.n_tasks < 2:
            raise ValueError(f"primary_head {self.primary_head!r} needs auxiliary tasks (multitask)")
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
        # linear_skip: a linear map of the input added to every task output ("wide and deep"): line areas are
        # linear in the counts, so the outputs can extrapolate linearly beyond the few training samples
        self.skip = nn.Linear(spec.n_channels, spec.n_tasks) if spec.linear_skip else None

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
            from_aux = self.calibration(torch.cat(out[1:], dim=1).detach())
            out[0] = from_aux if self.spec.primary_head == "auxiliary" else out[0] + from_aux
        return torch.cat(out, dim=1)


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
