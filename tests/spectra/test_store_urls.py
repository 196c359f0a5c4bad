"""The measured-spectra side of a store whose root is a URL: ingest lands versions, raw archive, quarantine,
incoming manifests and reports under the root (local and S3) and nowhere else; credentials are never stored;
bad roots fail clearly and write nothing on the local disk."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from libs_pipeline.spectra.ingest import ingest_campaign
from libs_pipeline.spectra.location import open_location
from libs_pipeline.spectra.store import SpectraStore, open_spectra
from libs_pipeline.spectra.unknown_samples import ingest_new_files
from libs_pipeline.testing.campaign_files import (
    add_sample,
    shot_file_values,
    write_campaign,
)
from libs_pipeline.testing.instrument_files import shot_columns_text, toy_shots, write
from libs_pipeline.testing.services import free_port

CLI = [str(Path(sys.executable).with_name("libs-pipeline"))]
FAKE_ENV_SECRET = "env-secret-Zq81nVx0-must-not-be-stored"
FAKE_OPTION_SECRET = "option-secret-Kp44wQ2m-must-not-be-stored"


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _all_objects(root) -> dict[str, bytes]:
    """Every object under the root's bucket (or folder), by path."""
    location = open_location(root)
    base = location.path.split("/", 1)[0] if not location.is_local else location.path
    location.fs.invalidate_cache(base)
    return {str(k): location.fs.cat_file(k) for k in location.fs.find(base)}


def test_ingest_lands_versions_archive_quarantine_and_reports_under_the_root(tmp_path, store_root):
    manifest = write_campaign(tmp_path / "campaign")
    (manifest.parent / "bad.txt").write_text("300,1\n301,x\n")
    add_sample(manifest, "B", "bad.txt")
    result = ingest_campaign(manifest, store_root)
    root = open_location(store_root)
    assert result.status == "partial" and result.rejected_files == ["bad.txt"] and len(result.accepted) == 3
    # the version: same id as the same campaign ingested into a fresh local store (content addressed)
    reference = ingest_campaign(manifest, tmp_path / "reference")
    assert result.version == reference.version
    assert result.uri == f"{root.url}/spectra/toy/{result.version}.zarr"
    ds, expected = open_spectra(result.uri).load(), SpectraStore(tmp_path / "reference").open("toy").load()
    np.testing.assert_array_equal(ds["intensity"].values, expected["intensity"].values)
    assert ds["sample_id"].values.tolist() == expected["sample_id"].values.tolist()
    _, x = shot_file_values(manifest.parent / "S00.txt")
    np.testing.assert_allclose(ds["intensity"].values[:4], x, rtol=0, atol=1e-6)
    # raw archive: every accepted file and the manifest, byte for byte
    for name in ("S00.txt", "S01.txt", "S02.txt", "manifest.yaml"):
        path = manifest.parent / name
        assert (root / "raw" / _sha(path)).read_bytes() == path.read_bytes()
    # quarantine: the rejected file and the manifest, plus a report naming the line
    quarantine = root / "quarantine" / result.run_id
    assert result.quarantine_report.url == f"{quarantine.url}/report.json"
    report = result.quarantine_report.read_json()
    entry = next(e for e in report["rejections"] if e["file"] == "bad.txt")
    assert entry["rule"] == "non_numeric" and entry["line"] == 2
    assert (quarantine / entry["quarantined_as"]).read_bytes() == b"300,1\n301,x\n"
    assert sorted(quarantine.children()) == ["000_bad.txt", "001_manifest.yaml", "report.json"]
    # the run report and summary
    assert result.report_path.url == f"{root.url}/reports/{result.run_id}/ingest_report.json"
    run_report = result.report_path.read_json()
    assert run_report["version"] == result.version and run_report["quarantine_report"] == result.quarantine_report.url
    assert "# Ingest `toy`: partial" in (result.report_path.parent / "ingest_summary.md").read_text()
    assert sorted(root.children()) == ["quarantine", "raw", "reports", "spectra"]


def test_raw_files_without_a_manifest_land_with_an_incoming_record(tmp_path, store_root):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    wl, x = toy_shots()
    write(inbox / "rock-7.txt", shot_columns_text(wl, x))
    (inbox / "broken.txt").write_text("not a spectrum\n")
    batch = ingest_new_files([inbox], store_root, name="batch")
    root = open_location(store_root)
    result = batch.result
    assert result.status == "partial" and result.accepted == ["rock-7.txt"] and result.rejected_files == ["broken.txt"]
    record = root / "incoming" / result.run_id / "manifest.yaml"
    doc = yaml.safe_load(record.read_text())
    assert [s["sample_id"] for s in doc["samples"]] == ["broken", "rock-7"]
    assert (root / "raw" / hashlib.sha256(record.read_bytes()).hexdigest()).read_bytes() == record.read_bytes()
    assert (root / "raw" / _sha(inbox / "rock-7.txt")).read_bytes() == (inbox / "rock-7.txt").read_bytes()
    quarantine = root / "quarantine" / result.run_id
    assert (quarantine / "000_broken.txt").read_bytes() == b"not a spectrum\n"
    assert (quarantine / "001_manifest.yaml").read_bytes() == record.read_bytes()
    assert batch.spectra["sample_id"].values.tolist() == ["rock-7"] * 4
    np.testing.assert_allclose(batch.spectra["intensity"].values, x, atol=1e-2)


