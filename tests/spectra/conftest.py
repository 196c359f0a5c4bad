"""Fixtures of the ingest tests: a tiny campaign on disk (``libs_pipeline.testing.campaign_files``) and a local
store root (``store_root``, from tests/conftest.py, is a local and an S3 root)."""

from __future__ import annotations

from pathlib import Path

import pytest

from libs_pipeline.testing.campaign_files import write_campaign


@pytest.fixture
def campaign(tmp_path) -> Path:
    return write_campaign(tmp_path / "campaign")


@pytest.fixture
def local_root(tmp_path) -> Path:
    """A store root on the local disk (for tests that look at the files as paths)."""
    return tmp_path / "store"
