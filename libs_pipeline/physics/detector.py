"""The detector: photo-electron counting (Poisson), gain, read noise, dark offset, ADC rounding, saturation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from libs_pipeline.config import CampaignConfig


@dataclass(frozen=True)
class Detector:
    """Turns expected photo-electrons into dark-subtracted float32 counts (read noise can make them negative)."""

    gain_counts_per_electron: float
    read_noise_counts: float
    dark_offset_counts: float
    full_scale_counts: float

    @classmethod
    def from_config(cls, config: CampaignConfig) -> Detector:
        return cls(
            config.gain_counts_per_electron,
            config.read_noise_counts,
            config.dark_offset_counts,
            config.full_scale_counts,
        )

    @property
    def saturation_counts(self) -> float:
        """Largest dark-subtracted value the detector can report."""
        return self.full_scale_counts - self.dark_offset_counts

    def read(
        self, electrons_mean: np.ndarray, poisson_rng: np.random.Generator, read_rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """(counts float32 same shape, saturated-channel count per row) for one exposure per row."""
        mean = np.asarray(electrons_mean, dtype=np.float64)
        if not np.all(np.isfinite(mean)) or mean.min(initial=0.0) < 0:
            raise ValueError("expected photo-electrons must be finite and non-negative")
        electrons = poisson_rng.poisson(mean)
        raw = electrons * self.gain_counts_per_electron + self.dark_offset_counts
        raw = raw + read_rng.normal(0.0, self.read_noise_counts, size=mean.shape)
        raw = np.clip(np.rint(raw), 0.0, self.full_scale_counts)
        saturated = (raw >= self.full_scale_counts).sum(axis=-1)
        return (raw - self.dark_offset_counts).astype(np.float32), saturated.astype(np.int64)

    def describe(self) -> str:
        return (
            f"virtual detector: gain {self.gain_counts_per_electron:g} counts/e-, read noise "
            f"{self.read_noise_counts:g} counts, dark offset {self.dark_offset_counts:g}, full scale "
            f"{self.full_scale_counts:g} counts"
        )
