"""Trust figures are real PNGs and refuse empty input."""

from __future__ import annotations

import numpy as np
import pytest

from libs_pipeline.trust.figures import plot_roc_curves, plot_score_distributions



def test_figures_are_png(tmp_path):
    rng = np.random.default_rng(0)
    ref = {"trust_score": rng.gamma(2, 1, 200), "pls_q": rng.gamma(2, 1, 200)}
    scen = {
        "gain_change": {s: {"trust_score": rng.gamma(2, k, 100), "pls_q": rng.gamma(2, 1, 100)} for s, k in (("mild", 1.5), ("strong", 3.0))},
        "wavelength_shift": {s: {"trust_score": np.r_[rng.gamma(2, k, 99), np.inf], "pls_q": rng.gamma(2, k, 100)} for s, k in (("mild", 2.0), ("strong", 5.0))},
    }
    a = plot_score_distributions(ref["trust_score"], {n: {s: v["trust_score"] for s, v in d.items()} for n, d in scen.items()}, 3.0, tmp_path / "d.png")
    b = plot_roc_curves(ref, scen, tmp_path / "roc.png", "strong")
    for path in (a, b):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
    with pytest.raises(ValueError, match="no scenarios"):
        plot_score_distributions(ref["trust_score"], {}, 3.0, tmp_path / "x.png")
    with pytest.raises(ValueError, match="no scenario has severity 'extreme'"):
        plot_roc_curves(ref, scen, tmp_path / "x.png", "extreme")
    with pytest.raises(ValueError, match="no in-distribution scores for detector 'pls_q'"):
        plot_roc_curves({"trust_score": ref["trust_score"]}, scen, tmp_path / "x.png")


def test_trust_vs_error_figure_with_and_without_wrong_predictions(tmp_path):
    from libs_pipeline.trust.figures import plot_trust_vs_error

    rng = np.random.default_rng(0)
    scores = rng.gamma(2.0, 1.0, 200)
    scores[0] = np.inf  # an unscorable spectrum is drawn as the most suspect, not dropped
    errors = rng.normal(size=200) * (0.1 + 0.2 * np.where(np.isfinite(scores), scores, 10.0))
    for name, e in (("mixed.png", errors), ("none_wrong.png", np.full(200, 0.1))):
        path = plot_trust_vs_error(scores, e, 4.0, tmp_path / name, "wt%", "t")
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    # ranked by an error score (a percentile in [0, 1]) instead of the trust score
    ranking = rng.uniform(size=200)
    path = plot_trust_vs_error(scores, errors, 4.0, tmp_path / "ranked.png", "wt%", "t", ranking=ranking)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
