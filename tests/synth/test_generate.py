"""Generation: layout and provenance of the store, byte-level determinism, resume after a failure or a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from libs_pipeline.synth import generate as generate_module
from libs_pipeline.synth import synthetic_store
from libs_pipeline.synth.generate import (
    SynthesisError,
    finalize_synthesis,
    generate_synthetic,
    prepare_synthesis,
    run_chunks,
)
from libs_pipeline.synth.noise_model import NoiseModel
from libs_pipeline.synth.synthetic_store import open_synthetic
from libs_pipeline.testing.stores import tree_bytes

PER_SAMPLE, CHUNK = 50, 32  # 300 spectra, 10 chunks; chunk 1 straddles samples S00/S01
SHARD = 2  # chunks per shard in the resume tests: 5 shards, one task each


def test_store_layout_labels_and_provenance(toy_zarr, tmp_path):
    uri = generate_synthetic(toy_zarr, tmp_path, PER_SAMPLE, seed=3, chunk_size=CHUNK)
    path = Path(uri)
    assert path.parent == tmp_path / "synthetic" / "toy" and path.suffix == ".zarr"
    ds = open_synthetic(uri)
    assert ds["intensity"].chunks[0][0] == CHUNK  # lazy, chunked along spectrum
    assert ds["intensity"].encoding["shards"] == (8 * CHUNK, 512)  # default: 8 chunks per shard
    assert ds.sizes == {"spectrum": 300, "wavelength": 512, "sample": 6}
    # integer sample index + lookup table on disk, no per-row strings
    assert ds["sample_index"].dtype == np.int8
    np.testing.assert_array_equal(ds["sample"].values, [f"S{i:02d}" for i in range(6)])
    assert sorted(p.name for p in path.iterdir() if p.is_dir()) == [
        "intensity", "sample", "sample__Cu", "sample__mix_weight", "sample__source_sample", "sample__synthetic",
        "sample_index", "shot", "wavelength"]
    assert sorted(p.name for p in (path / "intensity" / "c").iterdir()) == ["0", "1"]  # 2 shards, one file each
    assert ds["intensity"].dtype == np.float32
    np.testing.assert_array_equal(ds["spectrum"].values, np.arange(300))
    sid = ds["sample_id"].values.astype(object).astype(str)
    assert list(sid[:50]) == ["S00"] * 50 and list(sid[250:]) == ["S05"] * 50
    np.testing.assert_array_equal(ds["shot"].values[45:55], [45, 46, 47, 48, 49, 0, 1, 2, 3, 4])
    assert ds["synthetic"].values.all()
    np.testing.assert_array_equal(ds["source_sample"].values.astype(object).astype(str), sid)
    assert (ds["mix_weight"].values == 0).all()
    assert ds["Cu"].attrs == {"units": "wt%", "role": "label"}
    assert ds["Cu"].values[0] == pytest.approx(0.1) and ds["Cu"].values[-1] == pytest.approx(5.0)
    assert not np.isnan(ds["intensity"].values).any()
    assert ds.attrs["seed"] == 3 and ds.attrs["chunk_size"] == CHUNK and ds.attrs["synthetic"] is True
    assert set(ds.attrs["noise_model"]["parameters"]) == {f"S{i:02d}" for i in range(6)}
    # fitted parameters and manifest beside the store
    model = NoiseModel.from_dict(json.loads((path.parent / f"{path.stem}.noise_model.json").read_text()))
    assert model.sample_ids == [f"S{i:02d}" for i in range(6)]
    manifest = json.loads((path.parent / f"{path.stem}.manifest.json").read_text())
    assert manifest["n_spectra"] == 300 and manifest["source"]["uri"] == toy_zarr
    assert not list(tmp_path.rglob(".*.work"))  # the work folder is gone


def test_bytes_depend_only_on_inputs_seed_and_chunking(toy_zarr, tmp_path):
    a = generate_synthetic(toy_zarr, tmp_path / "a", PER_SAMPLE, seed=3, chunk_size=CHUNK)
    b = generate_synthetic(toy_zarr, tmp_path / "b", PER_SAMPLE, seed=3, chunk_size=CHUNK)
    assert Path(a).name == Path(b).name
    assert tree_bytes(a) == tree_bytes(b)
    other_seed = generate_synthetic(toy_zarr, tmp_path / "c", PER_SAMPLE, seed=4, chunk_size=CHUNK)
    other_chunks = generate_synthetic(toy_zarr, tmp_path / "d", PER_SAMPLE, seed=3, chunk_size=CHUNK * 2)
    assert len({Path(p).name for p in (a, other_seed, other_chunks)}) == 3
    ia = open_synthetic(a)["intensity"].values
    assert not np.array_equal(ia, open_synthetic(other_seed)["intensity"].values)
    # a second call finds the finished store and writes nothing
    before = os.stat(Path(a) / "intensity" / "c" / "0" / "0").st_mtime_ns
    assert generate_synthetic(toy_zarr, tmp_path / "a", PER_SAMPLE, seed=3, chunk_size=CHUNK) == a
    assert os.stat(Path(a) / "intensity" / "c" / "0" / "0").st_mtime_ns == before


def test_same_bytes_on_a_two_worker_cluster(toy_zarr, tmp_path):
    from distributed import Client, LocalCluster

    serial = generate_synthetic(toy_zarr, tmp_path / "serial", PER_SAMPLE, seed=5, chunk_size=CHUNK)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            parallel = generate_synthetic(toy_zarr, tmp_path / "dask", PER_SAMPLE, seed=5, chunk_size=CHUNK,
                                          client_or_address=client)
    assert tree_bytes(serial) == tree_bytes(parallel)


def test_failed_chunk_then_rerun_gives_the_uninterrupted_bytes(toy_zarr, tmp_path, monkeypatch):
    reference = generate_synthetic(toy_zarr, tmp_path / "ref", PER_SAMPLE, seed=9, chunk_size=CHUNK)

    reference = generate_synthetic(toy_zarr, tmp_path / "ref", PER_SAMPLE, seed=9, chunk_size=CHUNK, shard_chunks=SHARD)

    real_write_shard = generate_module.write_shard
    real_marker_write = synthetic_store.write_marker
    calls = []

    def failing_write_shard(work_url, index):
        calls.append(index)
        if index == 3:
            raise OSError("disk hiccup in shard 3")
        return real_write_shard(work_url, index)

    def marker_write_crashes_for_shard_4(marker, shard, start, stop):
        if shard == 4:  # objects of shard 4 written, then the process 'dies'
            raise KeyboardInterrupt
        return real_marker_write(marker, shard, start, stop)

    monkeypatch.setattr(generate_module, "write_shard", failing_write_shard)
    with pytest.raises(SynthesisError, match="1 of 5 shards failed \\(first: shard 3: OSError: disk hiccup"):
        generate_synthetic(toy_zarr, tmp_path / "run", PER_SAMPLE, seed=9, chunk_size=CHUNK, shard_chunks=SHARD)
    assert calls == list(range(5))  # the other shards still ran
    job = prepare_synthesis(toy_zarr, tmp_path / "run", PER_SAMPLE, seed=9, chunk_size=CHUNK, shard_chunks=SHARD)
    assert job.pending_shards() == [3] and not job.complete()
    with pytest.raises(ValueError, match="incomplete store \\(no manifest"):
        open_synthetic(job.store_url)
    with pytest.raises(SynthesisError, match="1 shard\\(s\\) not written yet \\(first: 3\\)"):
        finalize_synthesis(job)
    monkeypatch.setattr(generate_module, "write_shard", real_write_shard)

    # a crash in the middle of shard 4: marker gone, intensity shard half-written; the next attempt writes
    # shard 3, rewrites shard 4 and then 'dies' again just before shard 4's marker
    job.marker(4).remove()
    (Path(job.store_url) / "intensity" / "c" / "4" / "0").write_bytes(b"half-written")
    monkeypatch.setattr(synthetic_store, "write_marker", marker_write_crashes_for_shard_4)
    with pytest.raises(KeyboardInterrupt):
        run_chunks(job)
    assert job.pending_shards() == [4]
    monkeypatch.setattr(synthetic_store, "write_marker", real_marker_write)

    assert run_chunks(job) == 1
    resumed = finalize_synthesis(job)
    assert Path(resumed).name == Path(reference).name
    assert tree_bytes(resumed) == tree_bytes(reference)


def test_transient_write_errors_are_retried_with_identical_bytes(toy_zarr, tmp_path, monkeypatch):
    reference = generate_synthetic(toy_zarr, tmp_path / "ref", PER_SAMPLE, seed=9, chunk_size=CHUNK, shard_chunks=SHARD)
    real_write_region = synthetic_store.write_region
    failures = {1: 2, 3: 1}  # shard -> how many times its write fails before it goes through
    attempts: list[int] = []

    def flaky_write_region(arrays, start, stop, values):
        shard = start // (CHUNK * SHARD)
        attempts.append(shard)
        if failures.get(shard, 0) > 0:
            failures[shard] -= 1
            real_write_region(arrays, start, start + 3, {k: v[:3] for k, v in values.items()})  # a part, then
            raise ConnectionResetError(f"connection reset while writing shard {shard}")
        return real_write_region(arrays, start, stop, values)

    monkeypatch.setattr(synthetic_store, "write_region", flaky_write_region)
    monkeypatch.setattr(synthetic_store, "WRITE_BACKOFF_S", 0.0)
    uri = generate_synthetic(toy_zarr, tmp_path / "flaky", PER_SAMPLE, seed=9, chunk_size=CHUNK, shard_chunks=SHARD)
    assert sorted(attempts) == [0, 1, 1, 1, 2, 3, 3, 4]
    assert tree_bytes(uri) == tree_bytes(reference)

    # an error that does not go away fails the shard after the bounded attempts, naming it
    monkeypatch.setattr(synthetic_store, "write_region",
                        lambda *a: (_ for _ in ()).throw(ConnectionResetError("endpoint gone")))
    with pytest.raises(SynthesisError, match="shard 0: OSError: .*shard 0: failed 4 times, last: ConnectionResetError"):
        generate_synthetic(toy_zarr, tmp_path / "dead", PER_SAMPLE, seed=9, chunk_size=CHUNK, shard_chunks=SHARD)


def test_interpolated_samples_in_the_store(toy_zarr, tmp_path):
    uri = generate_synthetic(toy_zarr, tmp_path, 10, seed=1, chunk_size=16, interpolate_between=1)
    ds = open_synthetic(uri)
    assert ds.sizes["spectrum"] == (6 + 5) * 10
    sid = ds["sample_id"].values.astype(object).astype(str)
    assert sid[60] == "S00~S01@0.5000"
    assert str(ds["source_sample"].values[60]) == "S00|S01" and ds["mix_weight"].values[60] == pytest.approx(0.5)
    assert ds["Cu"].values[60] == pytest.approx((ds["Cu"].values[0] + ds["Cu"].values[10]) / 2)


def test_errors_are_clear(toy_zarr, tmp_path):
    with pytest.raises(FileNotFoundError, match="not a zarr store"):
        open_synthetic(tmp_path / "missing.zarr")
    with pytest.raises(ValueError, match="not a synthetic store"):
        open_synthetic(toy_zarr)
    with pytest.raises(ValueError, match="per_sample must be >= 1"):
        generate_synthetic(toy_zarr, tmp_path, 0)
    target = tmp_path / "fixed.zarr"
    prepare_synthesis(toy_zarr, target, 5, seed=1, chunk_size=8)
    with pytest.raises(ValueError, match="holds job .*a different model or plan for the same output path"):
        prepare_synthesis(toy_zarr, target, 5, seed=2, chunk_size=8)
    done = generate_synthetic(toy_zarr, tmp_path / "done.zarr", 5, seed=1, chunk_size=8)
    with pytest.raises(ValueError, match="done.zarr: already holds synthetic store"):
        generate_synthetic(toy_zarr, done, 5, seed=2, chunk_size=8)


@pytest.mark.slow
def test_killed_process_restarted_finishes_with_the_same_bytes(toy_zarr, tmp_path):
    """SIGKILL a real generation half-way (chunks throttled), restart it, compare with an uninterrupted run."""
    script = (
        "import sys, time\n"
        "from libs_pipeline.synth import generate, synthetic_store\n"
        "real = synthetic_store.write_shard\n"
        "def slow(work_url, index):\n"
        "    out = real(work_url, index); time.sleep(0.3); return out\n"
        "generate.write_shard = slow\n"
        f"generate.generate_synthetic({toy_zarr!r}, sys.argv[1], 400, seed=11, chunk_size=100, shard_chunks=1)\n"
    )
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen([sys.executable, "-c", script, str(out)], env=env)
    markers = out / "synthetic" / "toy"
    deadline = time.time() + 60
    while time.time() < deadline:
        done = list(markers.glob(".*.work/tasks/*.done")) if markers.exists() else []
        if len(done) >= 5:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = list(markers.glob(".*.work/tasks/*.done"))
    assert 5 <= len(done) < 24, len(done)  # killed half-way: some but not all of the 24 shards
    resumed = generate_synthetic(toy_zarr, out, 400, seed=11, chunk_size=100, shard_chunks=1)
    reference = generate_synthetic(toy_zarr, tmp_path / "clean", 400, seed=11, chunk_size=100, shard_chunks=1)
    assert tree_bytes(resumed) == tree_bytes(reference)
