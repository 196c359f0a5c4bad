"""When a held-out split is too small to mean anything: use_nested_protocol and the held-out count."""

from __future__ import annotations

import pytest

from libs_pipeline.evaluation.protocol import (
    MIN_HELDOUT_SAMPLES,
    MIN_SAMPLES_FOR_HELDOUT,
    heldout_count,
    use_nested_protocol,
)


@pytest.mark.parametrize(
    "n, fraction, nested",
    [
        (7, 0.3, True),  # the OREAS Na campaign: 2 held-out samples
        (11, 0.5, True),  # 6 held out, but too few samples in all
        (12, 0.25, True),  # 3 held out
        (12, 0.3, False),  # round(3.6) = 4 held out of 12
        (20, 0.2, False),
        (40, 0.05, True),  # 2 held out
    ],
)
def test_use_nested_protocol(n, fraction, nested):
    assert use_nested_protocol(n, fraction) is nested


def test_thresholds_and_heldout_count():
    assert (MIN_SAMPLES_FOR_HELDOUT, MIN_HELDOUT_SAMPLES) == (12, 4)
    assert heldout_count(12, 0.3) == 4 and heldout_count(3, 0.01) == 1 and heldout_count(2, 0.9) == 1


@pytest.mark.parametrize(
    "n, fraction, message",
    [(1, 0.3, "n_samples must be an integer >= 2"), (5.0, 0.3, "n_samples must be an integer"),
     (10, 0.0, r"heldout_fraction must be in \(0, 1\)"), (10, 1.0, "heldout_fraction")],
)
def test_bad_arguments(n, fraction, message):
    with pytest.raises(ValueError, match=message):
        use_nested_protocol(n, fraction)


def test_check_disjoint_roles_names_the_sample_used_twice():
    from libs_pipeline.evaluation.protocol import LeakError, check_disjoint_roles

    check_disjoint_roles({"train": ["a", "b"], "early_stop": ["c"], "trust": ["d"], "test": ["e"]})
    with pytest.raises(LeakError, match="sample 'c' is used for both early_stop and trust"):
        check_disjoint_roles({"train": ["a", "b"], "early_stop": ["c"], "trust": ["c", "d"], "test": ["e"]})
