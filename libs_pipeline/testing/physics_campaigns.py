"""The small virtual campaign of the physics tests: 250-400 nm, 1024 channels, 3 samples x 6 shots."""

from __future__ import annotations

#: CampaignConfig fields of the small campaign.
SMALL = dict(
    n_samples=3,
    n_shots=6,
    wavelength_start_nm=250.0,
    wavelength_stop_nm=400.0,
    n_channels=1024,
    basis_temperatures=3,
    basis_densities=3,
)
#: Seed of its simulation.
SEED = 7

__all__ = ["SEED", "SMALL"]