def test_no_credentials_in_any_stored_object(tmp_path, s3_root, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", FAKE_ENV_SECRET)
    root = open_location(s3_root, storage_options={"key": "testing", "secret": FAKE_OPTION_SECRET})
    manifest = write_campaign(tmp_path / "campaign")
    (manifest.parent / "bad.txt").write_text("")
    add_sample(manifest, "B", "bad.txt")
    result = ingest_campaign(manifest, root)
    assert result.status == "partial"
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    write(inbox / "u.txt", shot_columns_text(*toy_shots(seed=5)))
    assert ingest_new_files([inbox], root, name="unknown").result.status == "created"
    objects = _all_objects(s3_root)
    kinds = {k.split("/")[2] for k in objects}
    assert kinds == {"spectra", "raw", "quarantine", "reports", "incoming"}
    for key, data in objects.items():
        for secret in (FAKE_ENV_SECRET, FAKE_OPTION_SECRET):
            assert secret.encode() not in data, f"{key} contains a credential"
    assert FAKE_OPTION_SECRET not in repr(root) and FAKE_OPTION_SECRET not in root.url


def _cli(args, cwd, env=None):
    return subprocess.run([*CLI, *args], cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True, check=False,
                          timeout=180)


def test_cli_ingest_into_s3_end_to_end(tmp_path, s3_root):
    manifest = write_campaign(tmp_path / "campaign")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    run = _cli(["ingest", str(manifest), "--root", s3_root, "--name", "cli_toy"], cwd)
    assert run.returncode == 0, run.stderr
    version = SpectraStore(s3_root).latest("cli_toy")
    assert f"version {version}  status created  dataset cli_toy" in run.stdout
    assert f"report: {s3_root}/reports/" in run.stdout
    listed = _cli(["spectra", "list", "--root", s3_root], cwd)
    assert listed.returncode == 0 and "cli_toy" in listed.stdout and version in listed.stdout
    shown = _cli(["spectra", "show", "cli_toy", "--root", s3_root], cwd)
    assert shown.returncode == 0  # rich wraps the long line: compare without whitespace
    assert f"uri{s3_root}/spectra/cli_toy/{version}.zarr" in "".join(shown.stdout.split())
    assert list(cwd.iterdir()) == []  # nothing on the local disk


@pytest.mark.parametrize(("root", "expected"), [
    ("s3:/bucket/store", "'s3:/bucket/store': malformed URL"),
    ("nosuch://x", "store root nosuch://x: store root scheme 'nosuch' is not known"),
    ("s3://no-endpoint-bucket/store", "s3://no-endpoint-bucket/store: cannot reach the object store"),
])
def test_bad_roots_fail_clearly_and_write_nothing_locally(tmp_path, root, expected):
    manifest = write_campaign(tmp_path / "campaign")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    env = {"AWS_ENDPOINT_URL_S3": dead, "AWS_ENDPOINT_URL": dead, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y"}
    for command in (["ingest", str(manifest), "--root", root], ["spectra", "list", "--root", root]):
        run = _cli(command, cwd, env)
        assert run.returncode == 2, (run.stdout, run.stderr)
        assert expected in run.stderr and "Traceback" not in run.stderr
    assert list(cwd.iterdir()) == [] and not (tmp_path / "campaign" / "s3:").exists()
    assert sorted(p.name for p in (tmp_path / "campaign").iterdir()) == ["S00.txt", "S01.txt", "S02.txt", "manifest.yaml"]


def test_a_version_has_the_same_bytes_on_s3_and_on_the_local_disk(tmp_path, s3_root):
    from libs_pipeline.testing import toy_campaign
    from libs_pipeline.testing.stores import tree_bytes

    ds = toy_campaign(n_samples=4, n_shots=8, n_channels=64)
    local, remote = SpectraStore(tmp_path / "local"), SpectraStore(s3_root)
    v_local = local.write_version("toy", ds, [{"file": "x"}], "dataset", chunk_spectra=8)
    v_remote = remote.write_version("toy", ds, [{"file": "x"}], "dataset", chunk_spectra=8)
    assert v_local == v_remote
    local_bytes, remote_bytes = tree_bytes(local.uri("toy")), tree_bytes(remote.uri("toy"))
    assert sorted(remote_bytes) == sorted(local_bytes) and "intensity/c/3/0" in remote_bytes
    assert remote_bytes == local_bytes
