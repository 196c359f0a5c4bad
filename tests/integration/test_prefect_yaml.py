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
        signature = inspect.signature(flow.fn).parameters
        unknown = set(d.parameters) - set(signature)
        assert not unknown, f"{d.entrypoint}: parameters {unknown} are not arguments of the flow"
        assert list(signature) == ["config"], f"{d.entrypoint}: takes {list(signature)}, not one config model"
        if d.parameters.get("config"):
            config_model = signature["config"].annotation
            if isinstance(config_model, str):  # postponed annotations: the name in the flow's module
                config_model = getattr(importlib.import_module(flow.fn.__module__), config_model)
            extra = set(d.parameters.get("config") or {}) - set(config_model.model_fields)
            assert not extra, f"{d.entrypoint}: config keys {extra} are not fields of {config_model.__name__}"
    assert set(flows) == {"ingest", "synthesize", "train", "evaluate", "predict", "recalibrate", "predict-drop-folder"}
    flow, rec = flows["recalibrate"]
    assert (rec.concurrency_limit.limit, rec.concurrency_limit.collision_strategy) == (1, "ENQUEUE")
    assert [(s.cron, s.timezone) for s in rec.schedules] == [("30 2 * * *", "UTC")]
    assert all(d.work_pool.job_variables == {"env": {"PREFECT_LOGGING_EXTRA_LOGGERS": "libs_pipeline"}}
               for d in model.deployments)
    # the triggers validate as `prefect deploy` validates them, and watch the event ingest emits
    from prefect.cli.deploy._triggers import _initialize_deployment_triggers
    from prefect.client.schemas.objects import ConcurrencyLimitStrategy

    from flows.events import SPECTRA_VERSION_CREATED, spectra_resource

    assert ConcurrencyLimitStrategy(rec.concurrency_limit.collision_strategy) == ConcurrencyLimitStrategy.ENQUEUE
    (trigger,) = _initialize_deployment_triggers("nightly", [dict(t) for t in rec.triggers])
    assert trigger.name == "recalibrate-on-new-spectra-version" and trigger.enabled
    assert trigger.expect == {SPECTRA_VERSION_CREATED}
    assert trigger.match.root == {"prefect.resource.id": spectra_resource(rec.parameters["config"]["dataset"])}
    assert (trigger.posture, trigger.threshold) == ("Reactive", 1)
    assert all(not d.triggers for d in model.deployments if d is not rec)
    from libs_pipeline.config import RecalibrationConfig

    assert RecalibrationConfig(**rec.parameters["config"]).dataset == "virtual-aluminium"


def test_serve_builds_the_yaml_deployments_with_overrides(tmp_path):
    serve = load_serve()
    (dep,) = serve.build_deployments(root=str(tmp_path), dataset="toy", only=["recalibrate"])
    assert (dep.name, dep.flow_name) == ("nightly", "recalibrate")
    assert dep.entrypoint == "flows.recalibrate.recalibrate"
    assert dep.parameters == {"config": {"root": str(tmp_path), "dataset": "toy"}}
    assert dep.concurrency_limit == 1 and dep.concurrency_options.collision_strategy == "ENQUEUE"
    assert len(dep.schedules) == 1 and dep.schedules[0].schedule.cron == "30 2 * * *"
    (trigger,) = dep.triggers
    assert trigger.match.root == {"prefect.resource.id": "libs-pipeline.spectra.toy"}  # follows --dataset
    assert trigger.expect == {"libs-pipeline.spectra.version-created"}
    from uuid import uuid4

    deployment_id = uuid4()
    trigger.set_deployment_id(deployment_id)  # what serve does once the deployment exists
    automation = trigger.as_automation()
    assert automation.actions[0].deployment_id == deployment_id
    assert automation.name == "recalibrate-on-new-spectra-version"
    assert [a.type for a in automation.actions] == ["run-deployment"]
    assert dep.schedules[0].schedule.timezone == "UTC"
    (unscheduled,) = serve.build_deployments(only=["recalibrate"], schedules=False)
    assert not unscheduled.schedules
    assert unscheduled.parameters == {"config": {"root": "runs", "dataset": "virtual-aluminium"}}
    assert unscheduled.triggers[0].match.root == {"prefect.resource.id": "libs-pipeline.spectra.virtual-aluminium"}
    (tuned,) = serve.build_deployments(root=str(tmp_path), only=["recalibrate"],
                                       recalibration_config={"training": {"max_steps": 10}, "seed": 3})
    assert tuned.parameters == {"config": {"root": str(tmp_path), "dataset": "virtual-aluminium",
                                           "training": {"max_steps": 10}, "seed": 3}}
    everything = serve.build_deployments(root=str(tmp_path), dataset="toy")
    by_flow = {d.flow_name: d for d in everything}
    assert by_flow["predict"].parameters == {"config": {"root": str(tmp_path), "name": "toy", "model": "champion"}}
    assert by_flow["predict-drop-folder"].parameters == {
        "config": {"folder": "inbox", "root": str(tmp_path), "name": "toy", "model": "champion"}}
    assert by_flow["synthesize"].parameters == {"config": {"out_uri": str(tmp_path), "per_sample": 200}}
    assert by_flow["ingest"].parameters == {"config": {"root": str(tmp_path)}}
    assert by_flow["evaluate"].parameters == {"config": {"root": str(tmp_path)}}
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
