"""Masked-window auxiliaries: each line area also predicted with that line's input window hidden, so the
prediction cannot simply integrate the window that trust compares it with."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from libs_pipeline.features.lines import default_lines
from libs_pipeline.models import load_model, save_model, train_model
from libs_pipeline.models.inputs import masked_input_windows, window_channels
from libs_pipeline.models.network import MultitaskCNN, NetworkSpec, mask_window


def test_mask_window_is_a_straight_line_between_the_edge_channels():
    x = torch.arange(10, dtype=torch.float32).reshape(1, 1, 10) ** 2
    out = mask_window(x, 3, 6)
    # edges: x[2] = 4, x[6] = 36 -> 12, 20, 28 in between
    np.testing.assert_allclose(out[0, 0].numpy(), [0, 1, 4, 12, 20, 28, 36, 49, 64, 81])
    assert x[0, 0, 4] == 16  # the input is not modified
    np.testing.assert_allclose(mask_window(x, 0, 2)[0, 0, :3].numpy(), [4, 4, 4])  # at the start: edge repeated
    np.testing.assert_allclose(mask_window(x, 8, 10)[0, 0, 7:].numpy(), [49, 49, 49])


def test_spec_rejects_bad_windows():
    with pytest.raises(ValueError, match="masked windows but only 1 auxiliary"):
        NetworkSpec(n_channels=64, n_tasks=2, masked_windows=((0, 2), (3, 4)))
    with pytest.raises(ValueError, match=r"masked window \(60, 70\)"):
        NetworkSpec(n_channels=64, n_tasks=3, masked_windows=((60, 70),))
    spec = NetworkSpec(n_channels=64, n_tasks=3, masked_windows=[[1, 3]])
    assert NetworkSpec.from_dict(spec.to_dict()) == spec
    assert MultitaskCNN(NetworkSpec(n_channels=64, n_tasks=3)).masked_heads is None


def test_masked_input_windows_map_line_windows_to_input_positions(toy_ds):
    wl = toy_ds["wavelength"].values
    lines = default_lines("Cu")
    full = masked_input_windows(wl, lines, None)
    for (a, b), ln in zip(full, lines):
        idx = window_channels(wl, [ln.window_nm])
        assert (a, b) == (idx.min(), idx.max() + 1)
    roi = np.concatenate([window_channels(wl, [ln.span_nm]) for ln in lines])
    roi = np.unique(roi)
    in_roi = masked_input_windows(wl, lines, roi)
    for (a, b), ln in zip(in_roi, lines):
        np.testing.assert_array_equal(roi[a:b], window_channels(wl, [ln.window_nm]))


def test_masked_auxiliaries_ignore_their_own_window(toy_ds, fast_config, tmp_path):
    config = fast_config.model_copy(update={"masked_auxiliaries": True, "max_steps": 30, "val_fraction": 0.0})
    model = train_model([toy_ds], config)
    spec = model.network.spec
    lines = model.line_windows()
    assert len(spec.masked_windows) == len(lines) and model.has_masked_auxiliaries
    x = toy_ds["intensity"].values[:6].astype(np.float32)
    masked, visible = model.predict(x), model.predict(x, auxiliaries="visible")
    np.testing.assert_array_equal(masked["Cu"], visible["Cu"])  # the primary never changes
    first = model.task_names[1]
    assert not np.allclose(masked[first], visible[first])
    # brighten line 0's window (not its edge channels): the masked prediction of that line does not move,
    # the visible one does
    wl = toy_ds["wavelength"].values
    inside = window_channels(wl, [lines[0].window_nm])
    brighter = x.copy()
    brighter[:, inside] *= 5.0
    if config.normalisation == "none":
        np.testing.assert_allclose(model.predict(brighter)[first], masked[first], rtol=1e-5)
    else:  # total normalisation: the divisor changes, so compare per-total inputs through the network directly
        xin = model.normaliser.transform(x)
        xin_b = model.normaliser.transform(brighter)
        a, b = spec.masked_windows[0]
        xin_b[:, :a] = xin[:, :a]
        xin_b[:, b:] = xin[:, b:]
        with torch.no_grad():
            out = model.network.forward_masked(torch.from_numpy(xin)).numpy()
            out_b = model.network.forward_masked(torch.from_numpy(xin_b)).numpy()
        np.testing.assert_allclose(out_b[:, 0], out[:, 0], rtol=1e-5)
        assert not np.allclose(model.network(torch.from_numpy(xin_b)).detach().numpy()[:, 1],
                               model.network(torch.from_numpy(xin)).detach().numpy()[:, 1])
    reloaded = load_model(save_model(model, tmp_path / "m"))
    assert reloaded.network.spec.masked_windows == spec.masked_windows
    np.testing.assert_allclose(reloaded.predict(x)[first], masked[first], rtol=1e-6)
    _, std = model.predict_with_uncertainty(x, n_samples=3)
    assert np.all(np.isfinite(std[first]))
    with pytest.raises(ValueError, match="'masked' or 'visible'"):
        model.predict(x, auxiliaries="both")


def test_masked_heads_leave_the_main_network_trained_as_without_them(toy_ds, fast_config):
    """Same seed, same data: the trunk and main heads learn exactly the same weights with or without masked heads
    (the masked pass runs without gradient into the trunk and in evaluation mode), up to dropout draws."""
    config = fast_config.model_copy(update={"max_steps": 10, "val_fraction": 0.0, "dropout": 0.0})
    plain = train_model([toy_ds], config)
    with_masked = train_model([toy_ds], config.model_copy(update={"masked_auxiliaries": True}))
    x = toy_ds["intensity"].values[:5]
    np.testing.assert_allclose(with_masked.predict(x, auxiliaries="visible")["Cu"], plain.predict(x)["Cu"], rtol=1e-5)


def test_masked_auxiliaries_need_line_tasks(toy_ds, fast_config):
    with pytest.raises(ValueError, match="masked_auxiliaries needs auxiliary line tasks"):
        train_model([toy_ds], fast_config.model_copy(update={"masked_auxiliaries": True, "multitask": False,
                                                             "max_steps": 2, "val_fraction": 0.0}))
