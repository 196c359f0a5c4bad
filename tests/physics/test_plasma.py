"""libskit plasma emission: physics sanity, the (T, n_e) basis and its interpolation accuracy."""

from __future__ import annotations

import libskit
import numpy as np
import pytest
from scipy.signal import find_peaks

from libs_pipeline.physics.plasma import (
    EmissionBasis,
    air_to_vacuum,
    basis_nodes,
    check_elements,
    compute_emission_basis,
    emission_lines,
    emission_spectrum,
    known_elements,
    lagrange_weights,
    libskit_resolution,
)

AL_LINES_AIR = (308.215, 309.271, 394.401, 396.152)
CU_WINDOWS_AIR = ((324.35, 325.25), (327.0, 327.9))
T0, NE0, L = 10000.0, 1e23, 1e-3


def al_alloy(cu_wt: float) -> dict[str, float]:
    wt = {"Cu": cu_wt, "Mg": 1.0, "Si": 0.4, "Fe": 0.3, "Zn": 0.2, "Mn": 0.2}
    wt["Al"] = 100.0 - sum(wt.values())
    return {e: v / 100.0 for e, v in wt.items()}


@pytest.fixture(scope="module")
def cu_region():
    air = np.linspace(320.0, 332.0, 400)
    return air, air_to_vacuum(air)


def test_cu_line_areas_increase_monotonically_with_cu(cu_region):
    air, vac = cu_region
    levels = [0.05, 0.2, 1.0, 3.0, 6.0]
    with libskit_resolution(2.0):
        spectra = [emission_spectrum(al_alloy(c), T0, NE0, L, vac, 0.1, 0.01) for c in levels]
    for lo, hi in CU_WINDOWS_AIR:
        inside = (air >= lo) & (air <= hi)
        areas = [s[inside].sum() for s in spectra]
        assert np.all(np.diff(areas) > 0), (lo, hi, areas)
        assert areas[-1] > 5 * areas[0]


def test_al_lines_dominate_an_aluminium_matrix():
    air = np.linspace(250.0, 420.0, 2000)
    with libskit_resolution(2.0):
        spectrum = emission_spectrum(al_alloy(1.0), T0, NE0, L, air_to_vacuum(air), 0.1, 0.01)
    peaks, _ = find_peaks(spectrum)
    top = air[peaks[np.argsort(spectrum[peaks])[::-1][:3]]]
    for wl in top:
        assert min(abs(wl - al) for al in AL_LINES_AIR) < 0.2, top
    lines = emission_lines(al_alloy(1.0), T0, NE0, L, (250.0, 420.0))
    assert lines["element"].head(4).tolist() == ["Al"] * 4
    assert {"Cu I"} <= set(lines["ion"])


def test_continuum_adds_smooth_positive_signal(cu_region):
    _, vac = cu_region
    with libskit_resolution(2.0):
        lines_only = emission_spectrum(al_alloy(1.0), T0, NE0, L, vac, 0.1, 0.01, continuum_scale=0.0)
        with_continuum = emission_spectrum(al_alloy(1.0), T0, NE0, L, vac, 0.1, 0.01, continuum_scale=50.0)
    added = with_continuum - lines_only
    assert np.all(added > 0)
    assert np.max(np.abs(np.diff(added))) < 0.01 * added.mean()


def test_line_spectrum_has_no_edge_loss():
    """Padding: a channel's value must not depend on where the grid happens to end."""
    air = np.linspace(305.0, 315.0, 300)
    with libskit_resolution(2.0):
        full = emission_spectrum(al_alloy(1.0), T0, NE0, L, air_to_vacuum(air), 0.1, 0.01)
        cut = emission_spectrum(al_alloy(1.0), T0, NE0, L, air_to_vacuum(air[125:]), 0.1, 0.01)
    # the grid now starts 0.1 nm from Al I 309.27 (whose wings reach it): values must agree
    np.testing.assert_allclose(cut[:20], full[125:145], rtol=1e-2)  # fine-grid placement differs: ~3e-3


def test_line_spectrum_rejects_bad_grid():
    with pytest.raises(ValueError, match="strictly increasing"):
        emission_spectrum(al_alloy(1.0), T0, NE0, L, np.array([300.0, 299.0, 301.0]), 0.1, 0.01)


