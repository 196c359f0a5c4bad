"""The ingest flow: wires ingest_campaign -> publish; validation report as a table artifact, summary as markdown."""

from __future__ import annotations

import asyncio

import pytest

from libs_pipeline.config import IngestConfig, IngestOptions
from libs_pipeline.testing.campaign_files import write_campaign


def _artifacts(flow_run_id) -> dict:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    async def read():
        async with get_client() as client:
            return await client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
            )

    return {a.key: a for a in asyncio.run(read())}


def test_ingest_flow_creates_a_version_and_publishes_the_report(prefect_harness, recorded_events, tmp_path):
    from flows.events import SPECTRA_VERSION_CREATED
    from flows.ingest import ingest, report_key, summary_key
    from libs_pipeline.spectra.store import SpectraStore

    manifest = write_campaign(tmp_path / "c", n_samples=2, n_shots=3, n_channels=32)
    (tmp_path / "c" / "empty.txt").write_text("")
    with manifest.open("a") as fh:
        fh.write("- sample_id: E\n  file: empty.txt\n  labels: {Cu: 1.0}\n")
    state = ingest(IngestConfig(manifest=str(manifest), root=str(tmp_path / "store"), options=IngestOptions(saturation_level=1e9)),
                   return_state=True)
    assert state.is_completed() and state.name == "Partial"  # a partial ingest is visible in the UI
    out = state.result()
    store = SpectraStore(tmp_path / "store")
    assert out["status"] == "partial" and out["version"] == store.latest("toy") and out["uri"] == store.uri("toy")
    assert set(out) == {"name", "status", "version", "parent", "uri", "report_path", "quarantine_report", "changed",
                        "n_spectra", "n_new_spectra", "n_files_accepted", "n_files_rejected"}
    assert (out["n_spectra"], out["n_new_spectra"], out["n_files_accepted"], out["n_files_rejected"]) == (6, 6, 2, 1)
    (event,) = [e for e in recorded_events() if e.event == SPECTRA_VERSION_CREATED]
    assert event.resource.id == "libs-pipeline.spectra.toy" and event.resource.name == "toy"
    assert event.payload == {
        "dataset": "toy", "version": out["version"], "parent": None, "store": str((tmp_path / "store").resolve()),
        "uri": out["uri"], "status": "partial", "n_spectra": 6, "n_new_spectra": 6, "n_files_accepted": 2,
        "n_files_rejected": 1,
    }
    again = ingest(IngestConfig(manifest=str(manifest), root=str(tmp_path / "store"), options=IngestOptions(saturation_level=1e9)),
                   return_state=True)
    assert again.result()["changed"] is False  # nothing new: no second event
    assert len([e for e in recorded_events() if e.event == SPECTRA_VERSION_CREATED]) == 1
    found = _artifacts(state.state_details.flow_run_id)
    REPORT_KEY, SUMMARY_KEY = report_key("toy"), summary_key("toy")
    assert (REPORT_KEY, SUMMARY_KEY) == ("ingest-validation-report-toy", "ingest-summary-toy")
    assert found[REPORT_KEY].type == "table" and found[SUMMARY_KEY].type == "markdown"
    assert "empty_file" in str(found[REPORT_KEY].data) and "empty.txt" in str(found[REPORT_KEY].data)
    assert "partial" in str(found[SUMMARY_KEY].data)


def test_ingest_flow_fails_when_every_file_is_rejected(prefect_harness, tmp_path):
    from flows.ingest import IngestRejectedError, ingest, report_key

    folder = tmp_path / "c"
    folder.mkdir()
    (folder / "bad.txt").write_bytes(b"\x00\x01garbage")
    (folder / "m.yaml").write_text("units: ppm\nsamples:\n  - {sample_id: A, file: bad.txt, labels: {Na: 10}}\n")
    state = ingest(IngestConfig(manifest=str(folder / "m.yaml"), root=str(tmp_path / "store")), return_state=True)
    assert state.is_failed()
    with pytest.raises(IngestRejectedError, match="every new file was rejected"):
        state.result()
    assert "binary_file" in str(_artifacts(state.state_details.flow_run_id)[report_key("m")].data)
    allowed = ingest(IngestConfig(manifest=str(folder / "m.yaml"), root=str(tmp_path / "store"), fail_if_rejected=False))
    assert allowed["status"] == "rejected" and allowed["version"] is None


def test_ingest_flow_into_an_s3_root_publishes_the_report_from_s3(prefect_harness, tmp_path, s3_root, monkeypatch):
    from flows.ingest import ingest, report_key
    from libs_pipeline.spectra.location import open_location
    from libs_pipeline.spectra.store import SpectraStore

    manifest = write_campaign(tmp_path / "c", n_samples=2, n_shots=3, n_channels=32)
    (tmp_path / "c" / "empty.txt").write_text("")
    with manifest.open("a") as fh:
        fh.write("- sample_id: E\n  file: empty.txt\n  labels: {Cu: 1.0}\n")
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")  # a store root mistaken for a local path would land here
    state = ingest(IngestConfig(manifest=str(manifest), root=s3_root), return_state=True)
    assert state.is_completed() and state.name == "Partial"
    out = state.result()
    store = SpectraStore(s3_root)
    assert out["version"] == store.latest("toy") and out["uri"] == f"{s3_root}/spectra/toy/{out['version']}.zarr"
    assert out["report_path"].startswith(f"{s3_root}/reports/") and out["quarantine_report"].startswith(f"{s3_root}/quarantine/")
    assert open_location(out["quarantine_report"]).read_json()["rejections"][0]["rule"] == "empty_file"
    found = _artifacts(state.state_details.flow_run_id)
    assert "empty_file" in str(found[report_key("toy")].data)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c", "cwd"] and list((tmp_path / "cwd").iterdir()) == []
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["S00.txt", "S01.txt", "empty.txt", "manifest.yaml"]
