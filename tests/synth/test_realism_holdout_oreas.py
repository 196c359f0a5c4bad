"""Out-of-sample realism on the real OREAS Na campaign (skipped when ../shared/data is absent)."""

from __future__ import annotations

import warnings

import pytest

from libs_pipeline.synth.realism_holdout import holdout_realism


@pytest.mark.slow
def test_real_oreas_holdout(oreas_dir, capsys):
    from libs_pipeline.config import IngestOptions
    from libs_pipeline.spectra.campaign_loading import load_campaign

    ds = load_campaign(oreas_dir / "Na_ppm_from_tutorial.csv", options=IngestOptions(saturation_level=38000))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rep = holdout_realism(ds, "Na", seed=0, n_synthetic=50, n_null=30)
    with capsys.disabled():
        print("\n" + rep.to_markdown())
    assert len(rep.holdout) == 7 and (rep.holdout["n_fit"] == 5).all()
    assert rep.settings["model_options"]["saturation"] == pytest.approx(38000, rel=0.02)
    assert 0.85 < rep.campaign["tstr_ratio"] < 1.15  # the model keeps the mean Na line areas
    assert rep.campaign["total_fisher_p"] > 0.01
    assert rep.holdout["mean_ratio_median"].between(0.8, 1.2).all()
    # measured (seeds 0-3): OREAS601's held-out residuals lie mostly outside the synthetic top PCs
    pcs = rep.pcs.set_index("sample_id")
    assert "pc_capture" in pcs.loc["OREAS601", "failed_checks"]
    assert pcs.loc["OREAS601", "captured_heldout_by_syn"] < 0.5 * pcs.loc["OREAS601", "captured_null_low"]
    assert not rep.passed and rep.holdout["passed"].sum() == 4
