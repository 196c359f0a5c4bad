"""Line features on known synthetic lines (4096-channel virtual grid), toy data, lazy datasets and bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from libs_pipeline.features.line_features import (
    auxiliary_names,
    auxiliary_targets,
    channel_widths,
    dataset_line_features,
    feature_column,
    line_channels,
    line_features,
)
from libs_pipeline.features.lines import LineWindow, default_lines
from libs_pipeline.spectra.dataset import make_spectra_dataset
from libs_pipeline.testing.synthetic_lines import gaussian_line, grid, sloped_baseline, voigt_line

CU1, CU2 = default_lines("Cu")
AREA1, AREA2 = 800.0, 450.0  # counts*nm


def _cu_spectrum(wl, center1=324.754, center2=327.396, profile=gaussian_line):
    base = sloped_baseline(wl, level=500.0, slope=20.0)
    return base + profile(wl, center1, AREA1) + profile(wl, center2, AREA2), base


@pytest.mark.parametrize("profile", [gaussian_line, voigt_line], ids=["gaussian", "voigt"])
@pytest.mark.parametrize("centers", [(324.754, 327.396), (324.847, 327.490)], ids=["air", "vacuum"])
def test_area_recovered_noise_free(profile, centers):
    wl = grid()
    spec, _ = _cu_spectrum(wl, *centers, profile=profile)
    table = line_features(spec, wl, [CU1, CU2])
    assert list(table.columns) == [feature_column(l, k) for l in (CU1, CU2) for k in ("area", "height", "sbr")]
    assert table.shape == (1, 6)
    got = table[auxiliary_names([CU1, CU2])].to_numpy()[0]
    tol = 1e-4 if profile is gaussian_line else 0.02  # Voigt wings leave the window
    np.testing.assert_allclose(got, [AREA1, AREA2], rtol=tol)


def test_height_and_sbr_match_hand_computation():
    wl = grid()
    spec, base = _cu_spectrum(wl)
    row = line_features(spec, wl, [CU1]).iloc[0]
    peak = (spec - base)[(wl >= CU1.window_nm[0]) & (wl <= CU1.window_nm[1])].max()
    assert row[feature_column(CU1, "height")] == pytest.approx(peak, rel=1e-9)
    base_at_center = 500.0 + 20.0 * (CU1.center_nm - wl[0])
    assert row[feature_column(CU1, "sbr")] == pytest.approx(peak / base_at_center, rel=1e-9)


def test_area_recovered_with_poisson_noise():
    wl = grid()
    areas_true = np.array([4000.0, 2500.0])
    spec = sloped_baseline(wl, 200.0, 5.0) + gaussian_line(wl, 324.754, areas_true[0]) + gaussian_line(
        wl, 327.396, areas_true[1]
    )
    rng = np.random.default_rng(np.random.SeedSequence(7))
    noisy = rng.poisson(np.tile(spec, (200, 1))).astype(np.float32)  # counting noise, ~20-50 counts per channel
    areas = auxiliary_targets(noisy, wl, [CU1, CU2])
    assert areas.dtype == np.float32 and areas.shape == (200, 2)
    rel = areas / areas_true - 1.0
    np.testing.assert_allclose(areas.mean(axis=0), areas_true, rtol=0.003)  # unbiased
    assert np.all(np.sqrt(np.mean(rel**2, axis=0)) < 0.02)  # single-spectrum error within 2 % (RMS)


def test_area_is_linear_in_toy_cu_label(toy_ds):
    table = line_features(toy_ds["intensity"].values, toy_ds["wavelength"].values, default_lines("Cu"))
    for line in default_lines("Cu"):
        frame = pd.DataFrame({"cu": toy_ds["Cu"].values, "area": table[feature_column(line, "area")]})
        means = frame.groupby("cu")["area"].mean()
        r = np.corrcoef(means.index, means.values)[0, 1]
        assert r > 0.995, (line.name, r)


def test_one_sided_background_uses_constant():
    wl = grid()
    line = LineWindow("test", "Cu", 324.754, (324.35, 325.25), ((325.45, 325.95),))
    flat = 900.0 + gaussian_line(wl, 324.754, 300.0)
    assert line_features(flat, wl, [line]).iloc[0]["test:area"] == pytest.approx(300.0, rel=1e-4)


def test_channel_widths_uniform_and_nonuniform():
    np.testing.assert_allclose(channel_widths(np.array([1.0, 2.0, 3.0])), [1.0, 1.0, 1.0])
    np.testing.assert_allclose(channel_widths(np.array([0.0, 1.0, 3.0])), [1.0, 1.5, 2.0])


def test_nonuniform_grid_area():
    wl = np.sort(np.concatenate([grid(300.0, 350.0, 300), np.linspace(324.0, 326.0, 37)[1:-1]]))
    wl = np.unique(np.round(wl, 6))
    spec = 700.0 + gaussian_line(wl, 324.754, 500.0, fwhm=0.3)
    assert line_features(spec, wl, [CU1]).iloc[0][feature_column(CU1, "area")] == pytest.approx(500.0, rel=0.02)


def test_dataset_line_features_matches_in_memory_and_loads_subset(toy_ds):
    lines = default_lines("Cu")
    expected = line_features(toy_ds["intensity"].values, toy_ds["wavelength"].values, lines)
    lazy = toy_ds.chunk({"spectrum": 7})
    got = dataset_line_features(lazy, lines, chunk_size=13)
    assert list(got.index) == list(toy_ds["spectrum"].values)
    np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), rtol=1e-12)
    idx = line_channels(toy_ds["wavelength"].values, lines)
    assert idx.size < toy_ds.sizes["wavelength"] / 10  # only the channels the lines read


def test_nan_spectrum_gives_nan_features_not_error():
    wl = grid()
    spec = np.vstack([_cu_spectrum(wl)[0], np.full(wl.size, np.nan)])
    table = line_features(spec, wl, [CU1])
    assert np.isfinite(table.iloc[0]).all() and table.iloc[1].isna().all()


def test_sbr_nan_when_background_not_positive():
    wl = grid()
    spec = gaussian_line(wl, 324.754, 100.0) - 5.0  # negative background (over-subtracted dark)
    assert np.isnan(line_features(spec, wl, [CU1]).iloc[0][feature_column(CU1, "sbr")])


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda wl: (np.ones(wl.size), wl[::-1], [CU1]), "strictly increasing"),
        (lambda wl: (np.ones(wl.size - 1), wl, [CU1]), "does not match the wavelength grid"),
        (lambda wl: (np.ones((2, 3, wl.size)), wl, [CU1]), "does not match the wavelength grid"),
        (lambda wl: (np.ones(wl.size), wl, []), "at least one LineWindow"),
        (lambda wl: (np.ones(wl.size), wl, [CU1, CU1]), "used more than once"),
        (lambda wl: (np.ones(wl.size), wl, default_lines("Na")), "wavelength grid covers"),
        (
            lambda wl: (np.ones(wl.size), wl, [LineWindow("narrow", "Cu", 324.75, (324.74, 324.76), ((323.0, 324.0),))]),
            r"holds \d channel\(s\) of the grid; need at least 2",
        ),
        (
            lambda wl: (np.ones(wl.size), wl, [LineWindow("nobg", "Cu", 324.75, (324.3, 325.2), ((323.01, 323.02),))]),
            "hold no channel",
        ),
    ],
)
def test_bad_input_names_the_problem(make, message):
    intensity, wl, lines = make(grid(300.0, 400.0, 700))
    with pytest.raises(ValueError, match=message):
        line_features(intensity, wl, lines)


def test_dataset_line_features_errors(toy_ds):
    with pytest.raises(ValueError, match="no variable 'counts'"):
        dataset_line_features(toy_ds, default_lines("Cu"), var="counts")
    with pytest.raises(ValueError, match="chunk_size must be >= 1"):
        dataset_line_features(toy_ds, default_lines("Cu"), chunk_size=0)


def test_empty_dataset_gives_empty_table():
    wl = grid(300.0, 400.0, 512)
    ds = make_spectra_dataset(np.empty((0, wl.size)), wl, [], [])
    table = dataset_line_features(ds, default_lines("Cu"))
    assert table.shape == (0, 6)
