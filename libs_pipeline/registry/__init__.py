"""Versioned model artifacts, manifests and aliases (champion/challenger), and the promotion rules.

Never imports torch: the registry resolves and verifies model directories; ``libs_pipeline.models`` loads them.
"""

from libs_pipeline.registry.model_registry import (
    CorruptModelError,
    ModelRegistry,
    ModelVersion,
    RegistryError,
)
from libs_pipeline.registry.promotion import Decision, RetrainDecision, decide_promotion, decide_retraining
from libs_pipeline.registry.recalibration import recalibration_config_hash, training_manifest

__all__ = [
    "CorruptModelError",
    "Decision",
    "ModelRegistry",
    "ModelVersion",
    "RegistryError",
    "RetrainDecision",
    "decide_promotion",
    "decide_retraining",
    "recalibration_config_hash",
    "training_manifest",
]
