"""Robust losses and the learned / fixed task weighting."""

from __future__ import annotations

import math

import pytest
import torch

from libs_pipeline.models.losses import MultitaskLoss, masked_task_losses, robust_loss


def test_huber_and_logcosh_values():
    pred = torch.tensor([0.0, 0.5, 3.0])
    target = torch.zeros(3)
    huber = robust_loss(pred, target, "huber", delta=1.0)
    assert torch.allclose(huber, torch.tensor([0.0, 0.125, 2.5]))
    logcosh = robust_loss(pred, target, "logcosh")
    expected = torch.log(torch.cosh(pred))
    assert torch.allclose(logcosh, expected, atol=1e-6)
    # stable in the tails: log cosh(100) ~ 100 - log 2
    assert math.isclose(float(robust_loss(torch.tensor([100.0]), torch.zeros(1), "logcosh")), 100 - math.log(2), rel_tol=1e-6)
    with pytest.raises(ValueError, match="not one of"):
        robust_loss(pred, target, "mse")


def test_nan_targets_are_masked_and_give_no_gradient():
    pred = torch.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    target = torch.tensor([[0.0, float("nan")], [3.0, float("nan")]])
    losses, present = masked_task_losses(pred, target, "huber", 1.0)
    assert present.tolist() == [True, False]
    assert torch.allclose(losses, torch.tensor([0.25, 0.0]))
    losses.sum().backward()
    assert pred.grad[:, 1].abs().sum() == 0
    assert torch.isfinite(pred.grad).all()


def test_learned_log_variances_move_the_right_way():
    """A noisier task gets a larger log-variance (smaller weight); optimum s_i = log L_i."""
    torch.manual_seed(0)
    loss_fn = MultitaskLoss(["clean", "noisy"], weighting="learned", kind="huber", delta=100.0)
    opt = torch.optim.Adam([loss_fn.log_vars], lr=0.05)
    target = torch.zeros(256, 2)
    pred = torch.stack([0.1 * torch.randn(256), 2.0 * torch.randn(256)], dim=1)
    per_task, _ = masked_task_losses(pred, target, "huber", 100.0)
    for _ in range(600):
        total, _ = loss_fn(pred, target)
        opt.zero_grad()
        total.backward()
        opt.step()
    s = loss_fn.log_vars.detach()
    assert s[1] > 0 > s[0]
    assert torch.allclose(s, torch.log(per_task), atol=0.05)
    weights = loss_fn.task_weights()
    assert weights["clean"] > 10 * weights["noisy"]


def test_fixed_weights_do_not_learn_and_weight_the_sum():
    loss_fn = MultitaskLoss(["a", "b"], weighting="fixed", fixed_weights={"b": 0.25})
    assert not loss_fn.log_vars.requires_grad
    pred = torch.tensor([[1.0, 1.0]])
    target = torch.zeros(1, 2)
    total, per_task = loss_fn(pred, target)
    assert torch.allclose(per_task, torch.tensor([0.5, 0.5]))
    assert math.isclose(float(total), 0.5 + 0.25 * 0.5)
    assert loss_fn.task_weights() == {"a": 1.0, "b": 0.25}


def test_learned_weighting_skips_tasks_without_targets():
    loss_fn = MultitaskLoss(["a", "b"], weighting="learned")
    with torch.no_grad():
        loss_fn.log_vars.copy_(torch.tensor([0.0, -3.0]))
    total, _ = loss_fn(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, float("nan")]]))
    assert math.isclose(float(total.detach()), 0.5 * 0.5)  # task b's s=-3 does not enter


def test_bad_weighting_arguments():
    with pytest.raises(ValueError, match="unknown tasks"):
        MultitaskLoss(["a"], weighting="fixed", fixed_weights={"z": 1.0})
    with pytest.raises(ValueError, match=">= 0"):
        MultitaskLoss(["a"], weighting="fixed", fixed_weights={"a": -1.0})
    with pytest.raises(ValueError, match="learned"):
        MultitaskLoss(["a"], weighting="auto")
    with pytest.raises(ValueError, match="shape"):
        masked_task_losses(torch.zeros(2, 2), torch.zeros(2, 3))
