"""Fixtures for the model tests: a small synthetic store made from the toy campaign, a fast config, one torch thread."""

from __future__ import annotations

import pytest

from libs_pipeline.config import TrainingConfig
from libs_pipeline.synth.generate import generate_synthetic


@pytest.fixture(scope="session")
def synthetic_uri(tmp_path_factory, toy_ds):
    """12 synthetic spectra per toy sample + one interpolated sample between each label neighbour (chunks of 16)."""
    root = tmp_path_factory.mktemp("synthetic")
    return generate_synthetic(
        toy_ds, root, per_sample=12, seed=0, chunk_size=16, name="toy", interpolate_between=1, interpolation_analyte="Cu"
    )


@pytest.fixture
def fast_config():
    """A few dozen CPU steps on the 512-channel toy spectra."""
    return TrainingConfig(
        analyte="Cu",
        augmentation=False,
        max_steps=40,
        eval_every=10,
        patience=100,
        batch_size=16,
        progress_bar=False,
        device="cpu",
        stem_channels=4,
        block_channels=[4, 4],
        dense_units=32,
        head_units=16,
    )


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One CPU thread: on the shared 2-core CI host, more threads make these tiny runs many times slower."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
