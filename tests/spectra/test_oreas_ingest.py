"""The real OREAS Na campaign (7 samples x 10 shots x 8011 channels) ingests and round-trips exactly."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from libs_pipeline.config import IngestOptions
from libs_pipeline.spectra.ingest import ingest_campaign
from libs_pipeline.spectra.store import SpectraStore


def _parse(path) -> tuple[np.ndarray, np.ndarray]:
    """Independent parse: any of CR / LF / CRLF ends a line (OREAS601_7.txt mixes a bare CR with CRLF)."""
    rows = [ln for ln in path.read_bytes().decode().replace("\r\n", "\n").replace("\r", "\n").split("\n") if ln]
    table = np.array([[float(x) for x in ln.split(",")] for ln in rows])
    return table[:, 0], table[:, 1:].T.astype(np.float32)


def test_oreas_campaign_round_trips_exactly(oreas_dir, tmp_path):
    manifest = oreas_dir / "Na_ppm_from_tutorial.csv"
    result = ingest_campaign(manifest, tmp_path, name="oreas_na", options=IngestOptions(saturation_level=38000.0))
    assert result.status == "created", [str(r) for r in result.rejected]
    assert result.n_spectra == 70 and len(result.accepted) == 7 and result.rejected == []
    store = SpectraStore(tmp_path)
    ds = store.open("oreas_na").load()
    assert dict(ds.sizes) == {"spectrum": 70, "wavelength": 8011}
    labels = pd.read_csv(manifest)
    for row in labels.itertuples(index=False):
        wl, intensity = _parse(oreas_dir / row.file)
        np.testing.assert_array_equal(ds["wavelength"].values, wl)  # all seven files share one grid exactly
        sel = ds["sample_id"].values == row.sample
        np.testing.assert_array_equal(ds["intensity"].values[sel], intensity)
        assert ds["shot"].values[sel].tolist() == list(range(10))
        assert set(ds["Na"].values[sel]) == {float(row.Na_ppm)}
        sha = hashlib.sha256((oreas_dir / row.file).read_bytes()).hexdigest()
        assert set(ds["source_sha256"].values[sel]) == {sha}
        assert (tmp_path / "raw" / sha).read_bytes() == (oreas_dir / row.file).read_bytes()
    assert ds["Na"].attrs == {"units": "ppm", "role": "label"}
    assert ds["wavelength"].values[0] == 186.4672 and ds["wavelength"].values[-1] == 952.5722
    samples = store.samples("oreas_na").set_index("sample_id")
    assert samples["Na_ppm"].to_dict() == {r.sample: float(r.Na_ppm) for r in labels.itertuples(index=False)}
    assert (samples["n_spectra"] == 10).all()
    # the detector saturates near 38 000 counts: reported as warnings, not rejections
    saturated = {w.coordinate.split("sample ")[1].split(",")[0] for w in result.warnings if w.rule == "saturation"}
    assert saturated and saturated <= set(labels["sample"])
    again = ingest_campaign(manifest, tmp_path, name="oreas_na")
    assert again.status == "unchanged" and again.version == result.version
