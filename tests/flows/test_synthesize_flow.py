"""The synthesize flow on a 2-worker LocalCluster (real processes, 1 thread each) reached through its address."""

from __future__ import annotations

from pathlib import Path

import pytest

from libs_pipeline.config import SynthesisConfig

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _artifact(key):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        return client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))


def _files(root):
    root = Path(root)
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_flow_on_two_worker_cluster_by_address(prefect_harness, toy_zarr, tmp_path):
    from distributed import Client, LocalCluster

    from flows.synthesize import synthesize
    from libs_pipeline.synth.generate import generate_synthetic

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        result = synthesize(SynthesisConfig(
            dataset_uri=toy_zarr, out_uri=str(tmp_path / "out"), per_sample=200, seed=4, chunk_size=100,
            dask_address=cluster.scheduler_address,
        ))
        with Client(cluster.scheduler_address) as client:
            # the chunks ran as Dask tasks on both worker processes
            def synth_tasks(dask_worker):
                return len({str(entry[0]) for entry in dask_worker.state.log if str(entry[0]).startswith("synth-")})

            per_worker = client.run(synth_tasks)
            assert len(per_worker) == 2 and all(n > 0 for n in per_worker.values()), per_worker
            assert sum(per_worker.values()) == 2  # 1200 spectra / 100 per chunk = 12 chunks, 8 per shard
    uri = Path(result["uri"])
    assert uri.parent == tmp_path / "out" / "synthetic" / "toy" and uri.is_dir()
    assert result["realism"]["passed"] is True
    assert Path(result["realism"]["figure"]).stat().st_size > 20_000
    markdown = _artifact(f"synthetic-realism-{uri.stem}")
    assert len(markdown) == 1 and markdown[0].type == "markdown" and "PASSED" in markdown[0].data
    assert "![synthetic vs measured spectra](data:image/png;base64," in markdown[0].data  # shows in the UI
    from flows.artifacts import artifact_key

    (progress,) = _artifact(artifact_key("synthesis-progress", uri.stem))
    assert progress.type == "progress" and progress.data == 100.0
    table = _artifact(f"synthetic-realism-table-{uri.stem}")
    assert len(table) == 1 and "S05" in str(table[0].data)
    # the cluster run wrote exactly the bytes of an in-process run
    serial = generate_synthetic(toy_zarr, tmp_path / "serial", 200, seed=4, chunk_size=100)
    assert _files(serial) == _files(uri)


def test_flow_reuses_a_finished_store_and_validates_parameters(prefect_harness, toy_zarr, tmp_path):
    from flows.synthesize import synthesize
    from libs_pipeline.synth.generate import generate_synthetic

    uri = generate_synthetic(toy_zarr, tmp_path, 20, seed=1, chunk_size=64)
    result = synthesize(SynthesisConfig(dataset_uri=toy_zarr, out_uri=str(tmp_path), per_sample=20, seed=1,
                                        chunk_size=64, realism=False))
    assert result == {"uri": uri, "id": Path(uri).stem, "realism": None}
    with pytest.raises(Exception, match="per_sample"):  # a dict parameter is validated into the config
        synthesize({"dataset_uri": toy_zarr, "out_uri": str(tmp_path), "per_sample": 0})
    with pytest.raises(Exception, match="detector"):
        synthesize({"dataset_uri": toy_zarr, "out_uri": str(tmp_path), "per_sample": 5, "detector": "shared"})


def test_synthesize_parameters_are_a_typed_form_in_the_ui():
    """The deployment's parameter schema (what the Prefect UI renders) types every option; no loose dict."""
    from prefect.utilities.callables import parameter_schema

    from flows.recalibrate import recalibrate
    from flows.synthesize import synthesize

    schema = parameter_schema(synthesize.fn).model_dump()
    assert list(schema["properties"]) == ["config"] and schema["required"] == ["config"]
    options = schema["definitions"]["SynthesisConfig"]["properties"]
    assert options["detector"]["enum"] == ["per_sample", "pooled"] and options["shard_chunks"]["type"] == "integer"
    recal = parameter_schema(recalibrate.fn).model_dump()["definitions"]
    assert {"RecalibrationConfig", "RecalibrationSynthesis", "RecalibrationTraining"} <= set(recal)
    assert recal["RecalibrationTraining"]["properties"]["max_steps"]["type"] == "integer"