def test_libskit_resolution_is_restored_even_on_error():
    before = libskit.get_fine_samples_per_fwhm()
    with pytest.raises(RuntimeError):
        with libskit_resolution(1.5):
            assert libskit.get_fine_samples_per_fwhm() == 1.5
            raise RuntimeError("boom")
    assert libskit.get_fine_samples_per_fwhm() == before


def test_known_elements_and_check():
    assert {"Al", "Cu", "Fe", "V", "O"} <= known_elements()
    check_elements({"Al": 0.9, "Cu": 0.1}, "here")
    with pytest.raises(ValueError, match=r"sample 'x': elements \['Xx'\]"):
        check_elements({"Al": 0.9, "Xx": 0.1}, "sample 'x'")


def test_lagrange_weights_reproduce_polynomials():
    nodes = np.array([0.8, 1.0, 1.1, 1.4])
    x = np.array([0.85, 0.97, 1.23, 1.4])
    w = lagrange_weights(x, nodes)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=1e-12)
    poly = lambda v: 2.0 - 3.0 * v + 0.5 * v**2 + 1.5 * v**3  # noqa: E731
    np.testing.assert_allclose(w @ poly(nodes), poly(x), rtol=1e-12)
    np.testing.assert_allclose(lagrange_weights([1.1], nodes)[0], [0, 0, 1, 0], atol=1e-15)


def test_basis_nodes():
    np.testing.assert_allclose(basis_nodes(100.0, 0.1, 3, log_scale=False), [90.0, 100.0, 110.0])
    np.testing.assert_allclose(basis_nodes(1.0, 0.2, 2, log_scale=True), np.exp([-0.2, 0.2]))
    np.testing.assert_array_equal(basis_nodes(5.0, 0.0, 4, log_scale=False), [5.0])


@pytest.fixture(scope="module")
def small_basis():
    air = np.linspace(300.0, 400.0, 700)
    vac = air_to_vacuum(air)
    temps = basis_nodes(T0, 0.125, 4, log_scale=False)
    dens = basis_nodes(NE0, 0.5, 3, log_scale=True)
    with libskit_resolution(2.0):
        basis = compute_emission_basis(al_alloy(2.0), temps, dens, L, vac, 0.1, 0.01, 50.0)
    return basis, vac


def test_basis_reproduces_direct_spectra_at_nodes(small_basis):
    basis, vac = small_basis
    t, n = basis.temperatures_K[1], basis.densities_per_m3[2]
    with libskit_resolution(2.0):
        direct = emission_spectrum(al_alloy(2.0), t, n, L, vac, 0.1, 0.01, 50.0)
    np.testing.assert_allclose(basis.evaluate([t], [n])[0], direct, rtol=1e-9, atol=1e-9 * direct.max())


def test_basis_interpolation_matches_direct_off_grid(small_basis):
    basis, vac = small_basis
    states = [(T0 * 1.037, NE0 * 1.13), (T0 * 0.91, NE0 * 0.7), (T0 * 1.1, NE0 * 1.5)]
    interpolated = basis.evaluate([s[0] for s in states], [s[1] for s in states])
    for (t, n), approx in zip(states, interpolated):
        with libskit_resolution(2.0):
            direct = emission_spectrum(al_alloy(2.0), t, n, L, vac, 0.1, 0.01, 50.0)
        peaks, _ = find_peaks(direct)
        top = peaks[np.argsort(direct[peaks])[::-1][:10]]
        assert np.max(np.abs(approx[top] / direct[top] - 1.0)) < 0.01, (t, n)
        # the state really is off-grid: the nearest node's spectrum differs by far more
        assert not np.any(np.isclose(basis.temperatures_K, t))


def test_basis_refuses_extrapolation(small_basis):
    basis, _ = small_basis
    with pytest.raises(ValueError, match="temperature_K .* outside the basis range"):
        basis.evaluate([T0 * 1.3], [NE0])
    with pytest.raises(ValueError, match="electron_density_per_m3 .* outside the basis range"):
        basis.evaluate([T0], [NE0 * 3])
    with pytest.raises(ValueError, match="same shape"):
        basis.evaluate([T0, T0], [NE0])


def test_single_node_basis_is_constant():
    log_spectra = np.log(np.array([[[1.0, 2.0, 3.0]]]) + 1e-12)
    basis = EmissionBasis(np.array([1e4]), np.array([1e23]), log_spectra, 1e-12)
    np.testing.assert_allclose(basis.evaluate([1e4, 1e4], [1e23, 1e23]), [[1, 2, 3], [1, 2, 3]], rtol=1e-9)
