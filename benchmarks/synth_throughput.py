"""Throughput, scaling and memory of synthetic generation on a Dask LocalCluster; prints one JSON object.

spectra_per_s counts everything a run does (fit, template, draws, compression, zarr writes, publish);
rng_limit_spectra_per_s is numpy's Poisson draws of the same shape and means in this process (one core),
so efficiency = spectra_per_s / (workers * rng_limit). Peak RSS is the sum over this process and all its
children (the cluster's nanny and worker processes), sampled every 50 ms.

    python benchmarks/synth_throughput.py                      # 100 000 spectra x 4096 channels
    python benchmarks/synth_throughput.py --n-spectra 1000000  # the million-spectrum store
    python benchmarks/synth_throughput.py --n-spectra 20000 --speedup-n-spectra 20000   # a quick check
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import threading
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import psutil

from libs_pipeline.synth.generate import generate_synthetic, open_measured
from libs_pipeline.synth.noise_model import fit_noise_model, sample_spectra
from libs_pipeline.synth.plan import SynthesisPlan
from libs_pipeline.synth.synthetic_store import intensity_compressor, tune_allocator
from libs_pipeline.testing import toy_campaign


class PeakRss:
    """Peak of the summed RSS of this process and all its descendants, sampled in a thread."""

    def __init__(self, interval: float = 0.05):
        self.interval, self.peak, self._stop = interval, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        me = psutil.Process()
        total = 0
        for p in [me, *me.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._sample())
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRss:
        self.peak = self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._sample())


def measured_campaign(scratch: Path, n_samples: int, n_channels: int) -> tuple[str, object]:
    """A toy campaign of ``n_samples`` x 10 shots written as ``<scratch>/measured.zarr``, and its fitted noise model."""
    dataset = str(scratch / "measured.zarr")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        toy_campaign(n_samples=n_samples, n_shots=10, n_channels=n_channels).to_zarr(
            dataset, zarr_format=3, consolidated=False, mode="w")
    return dataset, fit_noise_model(open_measured(dataset))


def _warm_up() -> None:
    import libs_pipeline.synth.synthetic_store  # noqa: F401  (the imports a chunk task needs)


@contextmanager
def cluster(workers: int):
    """A LocalCluster of ``workers`` processes (1 thread each), warmed up: module imports are not timed."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                      memory_limit=0) as c:
        with Client(c.scheduler_address) as client:
            client.run(_warm_up)
        yield c.scheduler_address


def poisson_means(model) -> list[np.ndarray]:
    """The Poisson means (photo-electrons per channel) of every sample of ``model``."""
    return [np.maximum(model.sample(s).mean, 0) / model.sample(s).gain for s in model.sample_ids]


def rng_limit(lams: list[np.ndarray], chunk_size: int, seconds: float = 3.0) -> tuple[float, float]:
    """Spectra per wall-clock second and per CPU second of numpy Poisson draws (chunk_size, n_channels).

    Runs with the allocator settings the shard tasks use (``tune_allocator``). Without them every 32 MB result
    is a fresh ``mmap`` whose page faults are timed too. Measured on a 2-core Firecracker VM, where a page
    touched for the first time costs the host a fault: 5 300-5 600 spectra/s with glibc defaults against
    6 300-6 800 tuned, so the untuned figure understated the limit and overstated every efficiency.
    """
    tune_allocator()
    rng = np.random.default_rng(0)
    factor = np.ones((chunk_size, 1))
    n, start, cpu, i = 0, time.perf_counter(), time.process_time(), 0
    while time.perf_counter() - start < seconds:
        rng.poisson(factor * lams[i % len(lams)])
        n += chunk_size
        i += 1
    return n / (time.perf_counter() - start), n / (time.process_time() - cpu)


def tree_cpu_seconds() -> float:
    """CPU seconds (user + system) used so far by this process's descendants (nannies, workers)."""
    total = 0.0
    for p in psutil.Process().children(recursive=True):
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


def chunk_profile(model, chunk_size: int, repeats: int = 3) -> dict:
    """Seconds per chunk for the draws alone and for compressing + writing them (in this process)."""
    import zarr

    rng = np.random.default_rng(0)
    sid = model.sample_ids[0]
    draw, write = [], []
    with tempfile.TemporaryDirectory() as tmp:
        arr = zarr.create_array(Path(tmp) / "p.zarr", shape=(chunk_size * repeats, model.n_channels), dtype="float32",
                                chunks=(chunk_size, model.n_channels), compressors=intensity_compressor(model),
                                zarr_format=3)
        for i in range(repeats):
            t = time.perf_counter()
            block = sample_spectra(model, sid, chunk_size, rng)
            draw.append(time.perf_counter() - t)
            t = time.perf_counter()
            arr[i * chunk_size:(i + 1) * chunk_size] = block
            write.append(time.perf_counter() - t)
        size = sum(p.stat().st_size for p in (Path(tmp) / "p.zarr").rglob("*") if p.is_file())
    return {"draw_s": float(np.median(draw)), "compress_write_s": float(np.median(write)),
            "compression_ratio": size / (chunk_size * repeats * model.n_channels * 4)}


