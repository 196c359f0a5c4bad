"""Dry-run layout of a synthetic store: files, bytes, chunk/shard shapes and tasks for N spectra, writing nothing.

The layout is the one ``synthetic_store.create_template`` writes (format 2): ``intensity``, ``sample_index`` and
``shot`` sharded by ``chunk_size * shard_chunks`` rows (one object per shard and array, one Dask task per shard),
plus metadata, the sample table, the fitted model and the manifest. Bytes are estimated from compression
ratios *measured* here: the per-spectrum integer arrays of one real shard are encoded with the store's codec;
the intensity ratio is measured on one drawn chunk when a model is given (``ratio_from_model``), else the
ratio recorded in ``synthetic_store`` for the codec (toy-campaign draws; see its docstring).
"""

from __future__ import annotations

import resource
import sys
import time
from typing import Any

import numpy as np
from numcodecs import Blosc

from libs_pipeline.spectra.sample_table import index_dtype
from libs_pipeline.synth.noise_model import NoiseModel
from libs_pipeline.synth.plan import SynthesisPlan
from libs_pipeline.synth.synthetic_store import ROW_ARRAYS, draw_chunk

#: intensity compression ratio (stored / raw float32) measured on toy-campaign draws, 1024 x 4096 (module docstring
#: of ``synthetic_store``): float models with Blosc lz4 + shuffle, integer models with Blosc zstd + bit-shuffle
MEASURED_INTENSITY_RATIO = {False: 0.755, True: 0.284}
SHARD_INDEX_BYTES_PER_CHUNK = 16  # zarr sharding index: (offset, length) uint64 per inner chunk (+ 4 bytes crc32c)
METADATA_BYTES = 2048
GOALS = {"files": 100_000, "planning_s": 10.0, "planning_peak_mb": 1024.0}


def _small_codec(itemsize: int) -> Blosc:
    """numcodecs equivalent of ``synthetic_store.SMALL_COMPRESSOR`` (zarr's BloscCodec wraps numcodecs.Blosc)."""
    return Blosc(cname="zstd", clevel=1, shuffle=Blosc.BITSHUFFLE, typesize=itemsize)


def _shard_row_arrays(plan: SynthesisPlan, shard: int) -> tuple[np.ndarray, np.ndarray]:
    """``sample_index`` and ``shot`` of one shard, from the plan alone (no draws)."""
    start, stop = plan.shard_rows_range(shard)
    codes = np.empty(stop - start, dtype=index_dtype(len(plan.sample_ids)))
    shot = np.empty(stop - start, dtype=np.int64)
    for index in plan.shard_chunk_range(shard):
        row = plan.rows(index)[0] - start
        for seg in plan.segments(index):
            codes[row:row + seg.n] = seg.sample_index
            shot[row:row + seg.n] = np.arange(seg.first_draw, seg.first_draw + seg.n)
            row += seg.n
    return codes, shot


def _encoded_ratio(values: np.ndarray, chunk: int) -> float:
    """Stored / raw bytes of ``values`` encoded inner chunk by inner chunk (what the sharding codec does)."""
    codec = _small_codec(values.dtype.itemsize)
    size = sum(len(codec.encode(np.ascontiguousarray(values[i:i + chunk]))) for i in range(0, values.size, chunk))
    return size / max(values.nbytes, 1)


