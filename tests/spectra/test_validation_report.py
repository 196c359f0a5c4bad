"""The validation report of a stored spectra version."""

from __future__ import annotations

from libs_pipeline.spectra.store import SpectraStore
from libs_pipeline.spectra.validation_report import data_validation_report
from libs_pipeline.testing import toy_campaign


def test_data_validation_report(tmp_path):
    version = SpectraStore(tmp_path).write_version("toy", toy_campaign(n_samples=8, n_shots=16, n_channels=256),
                                                   sources=[{}], reader="dataset")
    text = data_validation_report(tmp_path, "toy", version)
    assert text.startswith(f"# Data version `toy@{version}`")
    assert "128 spectra of 8 samples, 256 channels" in text
    assert "schema validation of the stored data: passed" in text
    assert "## Ingest warnings (0)" in text
