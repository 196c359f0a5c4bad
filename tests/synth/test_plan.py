"""Synthesis plan: row layout by sample, chunk boundaries, per-chunk seeds from SeedSequence.spawn."""

from __future__ import annotations

import numpy as np
import pytest

from libs_pipeline.synth.plan import Segment, SynthesisPlan


def test_rows_and_segments_cover_every_spectrum_once():
    plan = SynthesisPlan(("A", "B", "C"), per_sample=5, chunk_size=4, seed=1)
    assert plan.n_spectra == 15 and plan.n_chunks == 4
    assert [plan.rows(i) for i in range(4)] == [(0, 4), (4, 8), (8, 12), (12, 15)]
    assert plan.segments(1) == [Segment(0, 4, 1), Segment(1, 0, 3)]
    assert plan.segments(3) == [Segment(2, 2, 3)]
    rows = [(s.sample_index, s.first_draw + j) for i in range(4) for s in plan.segments(i) for j in range(s.n)]
    assert rows == [(k, d) for k in range(3) for d in range(5)]


def test_chunk_seed_is_the_spawned_child():
    plan = SynthesisPlan(("A",), per_sample=100, chunk_size=7, seed=42)
    children = np.random.SeedSequence(42).spawn(plan.n_chunks)
    for i in (0, 5, plan.n_chunks - 1):
        assert plan.chunk_seed(i).generate_state(4).tolist() == children[i].generate_state(4).tolist()
    a = plan.chunk_rng(3).standard_normal(5)
    b = np.random.default_rng(children[3]).standard_normal(5)
    np.testing.assert_array_equal(a, b)


def test_plan_round_trip_and_errors():
    plan = SynthesisPlan(("A", "B"), 3, 2, 0)
    assert SynthesisPlan.from_dict(plan.to_dict()) == plan
    with pytest.raises(IndexError, match="chunk 3 is outside 0..2"):
        plan.rows(3)
    with pytest.raises(ValueError, match="per_sample must be >= 1"):
        SynthesisPlan(("A",), 0, 1, 0)
    with pytest.raises(ValueError, match="chunk_size must be >= 1"):
        SynthesisPlan(("A",), 1, 0, 0)
    with pytest.raises(ValueError, match="seed must be >= 0"):
        SynthesisPlan(("A",), 1, 1, -1)
    with pytest.raises(ValueError, match="unique"):
        SynthesisPlan(("A", "A"), 1, 1, 0)
    with pytest.raises(ValueError, match="at least one sample"):
        SynthesisPlan((), 1, 1, 0)


def test_shards_group_whole_chunks_and_leave_the_seeds_alone():
    plan = SynthesisPlan(("A", "B", "C"), per_sample=5, chunk_size=4, seed=1, shard_chunks=3)
    assert plan.shard_rows == 12 and plan.n_shards == 2
    assert list(plan.shard_chunk_range(0)) == [0, 1, 2] and list(plan.shard_chunk_range(1)) == [3]
    assert plan.shard_rows_range(0) == (0, 12) and plan.shard_rows_range(1) == (12, 15)
    unsharded = SynthesisPlan(("A", "B", "C"), per_sample=5, chunk_size=4, seed=1, shard_chunks=1)
    for i in range(plan.n_chunks):  # the shard size changes the layout, never a chunk's seed
        assert plan.chunk_seed(i).generate_state(2).tolist() == unsharded.chunk_seed(i).generate_state(2).tolist()
    assert SynthesisPlan.from_dict(plan.to_dict()) == plan
    legacy = {k: v for k, v in plan.to_dict().items() if k != "shard_chunks"}
    assert SynthesisPlan.from_dict(legacy).shard_chunks == 1
    with pytest.raises(IndexError, match="shard 2 is outside 0..1"):
        plan.shard_chunk_range(2)
    with pytest.raises(ValueError, match="shard_chunks must be >= 1"):
        SynthesisPlan(("A",), 1, 1, 0, shard_chunks=0)
