"""Two ingests into the same dataset from two real processes: nothing lost, LATEST consistent; lock timeout."""

from __future__ import annotations

import subprocess
import sys
import textwrap

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


def _batch(folder, prefix, n_files):
    folder.mkdir()
    lines = ["file,sample"]
    for i in range(n_files):
        wl, x = toy_shots(seed=i + (100 if prefix == "B" else 0))
        write(folder / f"{prefix}{i}.txt", shot_columns_text(wl, x))
        lines.append(f"{prefix}{i}.txt,{prefix}{i}")
    (folder / "m.csv").write_text("\n".join(lines) + "\n")
    return folder / "m.csv"


def test_two_processes_ingesting_at_once_lose_nothing(tmp_path):
    store = tmp_path / "store"
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


def test_lock_timeout_gives_a_clear_message_and_changes_nothing(tmp_path):
    store = tmp_path / "store"
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
