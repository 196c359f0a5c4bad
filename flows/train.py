"""Train flow: TrainingConfig (data URIs inside) -> model directory (weights, normalisation, config, data versions, metrics).

Thin: ``libs_pipeline.models.training_run.run_training`` does the work; tasks pass only the config and paths.
"""

from __future__ import annotations

import json
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from flows.artifacts import ProgressArtifact, artifact_key
from libs_pipeline.config import TrainingConfig
from libs_pipeline.models.training_run import load_training_config, model_directory, run_training


@task(name="train-model")
def train_task(config: TrainingConfig) -> str:
    """Train and save (live progress artifact ``training-progress-<dataset>-<model>``); returns the model directory."""
    model_dir = str(config.model_dir)
    progress = ProgressArtifact(progress_key(config, model_dir), f"training steps of {model_dir}")
    path = run_training(config, progress=progress)
    progress.update(100.0, f"trained: {path}")
    get_run_logger().info("trained %s model -> %s", config.analyte, path)
    return str(path)


def dataset_name(uri: str) -> str:
    """The dataset a spectra URI names: ``<name>`` of ``<root>#<name>@<version>``, else the file's stem."""
    if "#" in uri:
        return uri.partition("#")[2].partition("@")[0]
    return Path(uri.rstrip("/")).stem


def _key(kind: str, config: TrainingConfig, model_dir: str) -> str:
    datasets = [dataset_name(u) for u in config.measured_uris] or ["model"]
    return artifact_key(kind, datasets[0], Path(model_dir).name)


def summary_key(config: TrainingConfig, model_dir: str) -> str:
    """``training-summary-<dataset>-<model>``: one key per training dataset and model directory."""
    return _key("training-summary", config, model_dir)


def progress_key(config: TrainingConfig, model_dir: str) -> str:
    """``training-progress-<dataset>-<model>``."""
    return _key("training-progress", config, model_dir)


@task(name="publish-training-summary", retries=2, retry_delay_seconds=2)
def publish_task(model_dir: str, key: str = "training-summary") -> str:
    """A markdown artifact with the tasks, split and validation metrics read from ``metrics.json``."""
    metrics = json.loads((Path(model_dir) / "metrics.json").read_text(encoding="utf-8"))
    rows = "\n".join(
        f"| {task} | {v['rmse']:.4g} | {v['bias']:.4g} | {v['n']} |" for task, v in metrics.get("validation", {}).items()
    )
    markdown = (
        f"# Model {Path(model_dir).name}\n\n"
        f"- directory: `{model_dir}`\n- tasks: {', '.join(metrics['task_names'])}\n"
        f"- training samples: {len(metrics['train_samples'])} ({metrics['n_train_spectra']} spectra, "
        f"{metrics['n_train_synthetic']} synthetic); validation samples: {metrics['val_samples']}\n"
        f"- steps: {metrics['steps']} (best {metrics['best_step']}), {metrics['seconds']} s\n\n"
        "| task | val RMSE | val bias | n |\n|---|---|---|---|\n" + rows + "\n"
    )
    return str(create_markdown_artifact(markdown=markdown, key=key, description=f"model {model_dir}"))


@flow(name="train", log_prints=True)
def train(config: TrainingConfig | str) -> str:
    """Train a model from ``config`` (a TrainingConfig, or the path of one as YAML/JSON); returns the model directory
    (``config.model_dir``, else a new one under ``config.output_dir``)."""
    if not isinstance(config, TrainingConfig):
        config = load_training_config(config)
    config = config.model_copy(update={"model_dir": str(model_directory(config))})  # the name is fixed once
    path = train_task(config)
    publish_task(path, summary_key(config, path))
    return path


if __name__ == "__main__":  # pragma: no cover - manual run
    import sys

    print(train(sys.argv[1]))
