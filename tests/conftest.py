"""Shared fixtures: tiny deterministic datasets and the optional real-data folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from libs_pipeline.testing import toy_campaign

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
OREAS_DIR = SHARED_DATA / "oreas_na"


@pytest.fixture(scope="session")
def toy_ds():
    """6 samples x 10 shots x 512 channels, label Cu in wt%."""
    return toy_campaign()


@pytest.fixture
def oreas_dir() -> Path:
    """../shared/data/oreas_na, or skip when the real data is absent."""
    if not (OREAS_DIR / "Na_ppm_from_tutorial.csv").is_file():
        pytest.skip(f"real OREAS data not found at {OREAS_DIR}")
    return OREAS_DIR
