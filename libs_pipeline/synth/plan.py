"""Which synthetic spectrum comes from which sample, how rows are cut into chunks, and each chunk's seed.

Rows are ordered by sample (all draws of the first model sample, then the next, ...); chunk ``i`` holds
rows ``[i*chunk_size, (i+1)*chunk_size)`` and draws from ``SeedSequence(seed).spawn(n_chunks)[i]``, so the
bytes depend only on (model, per_sample, seed, chunk_size), never on which worker runs a chunk.

Storage and work are cut in *shards* of ``shard_chunks`` consecutive chunks: shard ``s`` holds chunks
``[s*shard_chunks, (s+1)*shard_chunks)`` and is one zarr shard (one object) of every per-spectrum array, written
by exactly one task. The shard size changes the file layout, never the drawn values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Segment:
    """Consecutive rows of one chunk that come from one sample."""

    sample_index: int
    first_draw: int  # index of the first row's draw within its sample
    n: int


@dataclass(frozen=True)
class SynthesisPlan:
    """Row layout and per-chunk seeds of one synthetic store (no arrays of length N are ever built)."""

    sample_ids: tuple[str, ...]
    per_sample: int
    chunk_size: int
    seed: int
    shard_chunks: int = 8

    def __post_init__(self) -> None:
        object.__setattr__(self, "sample_ids", tuple(str(s) for s in self.sample_ids))
        if not self.sample_ids:
            raise ValueError("plan: need at least one sample")
        if len(set(self.sample_ids)) != len(self.sample_ids):
            raise ValueError("plan: sample ids must be unique")
        if self.per_sample < 1:
            raise ValueError(f"per_sample must be >= 1, got {self.per_sample}")
        if self.chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {self.chunk_size}")
        if self.shard_chunks < 1:
            raise ValueError(f"shard_chunks must be >= 1, got {self.shard_chunks}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")

    @property
    def n_spectra(self) -> int:
        return len(self.sample_ids) * self.per_sample

    @property
    def n_chunks(self) -> int:
        return -(-self.n_spectra // self.chunk_size)

    def rows(self, index: int) -> tuple[int, int]:
        """[start, stop) rows of chunk ``index``."""
        if not 0 <= index < self.n_chunks:
            raise IndexError(f"chunk {index} is outside 0..{self.n_chunks - 1}")
        start = index * self.chunk_size
        return start, min(start + self.chunk_size, self.n_spectra)

    @property
    def shard_rows(self) -> int:
        return self.chunk_size * self.shard_chunks

    @property
    def n_shards(self) -> int:
        return -(-self.n_chunks // self.shard_chunks)

    def shard_chunk_range(self, shard: int) -> range:
        """The chunk indices of shard ``shard``."""
        if not 0 <= shard < self.n_shards:
            raise IndexError(f"shard {shard} is outside 0..{self.n_shards - 1}")
        first = shard * self.shard_chunks
        return range(first, min(first + self.shard_chunks, self.n_chunks))

    def shard_rows_range(self, shard: int) -> tuple[int, int]:
        """[start, stop) rows of shard ``shard``."""
        chunks = self.shard_chunk_range(shard)
        return self.rows(chunks[0])[0], self.rows(chunks[-1])[1]

    def segments(self, index: int) -> list[Segment]:
        """The per-sample runs of rows in chunk ``index``, in row order."""
        start, stop = self.rows(index)
        out: list[Segment] = []
        row = start
        while row < stop:
            sample, draw = divmod(row, self.per_sample)
            n = min(self.per_sample - draw, stop - row)
            out.append(Segment(sample, draw, n))
            row += n
        return out

    def chunk_seed(self, index: int) -> np.random.SeedSequence:
        """``SeedSequence(seed).spawn(n_chunks)[index]``, built directly (spawn_key=(index,))."""
        self.rows(index)
        return np.random.SeedSequence(self.seed, spawn_key=(index,))

    def chunk_rng(self, index: int) -> np.random.Generator:
        return np.random.Generator(np.random.PCG64(self.chunk_seed(index)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "sample_ids": list(self.sample_ids),
            "per_sample": self.per_sample,
            "chunk_size": self.chunk_size,
            "seed": self.seed,
            "shard_chunks": self.shard_chunks,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SynthesisPlan:
        return cls(
            sample_ids=tuple(data["sample_ids"]),
            per_sample=int(data["per_sample"]),
            chunk_size=int(data["chunk_size"]),
            seed=int(data["seed"]),
            shard_chunks=int(data.get("shard_chunks", 1)),  # stores written before sharding: one chunk per task
        )

