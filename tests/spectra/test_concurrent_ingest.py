"""Concurrent ingests into the same dataset, on a local and an S3 root, from real processes and from threads:
nothing lost, no half-written version, LATEST a linear history; lock timeout."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

import numpy as np

from libs_pipeline.config import IngestOptions
from libs_pipeline.spectra.ingest import ingest_campaign
from libs_pipeline.spectra.store import SpectraStore
from libs_pipeline.testing.instrument_files import shot_columns_text, toy_shots, write

INGEST = textwrap.dedent("""
    import sys
    from libs_pipeline.spectra.ingest import ingest_campaign
    print(ingest_campaign(sys.argv[1], sys.argv[2], name="shared").status)
""")


def _batch(folder, prefix, n_files, seed=None):
    folder.mkdir()
    lines = ["file,sample"]
    seed = (100 if prefix == "B" else 0) if seed is None else seed
    for i in range(n_files):
        wl, x = toy_shots(seed=seed + i)
        write(folder / f"{prefix}{i}.txt", shot_columns_text(wl, x))
        lines.append(f"{prefix}{i}.txt,{prefix}{i}")
    (folder / "m.csv").write_text("\n".join(lines) + "\n")
    return folder / "m.csv"


def test_two_processes_ingesting_at_once_lose_nothing(tmp_path, store_root):
    store = store_root
    manifests = [_batch(tmp_path / "a", "A", 3), _batch(tmp_path / "b", "B", 3)]
    procs = [subprocess.Popen([sys.executable, "-c", INGEST, str(m), str(store)], stdout=subprocess.PIPE, text=True)
             for m in manifests]
    outputs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0] and outputs == ["created", "created"]
    s = SpectraStore(store)
    versions = s.versions("shared")
    assert len(versions) == 2 and s.latest("shared") == versions[-1]
    assert s.manifest("shared")["parent"] == versions[0]  # the second ingest built on the first
    ds = s.open("shared").load()
    assert sorted(set(ds["sample_id"].values.tolist())) == ["A0", "A1", "A2", "B0", "B1", "B2"]
    assert ds.sizes["spectrum"] == 24 and ds["spectrum"].values.tolist() == list(range(24))
    assert len(s.manifest("shared")["sources"]) == 6


def test_threads_ingesting_at_once_keep_a_linear_history(tmp_path, store_root):
    manifests = [_batch(tmp_path / f"t{i}", f"T{i}x", 2, seed=10 * i) for i in range(4)]
    results: list = [None] * len(manifests)

    def run(i):
        results[i] = ingest_campaign(manifests[i], store_root, name="shared")

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(manifests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert [r.status for r in results] == ["created"] * 4, [[str(f) for f in r.rejected] for r in results if r]
    s = SpectraStore(store_root)
    versions = s.versions("shared")
    assert len(versions) == 4 and s.latest("shared") == versions[-1]
    assert [s.manifest("shared", v)["parent"] for v in versions] == [None, *versions[:-1]]  # no update lost
    for v in versions:  # every committed version is whole
        m = s.manifest("shared", v)
        ds = s.open("shared", v).load()
        assert ds.sizes["spectrum"] == m["counts"]["n_spectra"] and np.isfinite(ds["intensity"].values).all()
    ds = s.open("shared").load()
    assert sorted(set(ds["sample_id"].values.tolist())) == sorted(f"T{i}x{j}" for i in range(4) for j in range(2))
    assert ds.sizes["spectrum"] == 32 and ds["spectrum"].values.tolist() == list(range(32))


def test_lock_timeout_gives_a_clear_message_and_changes_nothing(tmp_path, store_root):
    store = store_root
    manifest = _batch(tmp_path / "a", "A", 1)
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from libs_pipeline.spectra.store import SpectraStore
            with SpectraStore({str(store)!r}).lock("shared"):
                print("locked", flush=True)
                sys.stdin.readline()
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        result = ingest_campaign(manifest, store, name="shared", options=IngestOptions(lock_timeout_s=0.3))
    finally:
        holder.communicate("\n", timeout=60)
    assert result.status == "rejected" and result.version is None
    (f,) = result.rejected
    assert f.rule == "dataset_locked" and "locked by another ingest; gave up after 0.3 s" in f.reason
    assert SpectraStore(store).latest("shared") is None
    # once the lock is free the same ingest lands
    again = ingest_campaign(manifest, store, name="shared")
    assert again.status == "created" and np.isfinite(SpectraStore(store).open("shared")["intensity"].values).all()


def _competing_commit(monkeypatch, tmp_path, store_root, n_conflicts):
    """Make another writer commit a new version of 'shared' while each of the first ``n_conflicts`` builds runs
    (the competitor's versions are built beforehand, by ingesting batches B and C into a scratch store)."""
    import libs_pipeline.spectra.ingest as ingest_module

    scratch = SpectraStore(tmp_path / "scratch")
    built = [ingest_campaign(_batch(tmp_path / f"c{i}", "BC"[i], 1, seed=300 + i), scratch.root, name="shared").version
             for i in range(n_conflicts)]
    real_commit = ingest_module._commit
    calls = []

    def commit(store, name, batch, *args, **kwargs):
        if len(calls) < len(built):
            v = built[len(calls)]
            m = scratch.manifest(name, v)
            calls.append(SpectraStore(store_root).write_version(name, scratch.open(name, v), m["sources"], m["reader"],
                                                                extra={"samples": m["samples"]}))
        return real_commit(store, name, batch, *args, **kwargs)

    monkeypatch.setattr(ingest_module, "_commit", commit)
    return calls


def test_an_ingest_that_loses_the_race_rebuilds_on_the_winner(tmp_path, store_root, monkeypatch):
    manifest = _batch(tmp_path / "a", "A", 2)
    competitors = _competing_commit(monkeypatch, tmp_path, store_root, 1)
    result = ingest_campaign(manifest, store_root, name="shared")
    assert result.status == "created" and result.parent == competitors[0]
    s = SpectraStore(store_root)
    assert s.versions("shared") == [competitors[0], result.version]
    assert s.manifest("shared")["parent"] == competitors[0]
    ds = s.open("shared").load()  # the winner's spectra and ours
    assert sorted(set(ds["sample_id"].values.tolist())) == ["A0", "A1", "B0"]


def test_an_ingest_that_always_loses_gives_up_cleanly(tmp_path, store_root, monkeypatch):
    import libs_pipeline.spectra.ingest as ingest_module

    monkeypatch.setattr(ingest_module, "MAX_COMMIT_ATTEMPTS", 2)
    manifest = _batch(tmp_path / "a", "A", 2)
    competitors = _competing_commit(monkeypatch, tmp_path, store_root, 2)
    result = ingest_campaign(manifest, store_root, name="shared")
    assert result.status == "rejected" and result.accepted == [] and result.batch_sha256 == []
    (f,) = result.rejected
    assert f.rule == "dataset_busy" and f"LATEST moved from {competitors[0]} to {competitors[1]}" in f.reason
    assert "gave up after 2 attempts" in f.reason
    assert result.version == competitors[1] and SpectraStore(store_root).versions("shared") == competitors
