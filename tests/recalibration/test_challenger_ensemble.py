"""The held-out challenger as a deep ensemble: one TrainingConfig per network (seeds differ, the split does not)
and the trained members joined into one servable directory."""

from __future__ import annotations

import json

import pytest

from libs_pipeline.candidates.ensemble import ENSEMBLE_FILE
from libs_pipeline.config import TrainingConfig
from libs_pipeline.recalibration.challenger_training import assemble_challenger, member_configs


def test_member_configs_vary_the_seed_and_share_the_split(tmp_path):
    training = TrainingConfig(analyte="Cu", seed=7, max_steps=5)
    [single] = member_configs(training, str(tmp_path / "challenger"), 1)
    assert single.model_dir == str(tmp_path / "challenger") and single.seed == 7 and single.split_seed is None
    members = member_configs(training, str(tmp_path / "challenger"), 3)
    assert [m.seed for m in members] == [7, 8, 9]
    assert [m.split_seed for m in members] == [7, 7, 7]
    assert [m.model_dir for m in members] == [str(tmp_path / "challenger" / f"member-{k}") for k in range(3)]
    assert all(m.max_steps == 5 for m in members)
    with pytest.raises(ValueError, match="networks must be >= 1, got 0"):
        member_configs(training, str(tmp_path), 0)


def _member(path, train, val, step):
    path.mkdir(parents=True)
    (path / "metrics.json").write_text(json.dumps({
        "train_samples": train, "val_samples": val, "steps": step + 20, "epochs": 2, "best_step": step,
        "n_train_spectra": 40, "n_train_synthetic": 400, "n_val_spectra": 10, "seconds": 1.5,
        "task_names": ["Cu", "Cu I 324.75:area"],
    }))
    return str(path)


def test_assemble_challenger_writes_one_ensemble_with_the_shared_split(tmp_path):
    out = tmp_path / "challenger"
    dirs = [_member(out / f"member-{k}", ["a", "b", "c"], ["d"], 100 + k) for k in range(3)]
    assert assemble_challenger(out, dirs) == str(out)
    assert json.loads((out / ENSEMBLE_FILE).read_text())["members"] == ["member-0", "member-1", "member-2"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_networks"] == 3 and metrics["best_step"] == [100, 101, 102]
    assert metrics["train_samples"] == ["a", "b", "c"] and metrics["val_samples"] == ["d"]
    assert metrics["seconds"] == pytest.approx(4.5)
    # one network needs no ensemble
    assert assemble_challenger(tmp_path / "x", [dirs[0]]) == dirs[0]


def test_assemble_challenger_refuses_members_of_different_splits_or_places(tmp_path):
    out = tmp_path / "challenger"
    dirs = [_member(out / "member-0", ["a", "b"], ["c"], 1), _member(out / "member-1", ["a", "c"], ["b"], 1)]
    with pytest.raises(ValueError, match="trained with different train_samples"):
        assemble_challenger(out, dirs)
    assert not (out / ENSEMBLE_FILE).exists()
    with pytest.raises(ValueError, match="ensemble members must be saved as"):
        assemble_challenger(out, list(reversed(dirs)))
