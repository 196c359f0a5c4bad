"""The predict flow: wires resolve -> predict -> publish; tables on disk and table artifacts in Prefect."""

from __future__ import annotations

import pandas as pd
import pytest

from libs_pipeline.config import PredictionConfig
from libs_pipeline.testing.trust_fakes import build_toy_model_dir, toy


@pytest.fixture(scope="module")
def model_and_spectra(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict-flow")
    model_dir = build_toy_model_dir(root / "toy-cu")
    spectra = root / "fresh.nc"
    toy("F", n_samples=3, n_shots=6, seed=31, cu_range=(0.5, 4.0)).to_netcdf(spectra)
    return model_dir, spectra, root


def test_predict_flow_writes_tables_and_artifacts(prefect_harness, model_and_spectra):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.predict import predict_flow

    model_dir, spectra, root = model_and_spectra
    out = root / "pred.csv"
    summary = predict_flow(PredictionConfig(model=str(model_dir), spectra=str(spectra), out=str(out), mc_samples=3, name="toy-cu"))
    assert summary["n_spectra"] == 18 and summary["n_samples"] == 3
    assert summary["spectra_table"] == str(out) and summary["samples_table"] == str(root / "pred.samples.csv")
    table = pd.read_csv(out)
    assert len(table) == 18 and int(table["flag"].sum()) == summary["spectra_flagged"]
    assert len(summary["artifacts"]) == 2

    async def artifacts():
        async with get_client() as client:
            return await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["predictions-toy-cu-samples"]))
            )

    import asyncio

    found = asyncio.run(artifacts())
    assert found and found[0].type == "table"
    assert "FS00" in str(found[0].data)


def test_predict_flow_fails_on_missing_model(prefect_harness, model_and_spectra):
    from flows.predict import predict_flow

    _, spectra, root = model_and_spectra
    with pytest.raises(FileNotFoundError, match="--root ROOT --name NAME"):
        predict_flow(PredictionConfig(model=str(root / "no-such-model"), spectra=str(spectra), out=str(root / "x.csv")))
