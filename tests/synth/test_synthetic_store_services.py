"""Synthetic stores on real services: a local root and an S3 root (moto server), a real Dask cluster of separate
``dask scheduler`` / ``dask worker`` processes, a worker killed mid-run, a rerun that resumes with identical bytes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from libs_pipeline.spectra.location import StoreUnreachableError, open_location
from libs_pipeline.synth.generate import (
    generate_synthetic,
    prepare_synthesis,
    run_chunks,
)
from libs_pipeline.synth.synthetic_store import open_synthetic
from libs_pipeline.testing.services import dask_processes, start_worker
from libs_pipeline.testing.stores import tree_bytes

REPO = Path(__file__).resolve().parents[2]


def _published(store_url: str) -> dict[str, bytes]:
    """Every object of a published store: the zarr tree, the fitted model and the manifest."""
    store = open_location(store_url)
    stem = store.name.removesuffix(".zarr")
    files = {f"zarr/{k}": v for k, v in tree_bytes(store).items()}
    files["noise_model.json"] = (store.parent / f"{stem}.noise_model.json").read_bytes()
    return files


def test_generate_open_and_refuse_incomplete_on_local_and_s3(store_root, toy_zarr, tmp_path):
    job = prepare_synthesis(toy_zarr, store_root, 20, seed=2, chunk_size=16, shard_chunks=2)
    assert job.store_url == f"{store_root}/synthetic/toy/{job.id}.zarr"
    assert job.pending_shards() == [0, 1, 2, 3]  # 120 spectra, 8 chunks, 4 shards
    with pytest.raises(ValueError, match=f"{job.id}.zarr: incomplete store \\(no manifest .*{job.id}.manifest.json"):
        open_synthetic(job.store_url)
    uri = generate_synthetic(toy_zarr, store_root, 20, seed=2, chunk_size=16, shard_chunks=2)
    assert uri == job.store_url
    ds = open_synthetic(uri)
    assert ds.sizes["spectrum"] == 120 and list(ds["sample_id"].values[[0, 119]]) == ["S00", "S05"]
    assert not open_location(f"{store_root}/synthetic/toy/.{job.id}.work").exists()  # markers cleaned up
    local = generate_synthetic(toy_zarr, tmp_path / "ref", 20, seed=2, chunk_size=16, shard_chunks=2)
    assert _published(uri) == _published(local)  # same bytes on either backend
    assert not Path("s3:").exists()


def test_unreachable_bucket_fails_clearly_and_writes_nothing_locally(s3, toy_zarr, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StoreUnreachableError, match="bucket 'no-such-bucket' does not exist"):
        prepare_synthesis(toy_zarr, "s3://no-such-bucket/store", 5)
    assert list(tmp_path.iterdir()) == []


def _slow_shards(delay: float) -> None:
    """Runs on the workers (through client.run): every shard task sleeps ``delay`` after writing its shard."""
    from libs_pipeline.synth import synthetic_store

    real = synthetic_store.write_shard

    def write_shard(work_url, shard):
        out = real(work_url, shard)
        time.sleep(delay)
        return out

    synthetic_store.write_shard = write_shard  # tasks name the function by module + name


@pytest.mark.slow
def test_s3_synthesis_on_dask_processes_resumes_after_a_worker_kill(s3_root, toy_zarr, tmp_path):
    per_sample, chunk, shard_chunks = 160, 40, 1  # 960 spectra, 24 shards
    reference = generate_synthetic(toy_zarr, tmp_path / "local", per_sample, seed=7, chunk_size=chunk,
                                   shard_chunks=shard_chunks)
    job = prepare_synthesis(toy_zarr, s3_root, per_sample, seed=7, chunk_size=chunk, shard_chunks=shard_chunks)
    assert job.plan.n_shards == 24
    with dask_processes(2, tmp_path / "dask", env={"PYTHONPATH": str(REPO)}) as cluster:
        from distributed import Client

        with Client(cluster.address, set_as_default=False) as client:
            client.run(_slow_shards, 0.4)  # both workers: ~0.4 s per shard, so the kill lands mid-run
        driver = subprocess.Popen(
            [sys.executable, "-c",
             "import sys; from libs_pipeline.synth.generate import run_chunks; run_chunks(sys.argv[1], sys.argv[2])",
             job.work_url, cluster.address],
            env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=tmp_path,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(job.pending_shards()) > 24 - 4:
            time.sleep(0.1)
        cluster.kill_worker(0)  # a worker crashes ...
        driver.kill()  # ... and the run with it
        driver.wait()
        pending = job.pending_shards()
        assert 0 < len(pending) < 24, pending  # killed in the middle: some shards done, some not
        assert not job.complete()
        start_worker(cluster, tmp_path / "dask", "replacement", env={"PYTHONPATH": str(REPO)})
        cluster.wait_for_workers(2)
        resumed = generate_synthetic(toy_zarr, s3_root, per_sample, seed=7, chunk_size=chunk,
                                     shard_chunks=shard_chunks, client_or_address=cluster.address)
    assert resumed == job.store_url and resumed.startswith("s3://")
    assert _published(resumed) == _published(reference)
    np.testing.assert_array_equal(open_synthetic(resumed)["intensity"].values,
                                  open_synthetic(reference)["intensity"].values)


def test_rerun_skips_marked_shards(s3_root, toy_zarr):
    job = prepare_synthesis(toy_zarr, s3_root, 20, seed=4, chunk_size=16, shard_chunks=1)
    assert run_chunks(job) == 8
    assert run_chunks(job) == 0  # every shard has its marker: nothing is drawn or written again


def test_realism_report_of_an_s3_store_lands_beside_it_on_s3(s3_root, toy_zarr, tmp_path, monkeypatch):
    from libs_pipeline.config import SynthesisConfig
    from libs_pipeline.synth.synthesis_run import realism_from_config

    monkeypatch.chdir(tmp_path)
    uri = generate_synthetic(toy_zarr, s3_root, 20, seed=1, chunk_size=32)
    config = SynthesisConfig(dataset_uri=toy_zarr, out_uri=s3_root, per_sample=20, seed=1, chunk_size=32)
    report, paths = realism_from_config(config, uri)
    store = open_location(uri)
    on_s3 = store.parent / f"{store.name.removesuffix('.zarr')}.realism"
    assert sorted(on_s3.children()) == sorted(Path(p).name for p in paths.values())
    assert (on_s3 / Path(paths["figure"]).name).read_bytes() == Path(paths["figure"]).read_bytes()
    assert list(tmp_path.iterdir()) == []  # nothing under the working directory (no ./s3:/...)
