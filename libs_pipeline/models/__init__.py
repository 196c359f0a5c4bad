"""Torch-only: multitask 1-D CNN, losses, training loop, zarr-backed data loading.

Public API: ``train_model``, ``TrainedModel`` (``predict``, ``predict_with_uncertainty``, ``task_names``,
``wavelength``, ``lines``), ``save_model``, ``load_model``, ``ModelLoadError``, ``select_step_budget``
(inner leave-one-sample-out choice of ``max_steps`` for tiny campaigns).
"""

from libs_pipeline.models.model_io import ModelLoadError, load_model, save_model
from libs_pipeline.models.step_budget import select_step_budget
from libs_pipeline.models.training import TrainedModel, train_model

__all__ = ["ModelLoadError", "TrainedModel", "load_model", "save_model", "select_step_budget", "train_model"]
