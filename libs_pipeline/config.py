"""Pydantic models for every flow's parameters (campaign, ingest, synthesis, training, trust, recalibration).

Each section is owned by one part of the system; keep the classes small and documented.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """Base for all configs: unknown fields are an error, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


# --- campaign (physics) ---

# --- ingest (spectra) ---

# --- synthesis (synth) ---

# --- training (models) ---

# --- trust ---

# --- recalibration (registry / flows) ---