def peak_rss_mb() -> float:
    """Peak RSS of this process in MB: ``VmHWM`` of /proc/self/status (this program only: getrusage's maxrss
    keeps the parent's peak across fork + exec), else ``getrusage``."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 if sys.platform != "darwin" else 1024**2)


def ratio_from_model(model: NoiseModel, chunk_size: int = 1024, seed: int = 0) -> float:
    """Intensity compression ratio of one drawn chunk of ``model`` with the store's codec (measured)."""
    from libs_pipeline.synth.synthetic_store import intensity_compressor

    plan = SynthesisPlan(tuple(model.sample_ids), max(1, -(-chunk_size // len(model.sample_ids))), chunk_size, seed)
    intensity, _, _ = draw_chunk(model, plan, 0)
    codec = intensity_compressor(model)
    blosc = Blosc(cname=codec.cname.value, clevel=codec.clevel, typesize=4,
                  shuffle=Blosc.BITSHUFFLE if codec.shuffle.value == "bitshuffle" else Blosc.SHUFFLE)
    return len(blosc.encode(intensity)) / intensity.nbytes


def plan_layout(
    n_spectra: int,
    n_channels: int = 4096,
    n_samples: int = 8,
    chunk_size: int = 1024,
    shard_chunks: int = 8,
    n_labels: int = 1,
    integer: bool = False,
    intensity_ratio: float | None = None,
) -> dict[str, Any]:
    """The layout of a store of ``n_spectra`` (rounded up to whole samples) and its estimated size; writes nothing."""
    start = time.perf_counter()
    if n_spectra < 1 or n_channels < 1 or n_samples < 1:
        raise ValueError(f"n_spectra, n_channels and n_samples must be >= 1 (got {n_spectra}, {n_channels}, {n_samples})")
    plan = SynthesisPlan(tuple(f"S{i:05d}" for i in range(n_samples)), -(-n_spectra // n_samples), chunk_size, 0,
                         shard_chunks)
    n, shards = plan.n_spectra, plan.n_shards
    codes, shot = _shard_row_arrays(plan, 0)
    ratios = {
        "intensity": float(intensity_ratio if intensity_ratio is not None else MEASURED_INTENSITY_RATIO[integer]),
        "sample_index": _encoded_ratio(codes, plan.chunk_size),
        "shot": _encoded_ratio(shot, plan.chunk_size),
    }
    itemsize = {"intensity": 4 * n_channels, "sample_index": codes.dtype.itemsize, "shot": 8}
    raw = {name: n * itemsize[name] for name in ROW_ARRAYS}
    index_bytes = shards * (plan.shard_chunks * SHARD_INDEX_BYTES_PER_CHUNK + 4)
    table_arrays = 1 + 3 + n_labels  # sample ids, source_sample, mix_weight, synthetic, labels
    metadata_files = 1 + len(ROW_ARRAYS) + 1 + table_arrays  # root + per-spectrum + wavelength + table zarr.json
    data_files = len(ROW_ARRAYS) * shards + 1 + table_arrays  # shards + wavelength chunk + table chunks
    published = metadata_files + data_files + 2  # + <id>.noise_model.json + <id>.manifest.json
    stored = {name: int(raw[name] * ratios[name]) for name in ROW_ARRAYS}
    # metadata and table: ~2 KB per zarr.json (measured on toy stores: 0.4-2 KB), the raw wavelength grid
    total = sum(stored.values()) + len(ROW_ARRAYS) * index_bytes + n_channels * 8 + METADATA_BYTES * metadata_files
    seconds = time.perf_counter() - start
    peak = peak_rss_mb()
    return {
        "n_spectra": n,
        "n_channels": n_channels,
        "n_samples": n_samples,
        "layout": {
            "chunk_rows": plan.chunk_size,
            "shard_rows": plan.shard_rows,
            "intensity": {"shape": [n, n_channels], "chunks": [plan.chunk_size, n_channels],
                          "shards": [plan.shard_rows, n_channels], "dtype": "float32"},
            "per_spectrum": {"arrays": [a for a in ROW_ARRAYS if a != "intensity"], "chunks": [plan.chunk_size],
                             "shards": [plan.shard_rows]},
            "n_chunks": plan.n_chunks,
            "n_shards": shards,
            "tasks": shards,
        },
        "files": published,
        "files_during_run": published + shards + 2,  # + one marker per shard, job.json, noise_model.json
        "bytes": int(total),
        "raw_bytes": int(sum(raw.values())),
        "compression_ratios": {k: round(v, 4) for k, v in ratios.items()},
        "intensity_ratio_source": "given" if intensity_ratio is not None else "recorded (synthetic_store docstring)",
        "planning_s": round(seconds, 4),
        "planning_peak_mb": round(peak, 1),  # peak RSS of this process (interpreter and imports included)
        "goals": GOALS,
        "meets_goals": bool(published <= GOALS["files"] and seconds <= GOALS["planning_s"]
                            and peak <= GOALS["planning_peak_mb"]),
    }


__all__ = ["MEASURED_INTENSITY_RATIO", "plan_layout", "ratio_from_model"]
