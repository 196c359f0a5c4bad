"""Small virtual campaigns shared by the physics tests (250-400 nm, 1024 channels, 3 samples, cached per session)."""

from __future__ import annotations

import pytest

from libs_pipeline.config import CampaignConfig
from libs_pipeline.physics.campaign import simulate_campaign
from libs_pipeline.physics.scenarios import scenario_config
from libs_pipeline.testing.physics_campaigns import SEED, SMALL


@pytest.fixture(scope="session")
def small_config() -> CampaignConfig:
    return CampaignConfig(**SMALL)


@pytest.fixture(scope="session")
def nominal_campaign(small_config):
    return simulate_campaign(small_config, seed=SEED, workers=1)


@pytest.fixture(scope="session")
def scenario_campaign(small_config, nominal_campaign):
    """Factory: the nominal campaign's samples re-measured under (scenario, severity); cached."""
    cache = {}

    def make(scenario: str, severity: str):
        if (scenario, severity) not in cache:
            config = scenario_config(small_config, scenario, severity)
            cache[scenario, severity] = simulate_campaign(config, seed=SEED, samples=nominal_campaign.samples, workers=1)
        return cache[scenario, severity]

    return make
