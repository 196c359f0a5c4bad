"""Synthesis at cluster scale on real services: an S3 server (moto, its own process) and a Dask cluster of separate
``dask scheduler`` / ``dask worker`` processes, both started here. Prints ONE JSON object.

    python benchmarks/cluster_synthesis.py                                  # 10^5 spectra x 4096 channels on S3
    python benchmarks/cluster_synthesis.py --n-spectra 20000 --n-channels 512   # a quick run
    python benchmarks/cluster_synthesis.py --codecs-only                    # the codec table of synthetic_store

Keys: ``store_uri`` (the s3:// store of the clean S3 run), ``n_spectra``, ``workers``, ``spectra_per_s`` (clean S3
run, everything from fit to manifest), ``efficiency`` (the shard phase, draw + write, on a local store, same
cluster: spectra per second / (workers * numpy Poisson limit of one core)), ``efficiency_s3`` (same for the S3
run; ``efficiency_end_to_end*`` include fit, template and publish; ``*_cpu``: spectra per worker-CPU-second /
Poisson spectra per CPU-second, robust when other jobs share the cores). The Poisson limit
(``rng_limit_spectra_per_s``) is measured on every worker at once, before and after the timed runs, with the
shard tasks' allocator settings; the faster of the two counts (``rng_limit_driver``: the same in this process).
``worker_system_cpu_fraction*``: the kernel's share of the workers' CPU (page cache, sockets); ``s3_server_cpu_s``:
the moto server's CPU during the S3 shard phase, taken from the same cores here (a real object store is not). ``resumed_after_worker_kill`` and ``bytes_equal_local`` (a second S3 run: worker 0 and the driver are
killed once some shards are marked, a replacement worker joins, the rerun resumes; every object equals the local
store), ``plan_1e8`` (the dry-run planner for 10^8 spectra, in its own process), ``epoch_read`` (one streaming
epoch of ``SpectraBatches`` over the S3 store in a fresh process; peak RSS of that process, at N and at N/4).
The moto server keeps every object in memory (~ n_spectra * n_channels * 4 * 0.76 bytes per store, three stores).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import synth_throughput
from synth_throughput import measured_campaign, poisson_means, rng_limit

from libs_pipeline.synth.generate import (
    finalize_synthesis,
    generate_synthetic,
    prepare_synthesis,
    run_chunks,
)
from libs_pipeline.synth.noise_model import fit_noise_model, sample_spectra
from libs_pipeline.testing import toy_campaign
from libs_pipeline.testing.services import dask_processes, s3_server, start_worker
from libs_pipeline.testing.stores import tree_bytes

REPO = Path(__file__).resolve().parents[1]
ANALYTE = "Cu"


def codec_table(n_channels: int = 4096, rows: int = 1024) -> list[dict]:
    """Ratio and single-core encode time of candidate codecs on one block of toy-campaign draws (8 samples)."""
    import numcodecs

    model = fit_noise_model(toy_campaign(n_samples=8, n_shots=10, n_channels=n_channels))
    rng = np.random.default_rng(0)
    block = np.concatenate([sample_spectra(model, model.sample_ids[i % 8], rows // 4, rng) for i in range(4)])
    candidates = {
        "Zstd level 1": numcodecs.Zstd(level=1),
        "Blosc zstd 1 + bit-shuffle": numcodecs.Blosc("zstd", 1, numcodecs.Blosc.BITSHUFFLE),
        "Blosc lz4 5 + byte-shuffle": numcodecs.Blosc("lz4", 5, numcodecs.Blosc.SHUFFLE),
    }
    numcodecs.blosc.set_nthreads(1)
    out = []
    for label, values in (("float", block), ("integer (rint) float32", np.rint(block)),
                          ("integer (rint) int32", np.rint(block).astype(np.int32))):
        for name, codec in candidates.items():
            start = time.process_time()
            for _ in range(3):
                encoded = codec.encode(values)
            out.append({"draws": label, "codec": name, "ratio": round(len(encoded) / block.nbytes, 3),
                        "encode_cpu_s_per_1024_rows": round((time.process_time() - start) / 3 * 1024 / rows, 4)})
    return out


def _warm_up() -> None:  # the imports a shard task needs (not timed), no session or connection
    import s3fs  # noqa: F401
    import zarr.storage  # noqa: F401

    import libs_pipeline.synth.synthetic_store  # noqa: F401


def workers_cpu_s(cluster) -> tuple[float, float]:
    """(user, system) CPU seconds used so far by the Dask worker processes (and their children), not the S3 server
    or this one."""
    user = system = 0.0
    for proc in cluster.workers:
        try:
            root = psutil.Process(proc.pid)
            for p in [root, *root.children(recursive=True)]:
                t = p.cpu_times()
                user += t.user
                system += t.system
        except psutil.NoSuchProcess:
            pass
    return user, system


def workers_rng_limit(client, lams: list[np.ndarray], chunk_size: int) -> tuple[float, float]:
    """The Poisson limit of one core, measured on every worker at once: the processes, allocator settings and
    contention of the shard tasks. Mean over the workers of (spectra per wall second, per CPU second)."""
    import cloudpickle

    cloudpickle.register_pickle_by_value(synth_throughput)  # the workers cannot import benchmarks/
    rates = list(client.run(rng_limit, lams, chunk_size).values())
    return float(np.mean([r[0] for r in rates])), float(np.mean([r[1] for r in rates]))


def _cpu_s(pid: int) -> float:
    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def _timed(dataset, root, per_sample, cluster, chunk_size, shard_chunks, seed, server_pid: int) -> dict:
    """One generation, timed as a whole (fit, template, shards, publish) and its shard phase (draw + write) alone;
    CPU of the workers (user, system) and of the S3 server process during the shard phase."""
    start = time.perf_counter()
    job = prepare_synthesis(dataset, root, per_sample, seed=seed, chunk_size=chunk_size, shard_chunks=shard_chunks)
    (user0, sys0), server0, run_start = workers_cpu_s(cluster), _cpu_s(server_pid), time.perf_counter()
    run_chunks(job, cluster.address)
    run_seconds = time.perf_counter() - run_start
    user, system = (b - a for a, b in zip((user0, sys0), workers_cpu_s(cluster)))
    server = _cpu_s(server_pid) - server0
    uri = finalize_synthesis(job)
    return {"uri": uri, "seconds": time.perf_counter() - start, "run_seconds": run_seconds,
            "worker_cpu_s": user + system, "worker_system_fraction": system / (user + system),
            "server_cpu_s": server}


def _kill_and_resume(dataset, root, per_sample, cluster, base, chunk_size, shard_chunks, seed) -> tuple[bool, str]:
    """Run on the cluster from a driver process; once a quarter of the shards are marked, SIGKILL worker 0 and the
    driver; start a replacement worker; rerun here. True if the rerun found marked shards and finished."""
    job = prepare_synthesis(dataset, root, per_sample, seed=seed, chunk_size=chunk_size, shard_chunks=shard_chunks)
    total = job.plan.n_shards
    driver = subprocess.Popen(
        [sys.executable, "-c",
         "import sys; from libs_pipeline.synth.generate import run_chunks; run_chunks(sys.argv[1], sys.argv[2])",
         job.work_url, cluster.address], env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and total - len(job.pending_shards()) < max(1, total // 4):
        time.sleep(0.05)
    cluster.kill_worker(0)
    driver.kill()
    driver.wait()
    marked = total - len(job.pending_shards())
    start_worker(cluster, base, "replacement")
    cluster.wait_for_workers(len([w for w in cluster.workers if w.poll() is None]))
    uri = generate_synthetic(dataset, root, per_sample, seed=seed, chunk_size=chunk_size, shard_chunks=shard_chunks,
                             client_or_address=cluster.address)
    return 0 < marked < total, uri


def epoch_read(measured: str, synthetic: str, batch_size: int = 256) -> dict:
    """One streaming epoch (``SpectraBatches``) over measured + synthetic training rows; peak RSS of this process."""
    from libs_pipeline.features.lines import default_lines
    from libs_pipeline.models.data_loading import (
        SpectraBatches,
        fit_transforms,
        plan_split,
    )
    from libs_pipeline.models.tasks import build_taskset

    me = psutil.Process()
    peak = {"rss": me.memory_info().rss}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak["rss"] = max(peak["rss"], me.memory_info().rss)
            stop.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    plan = plan_split([measured, synthetic], ANALYTE, val_fraction=0.0, seed=0)
    tasks = build_taskset(ANALYTE, default_lines(ANALYTE), multitask=False, plasma=False,
                          datasets=[s.ds for s in plan.train])
    normaliser, scaler = fit_transforms(plan, tasks, "total")
    planned = time.perf_counter() - start
    batches = SpectraBatches(plan.train, normaliser, scaler, batch_size=batch_size, shuffle=True, seed=0)
    start, n = time.perf_counter(), 0
    for x, _ in batches:
        n += x.shape[0]
    seconds = time.perf_counter() - start
    stop.set()
    sampler.join()
    return {"n_spectra": n, "seconds": round(seconds, 3), "spectra_per_s": round(n / seconds, 1),
            "plan_and_fit_s": round(planned, 3), "peak_rss_mb": round(peak["rss"] / 2**20, 1)}


def _subprocess_json(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, *args], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    return json.loads(out.stdout.strip().splitlines()[-1])


def plan_1e8() -> dict:
    start = time.perf_counter()
    plan = _subprocess_json(["-c", "import json; from libs_pipeline.synth.layout_plan import plan_layout; "
                                   "print(json.dumps(plan_layout(10**8)))"])
    return {"files": plan["files"], "files_during_run": plan["files_during_run"], "bytes": plan["bytes"],
            "n_shards": plan["layout"]["n_shards"], "planning_s": plan["planning_s"],
            "planning_peak_mb": plan["planning_peak_mb"], "process_s": round(time.perf_counter() - start, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-spectra", type=int, default=100_000)
    ap.add_argument("--n-channels", type=int, default=4096)  # the virtual instrument's grid (OREAS: 8011)
    ap.add_argument("--n-samples", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--chunk-size", type=int, default=1024)
    ap.add_argument("--shard-chunks", type=int, default=2)  # 49 shards of 2048 x 4096: both workers busy to the end
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--codecs-only", action="store_true", help="print the codec measurements and exit")
    ap.add_argument("--epoch", nargs=2, metavar=("MEASURED", "SYNTHETIC"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.codecs_only:
        print(json.dumps(codec_table()))
        return
    if args.epoch:  # helper mode: one epoch in this fresh process
        print(json.dumps(epoch_read(*args.epoch)))
        return

    scratch = Path(tempfile.mkdtemp(prefix="cluster-synth-"))
    try:
        dataset, model = measured_campaign(scratch, args.n_samples, args.n_channels)
        lams = poisson_means(model)
        driver_limit = rng_limit(lams, args.chunk_size)
        per_sample = -(-args.n_spectra // args.n_samples)
        n = per_sample * args.n_samples
        with s3_server() as s3:
            bucket = s3.make_bucket("synthetic-bench")
            with dask_processes(args.workers, scratch / "dask") as cluster:
                from distributed import Client

                with Client(cluster.address, set_as_default=False) as client:
                    client.run(_warm_up)
                    limits = [workers_rng_limit(client, lams, args.chunk_size)]
                common = (per_sample, cluster, args.chunk_size, args.shard_chunks, args.seed, s3.pid)
                local = _timed(dataset, str(scratch / "local"), *common)
                on_s3 = _timed(dataset, f"{bucket}/clean", *common)
                with Client(cluster.address, set_as_default=False) as client:
                    limits.append(workers_rng_limit(client, lams, args.chunk_size))
                limit, limit_cpu = max(limits)  # the faster measurement: the stricter efficiency
                resumed, resumed_uri = _kill_and_resume(dataset, f"{bucket}/killed", per_sample, cluster,
                                                        scratch / "dask", args.chunk_size, args.shard_chunks,
                                                        args.seed)
            bytes_equal = tree_bytes(resumed_uri) == tree_bytes(local["uri"])
            quarter = generate_synthetic(dataset, f"{bucket}/quarter", -(-per_sample // 4), seed=args.seed,
                                         chunk_size=args.chunk_size, shard_chunks=args.shard_chunks)
            me = str(Path(__file__).resolve())
            epoch = _subprocess_json([me, "--epoch", dataset, on_s3["uri"]])
            epoch_quarter = _subprocess_json([me, "--epoch", dataset, quarter])
        result = {
            "store_uri": on_s3["uri"],
            "n_spectra": n,
            "n_channels": args.n_channels,
            "workers": args.workers,
            "chunk_size": args.chunk_size,
            "shard_chunks": args.shard_chunks,
            "spectra_per_s": round(n / on_s3["seconds"], 1),
            "spectra_per_s_local": round(n / local["seconds"], 1),
            "rng_limit_spectra_per_s": round(limit, 1),
            "rng_limit_workers_before_after": [round(x[0], 1) for x in limits],
            "rng_limit_driver": round(driver_limit[0], 1),
            "efficiency": round(n / local["run_seconds"] / (args.workers * limit), 3),
            "efficiency_s3": round(n / on_s3["run_seconds"] / (args.workers * limit), 3),
            "efficiency_end_to_end": round(n / local["seconds"] / (args.workers * limit), 3),
            "efficiency_end_to_end_s3": round(n / on_s3["seconds"] / (args.workers * limit), 3),
            "efficiency_cpu": round(n / local["worker_cpu_s"] / limit_cpu, 3),
            "efficiency_s3_cpu": round(n / on_s3["worker_cpu_s"] / limit_cpu, 3),
            "worker_system_cpu_fraction": round(local["worker_system_fraction"], 3),
            "worker_system_cpu_fraction_s3": round(on_s3["worker_system_fraction"], 3),
            "s3_server_cpu_s": round(on_s3["server_cpu_s"], 1),
            "worker_cpu_s_s3": round(on_s3["worker_cpu_s"], 1),
            "run_seconds_s3": round(on_s3["run_seconds"], 1),
            "resumed_after_worker_kill": resumed,
            "bytes_equal_local": bytes_equal,
            "plan_1e8": plan_1e8(),
            "epoch_read": {**epoch, "n_spectra_quarter": epoch_quarter["n_spectra"],
                           "peak_rss_mb_quarter": epoch_quarter["peak_rss_mb"],
                           "spectra_per_s_quarter": epoch_quarter["spectra_per_s"]},
            "cpu_count": os.cpu_count(),
            "load_avg_1min_end": round(os.getloadavg()[0], 2),
        }
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
