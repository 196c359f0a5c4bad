"""Virtual campaigns: layout, ground truth, detector behaviour, determinism, files + manifest, ingest."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml

from libs_pipeline.config import CampaignConfig
from libs_pipeline.physics.campaign import (
    default_workers,
    draw_plasma_states,
    exposure,
    plasma_nodes,
    sample_basis,
    simulate_campaign,
    write_campaign_files,
)
from libs_pipeline.physics.compositions import reference_composition
from libs_pipeline.physics.detector import Detector
from libs_pipeline.physics.spectrometer import Spectrometer, instrument_grid
from libs_pipeline.spectra.dataset import label_names
from libs_pipeline.testing.physics_campaigns import SEED, SMALL

# milliseconds per libskit call: 40 nm, 256 channels, 2 x 2 basis
TINY = {**SMALL, "n_samples": 2, "n_shots": 3, "wavelength_start_nm": 300.0, "wavelength_stop_nm": 340.0,
        "n_channels": 256, "basis_temperatures": 2, "basis_densities": 2}


def test_layout_labels_and_ground_truth(nominal_campaign, small_config):
    ds = nominal_campaign.spectra
    n = SMALL["n_samples"] * SMALL["n_shots"]
    assert ds["intensity"].shape == (n, SMALL["n_channels"]) and ds["intensity"].dtype == np.float32
    assert ds["wavelength"].dtype == np.float64 and np.all(np.diff(ds["wavelength"].values) > 0)
    assert ds["wavelength"].values[0] == 250.0 and ds["wavelength"].values[-1] == 400.0
    assert label_names(ds) == ["Cu"] and ds["Cu"].attrs["units"] == "wt%"
    for var in ("T_K", "n_e_per_m3", "intensity_factor"):
        assert ds[var].attrs["role"] == "ground_truth" and ds[var].shape == (n,)
    assert ds.attrs["scenario"] == "nominal" and ds.attrs["seed"] == SEED
    assert json.loads(ds.attrs["campaign_config"]) == small_config.model_dump(mode="json")
    samples = nominal_campaign.samples
    assert samples["sample_id"].tolist() == ["AL00", "AL01", "AL02"]
    by_sample = ds["Cu"].to_series().groupby(ds["sample_id"].values).first()
    assert by_sample.to_dict() == dict(zip(samples["sample_id"], samples["Cu"]))
    shots = nominal_campaign.shots
    assert list(shots.columns) == ["spectrum", "sample_id", "shot", "T_K", "n_e_per_m3", "intensity_factor",
                                   "n_saturated_channels"]
    np.testing.assert_array_equal(shots["T_K"], ds["T_K"].values)


def test_shot_states_stay_inside_the_basis(nominal_campaign, small_config):
    temps, dens = plasma_nodes(small_config)
    ds = nominal_campaign.spectra
    assert temps.min() <= ds["T_K"].min() and ds["T_K"].max() <= temps.max()
    assert dens.min() <= ds["n_e_per_m3"].min() and ds["n_e_per_m3"].max() <= dens.max()
    assert ds["T_K"].std() > 0 and ds["n_e_per_m3"].std() > 0 and ds["intensity_factor"].std() > 0


def test_plasma_draw_statistics():
    config = CampaignConfig(temperature_rel_sd=0.05, electron_density_log_sd=0.2, intensity_log_sd=0.1)
    t, n, k = draw_plasma_states(config, np.random.default_rng(0), 20000)
    assert abs(t.mean() / 1e4 - 1) < 0.003 and 0.045 < t.std() / 1e4 < 0.05  # truncation at 2.5 sd narrows a bit
    assert np.abs(t / 1e4 - 1).max() <= 2.5 * 0.05
    assert abs(np.log(n / 1e23).std() - 0.2) < 0.01 and np.abs(np.log(n / 1e23)).max() <= 0.5
    assert abs(np.median(k) - 1) < 0.01 and abs(np.log(k).std() - 0.1) < 0.005
    still = CampaignConfig(temperature_rel_sd=0.0, electron_density_log_sd=0.0, intensity_log_sd=0.0)
    t, n, k = draw_plasma_states(still, np.random.default_rng(0), 10)
    assert (t == 1e4).all() and (n == 1e23).all() and (k == 1.0).all()


def test_exposure_puts_the_reference_peak_at_the_configured_fraction(small_config):
    e = exposure(small_config)
    ref = reference_composition("aluminium", "Cu")
    fractions = {el: v / 100.0 for el, v in ref.items()}
    basis = sample_basis(fractions, small_config)
    noise_free = basis.evaluate([small_config.temperature_K], [small_config.electron_density_per_m3])[0]
    counts = e * Spectrometer.from_config(small_config).response() * noise_free * small_config.gain_counts_per_electron
    saturation = Detector.from_config(small_config).saturation_counts
    assert abs(counts.max() / saturation - 0.4) < 0.01  # basis vs direct call at a node: same value


def test_measured_strongest_lines_sit_at_30_to_50_percent_of_saturation(nominal_campaign):
    ds = nominal_campaign.spectra
    frac = ds["intensity"].values.max(axis=1) / ds.attrs["saturation_counts"]
    assert 0.3 < np.median(frac) < 0.5
    assert (ds["n_saturated_channels"].values == 0).all()


def test_saturation_clips_at_full_scale():
    config = CampaignConfig(**{**SMALL, "n_samples": 1, "reference_peak_fraction": 0.95})
    ds = simulate_campaign(config, seed=1, workers=1).spectra
    sat = ds.attrs["saturation_counts"]
    assert (ds["n_saturated_channels"].values > 0).any()
    assert ds["intensity"].values.max() == sat
    rows = ds["n_saturated_channels"].values > 0
    np.testing.assert_array_equal((ds["intensity"].values[rows] == sat).sum(axis=1), ds["n_saturated_channels"].values[rows])


def test_read_noise_gives_small_negative_counts_without_continuum():
    config = CampaignConfig(**{**SMALL, "n_samples": 1, "continuum_scale": 0.0})
    counts = simulate_campaign(config, seed=2, workers=1).spectra["intensity"].values
    assert counts.min() < 0 and counts.min() > -8 * config.read_noise_counts
    assert np.all(counts == np.round(counts))  # ADC: integer counts minus an integer dark offset


def test_detector_noise_statistics():
    det = Detector(gain_counts_per_electron=2.0, read_noise_counts=5.0, dark_offset_counts=100.0, full_scale_counts=65535)
    mean = np.full((4, 20000), 1000.0)
    counts, saturated = det.read(mean, np.random.default_rng(0), np.random.default_rng(1))
    assert counts.dtype == np.float32 and (saturated == 0).all()
    assert abs(counts.mean() - 2000.0) < 2.0
    expected_var = 2.0 * 2000.0 + 25.0 + 1 / 12
    assert abs(counts.var() / expected_var - 1) < 0.02
    with pytest.raises(ValueError, match="non-negative"):
        det.read(-mean, np.random.default_rng(0), np.random.default_rng(1))


def test_same_seed_same_bytes_and_different_seed_differs():
    config = CampaignConfig(**TINY)
    first, again = simulate_campaign(config, seed=3, workers=1), simulate_campaign(config, seed=3, workers=1)
    for var in ("intensity", "T_K", "n_e_per_m3", "intensity_factor"):
        assert again.spectra[var].values.tobytes() == first.spectra[var].values.tobytes(), var
    pd.testing.assert_frame_equal(again.samples, first.samples)
    other = simulate_campaign(config, seed=4, workers=1)
    assert other.spectra["intensity"].values.tobytes() != first.spectra["intensity"].values.tobytes()
    assert not other.samples.equals(first.samples)


@pytest.mark.slow
def test_bytes_do_not_depend_on_worker_count():
    config = CampaignConfig(**{**TINY, "n_samples": 3})
    serial = simulate_campaign(config, seed=5, workers=1)
    parallel = simulate_campaign(config, seed=5, workers=2)
    for var in ("intensity", "T_K", "n_e_per_m3", "intensity_factor"):
        assert parallel.spectra[var].values.tobytes() == serial.spectra[var].values.tobytes(), var


def test_basis_densities_one_requires_fixed_density():
    with pytest.raises(ValueError, match="basis_densities=1"):
        CampaignConfig(basis_densities=1)
    config = CampaignConfig(**{**TINY, "n_samples": 1, "basis_densities": 1, "electron_density_log_sd": 0.0})
    ds = simulate_campaign(config, seed=0, workers=1).spectra
    assert (ds["n_e_per_m3"].values == 1e23).all()


def test_bad_inputs():
    with pytest.raises(ValueError, match="seed must be non-negative"):
        simulate_campaign(CampaignConfig(**SMALL), seed=-1, workers=1)
    bad = pd.DataFrame({"sample_id": ["a"], "Al": [99.0], "Zn": [1.0]})
    with pytest.raises(ValueError, match="missing column for the analyte 'Cu'"):
        simulate_campaign(CampaignConfig(**SMALL), samples=bad, workers=1)
    with pytest.raises(ValueError, match="analyte_range_wt"):
        CampaignConfig(analyte_range_wt=(2.0, 1.0))
    with pytest.raises(ValueError, match="wavelength_start_nm"):
        CampaignConfig(wavelength_start_nm=500.0, wavelength_stop_nm=400.0)
    with pytest.raises(ValueError, match="interferent 'V'"):
        CampaignConfig(interferent={"V": 0.0})
    with pytest.raises(ValueError, match="extra"):
        CampaignConfig(n_sample=3)
    with pytest.raises(ValueError, match=r"interferent: elements \['Qq'\]"):
        simulate_campaign(CampaignConfig(**{**SMALL, "interferent": {"Qq": 0.1}}), workers=1)


def test_instrument_grid_is_its_own_text():
    grid = instrument_grid(250.0, 850.0, 4096)
    assert grid.size == 4096 and grid[0] == 250.0 and grid[-1] == 850.0
    assert all(float(f"{x:.6f}") == x for x in grid[:50])
    with pytest.raises(ValueError, match="closer than"):
        instrument_grid(300.0, 300.001, 5000)
    assert default_workers() >= 1


def test_files_and_manifest_parse_back(nominal_campaign, tmp_path):
    manifest_path = write_campaign_files(nominal_campaign, tmp_path / "camp")
    assert manifest_path == tmp_path / "camp" / "manifest.yaml"
    manifest = yaml.safe_load(manifest_path.read_text())
    ds = nominal_campaign.spectra
    assert manifest["name"] == "virtual-aluminium" and manifest["reader"] == "shot_columns"
    assert [e["sample_id"] for e in manifest["samples"]] == ["AL00", "AL01", "AL02"]
    for entry in manifest["samples"]:
        table = np.loadtxt(manifest_path.parent / entry["file"], delimiter=",")
        rows = ds["sample_id"].values == entry["sample_id"]
        assert table.shape == (ds.sizes["wavelength"], 1 + SMALL["n_shots"])
        np.testing.assert_array_equal(table[:, 0], ds["wavelength"].values)
        np.testing.assert_array_equal(table[:, 1:].T.astype(np.float32), ds["intensity"].values[rows])
        assert entry["labels"] == {"Cu": float(ds["Cu"].values[rows][0])} and entry["units"] == "wt%"
        assert entry["matrix"] == "aluminium"
    shots = pd.read_csv(manifest_path.parent / "ground_truth_shots.csv")
    np.testing.assert_allclose(shots["T_K"], ds["T_K"].values, rtol=1e-15)
    np.testing.assert_allclose(shots["n_e_per_m3"], ds["n_e_per_m3"].values, rtol=1e-15)
    assert shots["sample_id"].tolist() == ds["sample_id"].values.tolist()
    samples = pd.read_csv(manifest_path.parent / "ground_truth_samples.csv")
    pd.testing.assert_frame_equal(samples, nominal_campaign.samples, check_dtype=False)
    info = json.loads((manifest_path.parent / "campaign.json").read_text())
    assert info["seed"] == SEED and info["config"]["n_shots"] == SMALL["n_shots"]
    # writing again gives identical bytes and leaves no temporary files behind
    before = {p.name: p.read_bytes() for p in manifest_path.parent.rglob("*") if p.is_file()}
    write_campaign_files(nominal_campaign, tmp_path / "camp")
    after = {p.name: p.read_bytes() for p in manifest_path.parent.rglob("*") if p.is_file()}
    assert before == after and not any(name.endswith(".tmp") for name in after)


def test_odd_sample_ids_get_safe_unique_file_names(small_config, tmp_path):
    samples = pd.DataFrame({"sample_id": ["a/b", "a b", "../x"], "matrix": ["aluminium"] * 3,
                            "Al": [99.0, 98.0, 97.0], "Cu": [1.0, 2.0, 3.0]})
    config = CampaignConfig(**TINY)
    campaign = simulate_campaign(config, seed=0, samples=samples, workers=1)
    manifest = yaml.safe_load(write_campaign_files(campaign, tmp_path).read_text())
    files = [e["file"] for e in manifest["samples"]]
    assert files == ["spectra/a_b.csv", "spectra/a_b_1.csv", "spectra/x.csv"]
    assert [e["sample_id"] for e in manifest["samples"]] == ["a/b", "a b", "../x"]


def test_written_campaign_ingests_end_to_end(nominal_campaign, tmp_path):
    ingest = pytest.importorskip("libs_pipeline.spectra.ingest")
    store_mod = pytest.importorskip("libs_pipeline.spectra.store")
    manifest_path = write_campaign_files(nominal_campaign, tmp_path / "camp")
    result = ingest.ingest_campaign(manifest_path, tmp_path / "store")
    assert result.rejected == [] and result.n_spectra == SMALL["n_samples"] * SMALL["n_shots"]
    ingested = store_mod.SpectraStore(tmp_path / "store").open(result.name, result.version).load()
    ds = nominal_campaign.spectra
    np.testing.assert_array_equal(ingested["wavelength"].values, ds["wavelength"].values)
    order = np.lexsort((ingested["shot"].values, ingested["sample_id"].values))
    np.testing.assert_array_equal(ingested["intensity"].values[order], ds["intensity"].values)
    np.testing.assert_array_equal(ingested["Cu"].values[order], ds["Cu"].values)


def test_spectra_pass_the_project_schema_and_store_as_zarr(nominal_campaign, tmp_path):
    schemas = pytest.importorskip("libs_pipeline.spectra.schemas")
    ds = nominal_campaign.spectra
    assert schemas.validate_spectra(ds) == []
    ds.to_zarr(tmp_path / "campaign.zarr", consolidated=False)
    back = xr.open_zarr(tmp_path / "campaign.zarr", consolidated=False).load()
    np.testing.assert_array_equal(back["intensity"].values, ds["intensity"].values)
    assert back["T_K"].attrs["role"] == "ground_truth" and back.attrs["campaign_config"] == ds.attrs["campaign_config"]
