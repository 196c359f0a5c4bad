"""Fixtures for the model tests: a toy campaign saved as zarr and a small synthetic store made from it."""

from __future__ import annotations

import warnings

import pytest

from libs_pipeline.config import TrainingConfig
from libs_pipeline.synth.generate import generate_synthetic


@pytest.fixture(scope="session")
def toy_zarr(tmp_path_factory, toy_ds):
    """The toy campaign written as a zarr store chunked by 16 spectra (path)."""
    path = tmp_path_factory.mktemp("toy") / "toy.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zarr v3: fixed-length unicode has no spec yet
        toy_ds.chunk({"spectrum": 16}).to_zarr(path, mode="w", consolidated=False)
    return str(path)


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
