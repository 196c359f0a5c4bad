"""Real-data check: leave-one-sample-out over the 7 OREAS standards, univariate Na baseline and PLS.

README reference (same protocol): univariate (Na I 817.8-820.2 nm area, linear) RMSE ~ 795 ppm;
PLS on total-normalised spectra ~ 4 800 - 5 300 ppm. Uses a tiny local numpy reader (test context only).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import LeaveOneGroupOut

from libs_pipeline.baselines import PLSCalibration, UnivariateCalibration
from libs_pipeline.evaluation.metrics import evaluate_methods
from libs_pipeline.features import default_lines, feature_column, line_features


def _read_oreas(folder):
    """(intensity (70, n_channels) float32, wavelength, sample ids, Na ppm) from the shot-column text files."""
    table = pd.read_csv(folder / "Na_ppm_from_tutorial.csv")
    blocks = [np.loadtxt(folder / f, delimiter=",") for f in table["file"]]
    n = min(b.shape[0] for b in blocks)  # one file has one row fewer
    wl = blocks[0][:n, 0]
    for f, b in zip(table["file"], blocks):
        assert np.allclose(b[:n, 0], wl), f"{f}: wavelength grid differs"
    X = np.vstack([b[:n, 1:].T for b in blocks]).astype(np.float32)
    shots = [b.shape[1] - 1 for b in blocks]
    sids = np.repeat(table["sample"].to_numpy(str), shots)
    y = np.repeat(table["Na_ppm"].to_numpy(float), shots)
    return X, wl, sids, y


def leave_one_group_out(fit_predict, groups: np.ndarray) -> np.ndarray:
    """Each group's rows predicted by ``fit_predict(train_rows, test_rows)`` fitted without that group."""
    out = np.full(groups.shape[0], np.nan)
    for train, test in LeaveOneGroupOut().split(groups, groups=groups):
        out[test] = fit_predict(train, test)
    return out


def test_leave_one_sample_out_univariate_and_pls(oreas_dir):
    X, wl, sids, y = _read_oreas(oreas_dir)
    assert X.shape[0] == 70 and len(set(sids)) == 7
    line = default_lines("Na")[0]
    area = line_features(X, wl, [line])[feature_column(line, "area")].to_numpy()
    uni = leave_one_group_out(
        lambda tr, te: UnivariateCalibration(1).fit(area[tr], y[tr], groups=sids[tr]).predict(area[te]), sids
    )
    pls = leave_one_group_out(
        lambda tr, te: PLSCalibration(max_components=5).fit(X[tr], y[tr], sids[tr]).predict(X[te]), sids
    )
    table = evaluate_methods({"univariate": uni, "pls": pls}, y, sids)
    print("\n" + table[["sample_rmsep", "sample_mae", "sample_r2", "spectrum_rmsep"]].to_string())
    uni_rmse = table.loc["univariate", "sample_rmsep"]
    pls_rmse = table.loc["pls", "sample_rmsep"]
    assert uni_rmse < 1200.0  # reference ~795 ppm
    assert table.loc["univariate", "sample_r2"] > 0.95
    assert pls_rmse > uni_rmse  # as in the reference: the line area beats full-spectrum PLS on 7 samples
