"""Sample ids of a spectra dataset: per spectrum (str array) and unique in order of appearance."""

from __future__ import annotations

import numpy as np

from libs_pipeline.spectra.dataset import sample_ids, select_samples, spectrum_sample_ids
from libs_pipeline.testing import toy_campaign


def test_spectrum_sample_ids_is_one_str_per_spectrum():
    ds = toy_campaign(n_samples=3, n_shots=2, n_channels=64)
    ids = spectrum_sample_ids(ds)
    assert ids.dtype.kind == "U" and ids.tolist() == ["S00", "S00", "S01", "S01", "S02", "S02"]
    assert sample_ids(ds) == ["S00", "S01", "S02"]
    picked = select_samples(ds, ["S02", "S00"])
    assert np.array_equal(spectrum_sample_ids(picked), np.array(["S00", "S00", "S02", "S02"]))


def test_open_spectra_takes_a_file_uri(tmp_path):
    from libs_pipeline.spectra.location import open_location
    from libs_pipeline.spectra.store import SpectraStore, open_spectra

    version = SpectraStore(tmp_path).write_version("toy", toy_campaign(n_samples=2, n_shots=2, n_channels=32),
                                                   sources=[{}], reader="dataset")
    path = tmp_path / "spectra" / "toy" / f"{version}.zarr"
    assert open_location(path.as_uri()).local_path == path and open_location(str(path)).local_path == path
    opened = open_spectra(path.as_uri())
    assert spectrum_sample_ids(opened).tolist() == ["S00", "S00", "S01", "S01"]