def timed_run(dataset: str, out: Path, n_spectra: int, n_samples: int, workers: int, chunk_size: int, seed: int,
              shard_chunks: int = 8) -> dict:
    per_sample = -(-n_spectra // n_samples)
    with cluster(workers) as address, PeakRss() as rss:
        cpu0, start = tree_cpu_seconds(), time.perf_counter()
        uri = generate_synthetic(dataset, out, per_sample, seed=seed, chunk_size=chunk_size, client_or_address=address,
                                 shard_chunks=shard_chunks)
        seconds = time.perf_counter() - start
        cpu = tree_cpu_seconds() - cpu0
    n = per_sample * n_samples
    size = sum(p.stat().st_size for p in Path(uri).rglob("*") if p.is_file())
    shutil.rmtree(out, ignore_errors=True)
    return {"n_spectra": n, "seconds": seconds, "spectra_per_s": n / seconds, "peak_rss_mb": rss.peak / 2**20,
            "store_bytes": size, "worker_cpu_s": cpu}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-spectra", type=int, default=100_000)
    ap.add_argument("--n-channels", type=int, default=4096)
    ap.add_argument("--n-samples", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--chunk-size", type=int, default=1024)
    ap.add_argument("--shard-chunks", type=int, default=8, help="chunks per shard (one task per shard)")
    ap.add_argument("--speedup-n-spectra", type=int, default=None,
                    help="spectra of the 1-worker vs N-worker comparison (default: min(n, 100000))")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", default=None, help="scratch folder (default: a temporary one, removed)")
    args = ap.parse_args()

    scratch = Path(args.workdir or tempfile.mkdtemp(prefix="synth-bench-"))
    scratch.mkdir(parents=True, exist_ok=True)
    load_start = os.getloadavg()
    try:
        dataset, model = measured_campaign(scratch, args.n_samples, args.n_channels)
        limit, limit_cpu = rng_limit(poisson_means(model), args.chunk_size)
        profile = chunk_profile(model, args.chunk_size)

        main_run = timed_run(dataset, scratch / "main", args.n_spectra, args.n_samples, args.workers,
                             args.chunk_size, args.seed, args.shard_chunks)
        small = timed_run(dataset, scratch / "small", max(args.n_spectra // 100, args.n_samples), args.n_samples,
                          args.workers, args.chunk_size, args.seed, args.shard_chunks)
        n_speed = args.speedup_n_spectra or min(args.n_spectra, 100_000)
        if n_speed == args.n_spectra:
            many = main_run
        else:
            many = timed_run(dataset, scratch / "many", n_speed, args.n_samples, args.workers, args.chunk_size, args.seed,
                             args.shard_chunks)
        one = timed_run(dataset, scratch / "one", n_speed, args.n_samples, 1, args.chunk_size, args.seed,
                        args.shard_chunks)
        plan = SynthesisPlan(tuple(model.sample_ids), -(-args.n_spectra // args.n_samples), args.chunk_size, args.seed,
                             args.shard_chunks)
    finally:
        if args.workdir is None:
            shutil.rmtree(scratch, ignore_errors=True)
    result = {
        "n_spectra": main_run["n_spectra"],
        "n_channels": args.n_channels,
        "workers": args.workers,
        "chunk_size": args.chunk_size,
        "n_chunks": plan.n_chunks,
        "shard_chunks": plan.shard_chunks,
        "n_shards": plan.n_shards,
        "seconds": round(main_run["seconds"], 3),
        "spectra_per_s": round(main_run["spectra_per_s"], 1),
        "rng_limit_spectra_per_s": round(limit, 1),
        "efficiency": round(main_run["spectra_per_s"] / (args.workers * limit), 3),
        "speedup_2_vs_1_worker": round(one["seconds"] / many["seconds"], 3) if args.workers == 2 else None,
        f"speedup_{args.workers}_vs_1_worker": round(one["seconds"] / many["seconds"], 3),
        "speedup_n_spectra": many["n_spectra"],
        "seconds_1_worker": round(one["seconds"], 3),
        "peak_rss_mb": round(main_run["peak_rss_mb"], 1),
        "peak_rss_mb_small": round(small["peak_rss_mb"], 1),
        "n_spectra_small": small["n_spectra"],
        "rss_ratio": round(main_run["peak_rss_mb"] / small["peak_rss_mb"], 3),
        "store_bytes": main_run["store_bytes"],
        "compression_ratio": round(main_run["store_bytes"] / (main_run["n_spectra"] * args.n_channels * 4), 3),
        "chunk_profile_1_process": {k: round(v, 4) for k, v in profile.items()},
        # contention-robust view: CPU seconds the cluster's processes actually got (other jobs share the cores)
        "rng_limit_spectra_per_cpu_s": round(limit_cpu, 1),
        "spectra_per_worker_cpu_s": round(main_run["n_spectra"] / main_run["worker_cpu_s"], 1),
        "efficiency_cpu": round(main_run["n_spectra"] / main_run["worker_cpu_s"] / limit_cpu, 3),
        "worker_cpu_utilisation": round(main_run["worker_cpu_s"] / (args.workers * main_run["seconds"]), 3),
        "worker_cpu_utilisation_1_worker": round(one["worker_cpu_s"] / one["seconds"], 3),
        "cpu_count": os.cpu_count(),
        "load_avg_1min_start": round(load_start[0], 2),
        "load_avg_1min_end": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
