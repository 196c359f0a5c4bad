"""Nested LOSO on the real OREAS Na campaign (7 samples): the Na line calibration is served in every fold."""

from __future__ import annotations

import numpy as np

from libs_pipeline.config import IngestOptions
from libs_pipeline.candidates import MeanCandidate, UnivariateCandidate
from libs_pipeline.evaluation.nested import nested_loso
from libs_pipeline.evaluation.protocol import use_nested_protocol
from libs_pipeline.features.lines import default_lines
from libs_pipeline.spectra.campaign_loading import load_campaign


def test_oreas_nested_loso(oreas_dir):
    ds = load_campaign(str(oreas_dir / "Na_ppm_from_tutorial.csv"), options=IngestOptions(saturation_level=38000))
    assert use_nested_protocol(7, 0.3)
    candidates = {"mean": MeanCandidate(), "univariate": UnivariateCandidate(lines=[default_lines("Na")[0].to_dict()])}
    result = nested_loso(ds, "Na", candidates)
    assert len(result.samples) == 7 and result.n_fits == 2 * 7 + 2 * 21
    assert {c.winner for c in result.choices.values()} == {"univariate"}
    m = result.metrics()
    np.testing.assert_array_equal(result.served.predictions, result.candidates["univariate"].predictions)
    assert m["served"]["rmsep_sample"] < 0.25 * m["mean"]["rmsep_sample"]
    assert m["served"]["r2_sample"] > 0.9 and m["mean"]["r2_sample"] < 0
    lo, hi = m["served"]["rmsep_sample_ci95"]
    assert lo < m["served"]["rmsep_sample"] < hi
    assert m["served"]["n_spectra"] == 70 and set(m["served"]["errors"]) == set(result.samples)
