"""Fixtures of the ingest tests: a tiny campaign on disk (``libs_pipeline.testing.campaign_files``) and a store root."""

from __future__ import annotations

from pathlib import Path

import pytest

from libs_pipeline.testing.campaign_files import write_campaign


@pytest.fixture
def campaign(tmp_path) -> Path:
    return write_campaign(tmp_path / "campaign")


@pytest.fixture
def store_root(tmp_path) -> Path:
    return tmp_path / "store"
