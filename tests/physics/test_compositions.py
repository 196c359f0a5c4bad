"""Certified compositions: analyte spread, matrix recipes, validation, matrix conversion, interferents."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from libs_pipeline.physics import compositions as comp
from libs_pipeline.physics.plasma import known_elements


def draw(n=30, matrix="aluminium", seed=0):
    return comp.draw_compositions(matrix, n, "Cu", (0.05, 6.0), np.random.default_rng(seed))


def test_thirty_samples_cover_the_cu_range_log_uniformly():
    table = draw()
    cu = table["Cu"].to_numpy()
    assert len(table) == 30 and table["sample_id"].is_unique
    assert cu.min() >= 0.05 and cu.max() <= 6.0
    assert cu.min() < 0.06 and cu.max() > 5.0
    # stratified: each of the 30 equal log-intervals holds exactly one sample
    edges = np.exp(np.linspace(np.log(0.05), np.log(6.0), 31))
    counts, _ = np.histogram(cu, bins=edges)
    assert counts.sum() == 30 and counts.max() <= 2
    assert np.all(np.diff(cu) >= 0)


def test_other_elements_vary_and_sum_to_100():
    table = draw()
    elements = comp.element_columns(table)
    assert set(elements) == {"Al", "Cu", "Mg", "Si", "Fe", "Zn", "Mn"}
    np.testing.assert_allclose(table[elements].sum(axis=1), 100.0, atol=1e-6)
    for e in ("Mg", "Si", "Fe", "Zn", "Mn"):
        assert table[e].nunique() > 20, e
        lo, hi = comp.MATRICES["aluminium"].ranges[e]
        assert table[e].between(lo * 0.99, hi * 1.01).all(), e
    assert (table["Al"] > 85).all()
    assert (table["matrix"] == "aluminium").all()


def test_draws_are_deterministic_per_seed():
    pd.testing.assert_frame_equal(draw(seed=3), draw(seed=3))
    assert not draw(seed=3).equals(draw(seed=4))


@pytest.mark.parametrize("matrix,balance", [("low_alloy_steel", "Fe"), ("stainless_steel", "Fe"), ("rock", "O")])
def test_other_matrices(matrix, balance):
    table = draw(n=5, matrix=matrix)
    elements = comp.element_columns(table)
    assert table[elements].idxmax(axis=1).eq(balance).all()
    np.testing.assert_allclose(table[elements].sum(axis=1), 100.0, atol=1e-6)
    assert set(elements) <= known_elements()


def test_reference_composition_sums_to_100():
    for matrix in comp.MATRICES:
        ref = comp.reference_composition(matrix, "Cu")
        assert abs(sum(ref.values()) - 100.0) < 1e-9 and ref["Cu"] > 0


def test_unknown_matrix_and_balance_analyte():
    with pytest.raises(ValueError, match="unknown matrix 'wood'"):
        comp.matrix_recipe("wood")
    with pytest.raises(ValueError, match="analyte 'Al' is the balance element"):
        comp.draw_compositions("aluminium", 3, "Al", (1, 2), np.random.default_rng(0))


def test_convert_matrix_keeps_ids_and_analyte():
    table = draw(n=6)
    steel = comp.convert_matrix(table, "stainless_steel", "Cu", np.random.default_rng(1))
    assert steel["sample_id"].tolist() == table["sample_id"].tolist()
    np.testing.assert_array_equal(steel["Cu"].to_numpy(), table["Cu"].to_numpy())
    assert "Al" not in steel.columns
    assert steel["Cr"].between(16, 19).all() and (steel["matrix"] == "stainless_steel").all()
    np.testing.assert_allclose(steel[comp.element_columns(steel)].sum(axis=1), 100.0, atol=1e-6)


def test_add_interferent_takes_mass_from_the_balance():
    table = draw(n=4)
    with_v = comp.add_interferent(table, {"V": 0.5})
    np.testing.assert_allclose(with_v["V"], 0.5)
    np.testing.assert_allclose(with_v["Al"], table["Al"] - 0.5, atol=1e-6)
    np.testing.assert_allclose(with_v[comp.element_columns(with_v)].sum(axis=1), 100.0, atol=1e-6)
    with pytest.raises(ValueError, match="exceeds the main element"):
        comp.add_interferent(table, {"V": 99.0})


def test_mass_fractions_normalised_without_zeros():
    row = pd.Series({"sample_id": "a", "matrix": "m", "Al": 95.0, "Cu": 5.0, "Zn": 0.0})
    assert comp.mass_fractions(row) == {"Al": 0.95, "Cu": 0.05}


def _valid():
    return pd.DataFrame({"sample_id": ["a", "b"], "matrix": ["al", "al"], "Al": [99.0, 98.0], "Cu": [1.0, 2.0]})


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda df: df.drop(columns="sample_id"), "missing column 'sample_id'"),
        (lambda df: df.assign(sample_id=["a", "a"]), r"duplicate sample_id \['a'\]"),
        (lambda df: df.drop(columns="Cu"), "missing column for the analyte 'Cu'"),
        (lambda df: df.assign(Cu=[1.0, -2.0], Al=[99.0, 102.0]), r"column 'Cu' must hold non-negative numbers.*\['b'\]"),
        (lambda df: df.assign(Cu=["x", 2.0]), r"column 'Cu' must hold non-negative numbers.*\['a'\]"),
        (lambda df: df.assign(Al=[90.0, 98.0]), r"must sum to 100 wt% .*\['a'\]"),
        (lambda df: df.assign(Xx=[0.0, 0.0]), "column 'Xx' is not an element"),
        (lambda df: df.iloc[0:0], "no rows"),
    ],
)
def test_check_samples_errors(change, message):
    with pytest.raises(ValueError, match=message):
        comp.check_samples(change(_valid()), "Cu", set(known_elements()))


def test_check_samples_accepts_and_cleans():
    df = _valid().drop(columns="matrix")
    df["sample_id"] = [1, 2]
    clean = comp.check_samples(df, "Cu", set(known_elements()))
    assert clean["sample_id"].tolist() == ["1", "2"] and (clean["matrix"] == "unknown").all()
    with pytest.raises(TypeError, match="pandas DataFrame"):
        comp.check_samples({"sample_id": ["a"]}, "Cu")
