"""How samples are split (always by sample: shots of one sample never sit on both sides). One module, three rules,
each for one use:

- ``heldout_samples``: recalibration's held-out (and trust) samples, decided per sample by a salted hash, so the
  choice never changes when samples are added (a champion trained on an older data version never saw today's
  held-out samples);
- ``split_samples``: an evaluation's test samples, given or drawn by seed (the extremes stay in training);
- ``split_by_sample``: a training run's early-stopping validation samples, label-stratified and seeded.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import numpy as np


def _unit_hash(sample_id: str, seed: int) -> float:
    digest = hashlib.sha256(f"{seed}:{sample_id}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def heldout_samples(sample_ids: Sequence[str], fraction: float, seed: int = 0, min_train: int = 2) -> list[str]:
    """Samples held out from training, decided per sample by a salted hash so the choice never changes when
    samples are added (a champion trained on an older data version never saw today's held-out samples).

    At least one sample is held out and at least ``min_train`` stay for training (falling back to the lowest
    hashes when the per-sample rule gives none or too many).
    """
    ids = list(dict.fromkeys(str(s) for s in sample_ids))
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"heldout fraction must be in (0, 1), got {fraction}")
    if len(ids) < min_train + 1:
        raise ValueError(
            f"need at least {min_train + 1} samples to hold one out and train on {min_train}, got {len(ids)}: {ids}"
        )
    ranked = sorted(ids, key=lambda s: (_unit_hash(s, seed), s))
    chosen = [s for s in ranked if _unit_hash(s, seed) < fraction]
    if not chosen:
        chosen = ranked[:1]
    chosen = chosen[: len(ids) - min_train]
    order = {s: i for i, s in enumerate(ids)}
    return sorted(chosen, key=order.__getitem__)


def split_samples(
    samples: Sequence[str],
    test_samples: Sequence[str] | None = None,
    test_fraction: float = 0.3,
    seed: int = 0,
    labels: Mapping[str, float] | None = None,
) -> tuple[list[str], list[str]]:
    """(train, test) sample ids. Given ``test_samples`` are used as is; else round(fraction * n) drawn by ``seed``.

    With ``labels`` (sample -> concentration) and at least 4 samples, the lowest- and highest-concentration
    samples stay in training so held-out predictions are interpolations, not extrapolations.
    """
    unique = sorted({str(s) for s in samples})
    if len(unique) < 2:
        raise ValueError(f"need at least 2 samples to split, got {len(unique)}")
    if test_samples is not None:
        test = [str(s) for s in test_samples]
        missing = sorted(set(test) - set(unique))
        if missing:
            raise ValueError(f"test_samples {missing} are not in the dataset (samples: {unique})")
        if len(set(test)) != len(test):
            raise ValueError(f"test_samples lists a sample twice: {test}")
        train = [s for s in unique if s not in set(test)]
        if not test or not train:
            raise ValueError(f"test_samples {test} must leave at least one training and one test sample")
        return train, sorted(test)
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    pool = list(unique)
    if labels is not None and len(unique) >= 4:
        missing = sorted(set(unique) - set(map(str, labels)))
        if missing:
            raise ValueError(f"labels: no concentration for samples {missing}")
        ranked = sorted(unique, key=lambda s: (float(labels[s]), s))
        pool = [s for s in unique if s not in (ranked[0], ranked[-1])]
    n_test = min(max(1, int(round(test_fraction * len(unique)))), len(pool), len(unique) - 1)
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    test = sorted(str(s) for s in rng.choice(np.asarray(pool), size=n_test, replace=False))
    train = [s for s in unique if s not in set(test)]
    return train, test


def split_by_sample(labels: Mapping[str, float], val_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Seeded, label-stratified split of sample ids: sorted by label, one validation sample drawn per bin.

    The lowest- and highest-label samples stay in training (when >= 4 samples) so that validation
    lies inside the calibrated range. Returns (train, val), each sorted.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    samples = sorted(labels, key=lambda s: (labels[s], s))
    if val_fraction == 0.0:
        return sorted(samples), []
    if len(samples) < 2:
        raise ValueError(f"cannot split {len(samples)} sample(s) into training and validation by sample")
    candidates = samples[1:-1] if len(samples) >= 4 else samples
    n_val = min(max(1, int(round(val_fraction * len(samples)))), len(candidates), len(samples) - 1)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5A17]))
    bins = np.array_split(np.arange(len(candidates)), n_val)
    val = sorted(candidates[int(rng.choice(b))] for b in bins)
    train = sorted(s for s in samples if s not in set(val))
    return train, val


__all__ = ["heldout_samples", "split_by_sample", "split_samples"]
