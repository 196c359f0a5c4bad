"""Sample splits (given / seeded, extremes kept in training)."""

from __future__ import annotations

import pytest

from libs_pipeline.spectra.sample_splits import split_samples

SAMPLES = [f"S{i:02d}" for i in range(10)]
LABELS = {s: float(i) for i, s in enumerate(SAMPLES)}


def test_given_test_samples():
    train, test = split_samples(SAMPLES, test_samples=["S05", "S02"])
    assert test == ["S02", "S05"] and set(train) == set(SAMPLES) - {"S02", "S05"}


def test_seeded_split_is_deterministic_disjoint_and_sized():
    a = split_samples(SAMPLES * 3, test_fraction=0.3, seed=4)  # repeated ids (one per shot) are fine
    b = split_samples(list(reversed(SAMPLES)), test_fraction=0.3, seed=4)
    assert a == b
    train, test = a
    assert len(test) == 3 and set(train).isdisjoint(test) and set(train) | set(test) == set(SAMPLES)
    draws = {tuple(split_samples(SAMPLES, seed=s)[1]) for s in range(10)}
    assert len(draws) > 3  # the seed matters


def test_extreme_concentrations_stay_in_training():
    for seed in range(20):
        train, test = split_samples(SAMPLES, test_fraction=0.5, seed=seed, labels=LABELS)
        assert "S00" in train and "S09" in train and len(test) == 5


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"samples": ["a"]}, "at least 2 samples"),
        ({"test_samples": ["nope"]}, r"test_samples \['nope'\] are not in the dataset"),
        ({"test_samples": SAMPLES}, "at least one training and one test sample"),
        ({"test_samples": ["S01", "S01"]}, "twice"),
        ({"test_fraction": 1.0}, r"test_fraction must be in \(0, 1\)"),
        ({"labels": {"S00": 1.0}}, "labels: no concentration for samples"),
    ],
)
def test_split_errors(kwargs, message):
    args = {"samples": SAMPLES, **kwargs}
    with pytest.raises(ValueError, match=message):
        split_samples(**args)
