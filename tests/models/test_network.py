"""The multitask CNN: shapes, spec validation, the auxiliary-calibrated primary head, MC-dropout switching."""

from __future__ import annotations

import pytest
import torch

from libs_pipeline.models.network import MultitaskCNN, NetworkSpec, enable_mc_dropout


def test_output_has_one_column_per_task_and_checks_the_input_length():
    torch.manual_seed(0)
    net = MultitaskCNN(NetworkSpec(n_channels=512, n_tasks=3, stem_channels=4, block_channels=(4, 4)))
    out = net(torch.randn(5, 512))
    assert out.shape == (5, 3)
    assert net(torch.randn(5, 1, 512)).shape == (5, 3)
    with pytest.raises(ValueError, match="input has 500 channels; the network expects 512"):
        net(torch.randn(2, 500))


def test_spec_validation_and_round_trip():
    spec = NetworkSpec(n_channels=4096, n_tasks=2, block_channels=[4, 8], primary_head="both")
    assert NetworkSpec.from_dict(spec.to_dict()) == spec
    assert spec.flat_length == 4096 // 4 // 4 // 4
    with pytest.raises(ValueError, match="too few for 3 pooling stages"):
        NetworkSpec(n_channels=32, n_tasks=1)
    with pytest.raises(ValueError, match="needs auxiliary tasks"):
        NetworkSpec(n_channels=512, n_tasks=1, primary_head="auxiliary")
    with pytest.raises(ValueError, match="primary_head 'x'"):
        NetworkSpec(n_channels=512, n_tasks=2, primary_head="x")


def test_auxiliary_primary_head_is_a_calibration_on_detached_auxiliary_outputs():
    torch.manual_seed(0)
    net = MultitaskCNN(NetworkSpec(n_channels=512, n_tasks=3, stem_channels=4, block_channels=(4, 4),
                                   head_units=0, primary_head="auxiliary", dropout=0.0)).eval()
    x = torch.randn(4, 512)
    out = net(x)
    expected = net.calibration(out[:, 1:])
    assert torch.allclose(out[:, :1], expected, atol=1e-6)
    # the primary loss trains the calibration only, never the auxiliary heads
    out[:, 0].sum().backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in net.heads[1].parameters())
    assert net.calibration.weight.grad.abs().sum() > 0


def test_mc_dropout_keeps_only_dropout_sampling():
    net = MultitaskCNN(NetworkSpec(n_channels=512, n_tasks=1, stem_channels=4, block_channels=(4, 4), dropout=0.5))
    enable_mc_dropout(net)
    kinds = {type(m).__name__: m.training for m in net.modules() if type(m).__name__ in ("Dropout", "BatchNorm1d")}
    assert kinds == {"Dropout": True, "BatchNorm1d": False}
    x = torch.randn(3, 512)
    assert not torch.equal(net(x), net(x))


def test_linear_skip_adds_a_linear_map_of_the_input_to_every_output():
    torch.manual_seed(0)
    spec = NetworkSpec(n_channels=40, n_tasks=2, stem_channels=4, block_channels=(4,), pool=2, linear_skip=True,
                       dropout=0.0)
    assert NetworkSpec.from_dict(spec.to_dict()) == spec
    net = MultitaskCNN(spec).eval()
    x = torch.randn(3, 40)
    with torch.no_grad():
        out = net(x)
        skip, net.skip = net.skip, None
        without = net(x)
        assert torch.allclose(out - without, skip(x), atol=1e-5)
