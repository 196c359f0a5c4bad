"""deployments/prefect.yaml and deployments/serve.py without a server: the spec validates, entrypoints load,
parameters fit the flows, serve builds the same deployments."""

from __future__ import annotations

import importlib.util
import inspect
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PREFECT_YAML = REPO / "deployments" / "prefect.yaml"


def load_serve():
    spec = importlib.util.spec_from_file_location("libs_pipeline_serve", REPO / "deployments" / "serve.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_prefect_yaml_validates_and_entrypoints_load():
    from prefect.cli.deploy._models import PrefectYamlModel

    raw = yaml.safe_load(PREFECT_YAML.read_text())
    model = PrefectYamlModel.model_validate(raw)
    serve = load_serve()
    flows = {}
    for d in model.deployments:
        assert d.work_pool is not None and d.work_pool.name == "libs-pipeline"
        assert (REPO / d.entrypoint.split(":")[0]).is_file(), d.entrypoint
        flow = serve.load_entrypoint(d.entrypoint)
        flows[flow.name] = (flow, d)
        unknown = set(d.parameters) - set(inspect.signature(flow.fn).parameters)
        assert not unknown, f"{d.entrypoint}: parameters {unknown} are not arguments of the flow"
    assert set(flows) == {"ingest", "synthesize", "train", "evaluate", "predict", "recalibrate", "predict-drop-folder"}
    flow, rec = flows["recalibrate"]
    assert rec.concurrency_limit == 1
    assert [(s.cron, s.timezone) for s in rec.schedules] == [("30 2 * * *", "UTC")]
    from libs_pipeline.config import RecalibrationConfig

    assert RecalibrationConfig(**rec.parameters["config"]).dataset == "virtual-aluminium"


def test_serve_builds_the_yaml_deployments_with_overrides(tmp_path):
    serve = load_serve()
    (dep,) = serve.build_deployments(root=str(tmp_path), dataset="toy", only=["recalibrate"])
    assert (dep.name, dep.flow_name) == ("nightly", "recalibrate")
    assert dep.entrypoint == "flows.recalibrate.recalibrate"
    assert dep.parameters == {"config": {"root": str(tmp_path), "dataset": "toy"}}
    assert dep.concurrency_limit == 1
    assert len(dep.schedules) == 1 and dep.schedules[0].schedule.cron == "30 2 * * *"
    assert dep.schedules[0].schedule.timezone == "UTC"
    (unscheduled,) = serve.build_deployments(only=["recalibrate"], schedules=False)
    assert not unscheduled.schedules
    assert unscheduled.parameters == {"config": {"root": "runs", "dataset": "virtual-aluminium"}}
    everything = serve.build_deployments(root=str(tmp_path), dataset="toy")
    by_flow = {d.flow_name: d for d in everything}
    assert by_flow["predict"].parameters == {"registry_root": str(tmp_path), "name": "toy", "model": "champion"}
    assert by_flow["synthesize"].parameters == {"out_uri": str(tmp_path), "per_sample": 200}
    assert by_flow["ingest"].parameters == {"store": str(tmp_path)}
    assert all(d.concurrency_limit is None for f, d in by_flow.items() if f != "recalibrate")
    with pytest.raises(ValueError, match=r"--only \['nope'\]: no such flow"):
        serve.build_deployments(only=["nope"])


def test_serve_rejects_malformed_yaml(tmp_path):
    serve = load_serve()
    bad = tmp_path / "prefect.yaml"
    bad.write_text("deployments:\n  - name: x\n")
    with pytest.raises(ValueError, match=r"deployments\[0\] has no 'entrypoint'"):
        serve.read_deployments(bad)
    bad.write_text("name: nothing\n")
    with pytest.raises(ValueError, match="no 'deployments' list"):
        serve.read_deployments(bad)
