"""Deterministic train/test split by sample (shots of one sample never sit on both sides)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


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
