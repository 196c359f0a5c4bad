"""The typed synthesis and training sections of RecalibrationConfig: validation, what reaches the subflows, and a
config hash unchanged from the plain-dict sections (so existing champions are not retrained for nothing)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from libs_pipeline.config import RecalibrationConfig, RecalibrationSynthesis, RecalibrationTraining, SynthesisConfig
from libs_pipeline.recalibration import TrainingSplit, synthesis_request, training_config
from libs_pipeline.registry import recalibration_config_hash

#: Hashes computed with the plain-dict sections, before they were typed (the typing kept them), then re-pinned once
#: when trust_fraction and the trust noise part (TrustConfig.noise_part) changed what a recalibration produces,
#: and again for the ensemble-spread part (TrustConfig.spread_part) and the challenger's ensemble (networks).
HASHES = [
    ({}, "dbb9f52cef9984da"),
    ({"training": {"max_steps": 5}}, "d876d0b45e9cb41e"),
    ({"synthesis": {"per_sample": 0}}, "e3ccefd772967632"),
    ({"training": {"augmentation": False, "max_steps": 10, "block_channels": [2], "val_fraction": 0.34}},
     "48685a4003fe5f20"),
    ({"synthesis": {"per_sample": 16, "chunk_size": 64, "n_workers": 1},
      "training": {"stem_channels": 2, "dense_units": 8}}, "d695f243902da99f"),
    ({"synthesis": {"per_sample": 50, "detector": "pooled", "max_shape_modes": 0},
      "candidates": ["univariate", "pls"]}, "18c3a05c9f0481f3"),
]


@pytest.mark.parametrize("fields, expected", HASHES)
def test_config_hash_is_the_one_of_the_dict_sections(fields, expected):
    assert recalibration_config_hash(RecalibrationConfig(dataset="toy", **fields)) == expected


def test_sections_are_typed_and_validated():
    config = RecalibrationConfig(dataset="toy", synthesis={"per_sample": 0}, training={"max_steps": 7})
    assert isinstance(config.synthesis, RecalibrationSynthesis) and isinstance(config.training, RecalibrationTraining)
    assert (config.synthesis.per_sample, config.synthesis.chunk_size, config.synthesis.n_workers) == (0, 1024, 2)
    assert (config.training.max_steps, config.training.batch_size, config.training.augmentation) == (7, 32, None)
    assert RecalibrationConfig(dataset="toy").section_overrides("synthesis") == {"per_sample": 200, "chunk_size": 1024}
    assert config.section_overrides("training") == {"max_steps": 7}
    schema = RecalibrationConfig.model_json_schema()  # what the Prefect UI renders as a form
    assert "max_steps" in schema["$defs"]["RecalibrationTraining"]["properties"]
    assert "seed" not in schema["$defs"]["RecalibrationSynthesis"]["properties"]
    for bad, message in [
        ({"training": {"seed": 1}}, r"training: \['seed'\] are set by the recalibration flow"),
        ({"synthesis": {"out_uri": "x"}}, r"synthesis: \['out_uri'\] are set by the recalibration flow"),
        ({"training": {"max_step": 1}}, "training.max_step\n  Extra inputs are not permitted"),
        ({"synthesis": {"per_sample": -1}}, "synthesis.per_sample\n  Input should be greater than or equal to 0"),
        ({"training": {"batch_size": 1}}, "training.batch_size\n  Input should be greater than or equal to 2"),
    ]:
        with pytest.raises(ValidationError, match=message):
            RecalibrationConfig(dataset="toy", **bad)


def test_what_the_subflows_get(tmp_path):
    split = TrainingSplit(root=str(tmp_path), spectra={"name": "toy", "version": "v", "uri": "u"},
                          train={"name": "toy.train", "version": "t", "uri": "/store#toy.train@t"}, analyte="Cu",
                          units="wt%", heldout=["S01"], train_samples=["S00", "S02"])
    config = RecalibrationConfig(root=str(tmp_path), dataset="toy", seed=4,
                                 synthesis={"per_sample": 8, "detector": "pooled"}, training={"max_steps": 3})
    assert synthesis_request(config) == {"per_sample": 8, "chunk_size": 1024, "n_workers": 2, "detector": "pooled"}
    assert SynthesisConfig(dataset_uri="u", out_uri=str(tmp_path), **synthesis_request(config)).detector == "pooled"
    trained = training_config(config, split, "/s/x.zarr")
    assert (trained.max_steps, trained.seed, trained.analyte, trained.progress_bar) == (3, 4, "Cu", False)
    assert trained.augmentation is True and trained.synthetic_uris == ["/s/x.zarr"]
    assert trained.measured_uris == ["/store#toy.train@t"] and trained.batch_size == 32
    shown = RecalibrationConfig(root=str(tmp_path), dataset="toy", training={"progress_bar": True,
                                                                             "augmentation": False})
    plain = training_config(shown, split, "/s/x.zarr")
    assert plain.progress_bar is True and plain.augmentation is False and plain.synthetic_uris == []
