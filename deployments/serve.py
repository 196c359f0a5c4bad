"""Serve every deployment of ``deployments/prefect.yaml`` from one process (single machine, no work pool/worker).

    python deployments/serve.py [--root DIR] [--dataset NAME] [--only recalibrate ...] [--no-schedules] [--limit N]
                                [--recalibration-config FILE]

The deployments (names, parameters, schedules, concurrency limits and collision strategy, event triggers) are read
from prefect.yaml, so serving and ``prefect deploy`` never disagree; ``--root``/``--dataset`` replace the store
root and dataset in the parameters and the dataset in the triggers' resource ids; ``--recalibration-config``
merges a YAML mapping of RecalibrationConfig fields into recalibrate's ``config`` parameter.
Needs PREFECT_API_URL pointing at a running server (``prefect server start``).
"""

from __future__ import annotations

import argparse
import importlib
import os
from pathlib import Path
from typing import Any

import yaml

# The library's loggers (libs_pipeline.*) reach the flow-run logs in the UI; must be set before prefect is imported.
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "libs_pipeline")

PREFECT_YAML = Path(__file__).resolve().with_name("prefect.yaml")
#: Parameter names that hold the store root (replaced by --root), at any depth.
ROOT_KEYS = ("root", "store", "registry_root", "out_uri")


def read_deployments(path: str | Path = PREFECT_YAML) -> list[dict]:
    """The ``deployments`` list of prefect.yaml; clear error when it is missing or malformed."""
    spec = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    deployments = (spec or {}).get("deployments")
    if not isinstance(deployments, list) or not deployments:
        raise ValueError(f"{path}: no 'deployments' list")
    for i, d in enumerate(deployments):
        for key in ("name", "entrypoint"):
            if not d.get(key):
                raise ValueError(f"{path}: deployments[{i}] has no {key!r}")
    return deployments


def load_entrypoint(entrypoint: str) -> Any:
    """The flow object of ``flows/x.py:func`` (imported as the installed module ``flows.x``)."""
    file_part, _, attr = entrypoint.partition(":")
    module = file_part.removesuffix(".py").replace("/", ".")
    return getattr(importlib.import_module(module), attr)


def override_parameters(parameters: Any, root: str | None, dataset: str | None) -> Any:
    """Copy of ``parameters`` with every ROOT_KEYS value set to ``root`` and every ``dataset`` value set to
    ``dataset``, at any depth (None leaves values as they are)."""
    if isinstance(parameters, dict):
        out = {}
        for key, value in parameters.items():
            if key in ROOT_KEYS and root is not None and isinstance(value, str):
                out[key] = root
            elif key == "dataset" and dataset is not None:
                out[key] = dataset
            else:
                out[key] = override_parameters(value, root, dataset)
        return out
    return parameters


SPECTRA_RESOURCE_PREFIX = "libs-pipeline.spectra."


def concurrency(spec: Any) -> Any:
    """prefect.yaml's ``concurrency_limit`` (an int, or ``{limit, collision_strategy, grace_period_seconds}``)
    as ``to_deployment`` takes it."""
    if not isinstance(spec, dict):
        return spec
    from prefect.client.schemas.objects import ConcurrencyLimitConfig

    return ConcurrencyLimitConfig(**spec)


def build_triggers(specs: list[dict] | None, dataset: str | None) -> list:
    """prefect.yaml's ``triggers`` as DeploymentEventTriggers; with ``dataset``, a trigger on a spectra resource
    (``libs-pipeline.spectra.<name>``) watches ``libs-pipeline.spectra.<dataset>`` instead."""
    from prefect.events import DeploymentEventTrigger

    triggers = []
    for spec in specs or []:
        spec = dict(spec)
        if spec.get("type", "event") != "event":
            raise ValueError(f"trigger {spec.get('name')!r}: serve.py handles event triggers only")
        match = dict(spec.get("match") or {})
        resource = match.get("prefect.resource.id")
        if dataset is not None and isinstance(resource, str) and resource.startswith(SPECTRA_RESOURCE_PREFIX):
            match["prefect.resource.id"] = SPECTRA_RESOURCE_PREFIX + dataset
        triggers.append(DeploymentEventTrigger(**{**spec, "match": match}))
    return triggers


def build_deployments(
    root: str | None = None,
    dataset: str | None = None,
    only: list[str] | None = None,
    schedules: bool = True,
    path: str | Path = PREFECT_YAML,
    recalibration_config: dict | None = None,
) -> list:
    """RunnerDeployments for ``flow.to_deployment`` + ``prefect.serve`` (``only``: flow names to keep)."""
    from prefect.deployments.runner import EntrypointType
    from prefect.schedules import Cron

    selected = []
    for d in read_deployments(path):
        flow = load_entrypoint(d["entrypoint"])
        if only and flow.name not in only:
            continue
        cron = [
            Cron(s["cron"], timezone=s.get("timezone"), active=bool(s.get("active", True)))
            for s in (d.get("schedules") or [])
        ]
        params = override_parameters(d.get("parameters") or {}, root, dataset)
        if dataset is not None and flow.name in ("predict", "predict-drop-folder") and "name" in params.get("config", {}):
            params["config"] = {**params["config"], "name": dataset}  # the model is named after its dataset
        if recalibration_config and flow.name == "recalibrate":
            params["config"] = {**params.get("config", {}), **recalibration_config}
        selected.append(
            flow.to_deployment(
                name=d["name"],
                description=d.get("description"),
                tags=list(d.get("tags") or []),
                parameters=params,
                schedules=cron if schedules else None,
                concurrency_limit=concurrency(d.get("concurrency_limit")),
                triggers=build_triggers(d.get("triggers"), dataset),
                entrypoint_type=EntrypointType.MODULE_PATH,
            )
        )
    if only:
        found = {dep.flow_name for dep in selected}
        missing = sorted(set(only) - found)
        if missing:
            raise ValueError(f"--only {missing}: no such flow in {path}")
    return selected


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", help="store root for every deployment (default: as in prefect.yaml, 'runs')")
    parser.add_argument("--dataset", help="dataset / model name of recalibrate and predict")
    parser.add_argument("--only", nargs="+", metavar="FLOW", help="serve only these flows (e.g. recalibrate)")
    parser.add_argument("--no-schedules", action="store_true", help="serve without the cron schedules")
    parser.add_argument("--limit", type=int, default=None, help="most flow runs at the same time")
    parser.add_argument("--recalibration-config", metavar="FILE",
                        help="YAML mapping of RecalibrationConfig fields merged into recalibrate's config parameter")
    args = parser.parse_args(argv)

    from prefect import serve

    root = str(Path(args.root).resolve()) if args.root else None
    extra = None
    if args.recalibration_config:
        extra = yaml.safe_load(Path(args.recalibration_config).read_text(encoding="utf-8")) or {}
        if not isinstance(extra, dict):
            parser.error(f"{args.recalibration_config}: expected a mapping of RecalibrationConfig fields")
    deployments = build_deployments(root, args.dataset, args.only, schedules=not args.no_schedules,
                                    recalibration_config=extra)
    serve(*deployments, limit=args.limit)


if __name__ == "__main__":
    main()
