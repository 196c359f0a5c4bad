"""By-sample splits and chunk-wise batches over measured + synthetic zarr stores."""

from __future__ import annotations

import numpy as np
import pytest

from libs_pipeline.features.lines import default_lines
from libs_pipeline.models.data_loading import (
    SourceRows,
    SpectraBatches,
    fit_transforms,
    plan_split,
)
from libs_pipeline.models.tasks import build_taskset
from libs_pipeline.spectra.dataset import select_samples
from libs_pipeline.spectra.sample_splits import split_by_sample
from libs_pipeline.testing import toy_campaign


def _parents(src: SourceRows) -> set[str]:
    via_strings = {p for joined in np.unique(src.sample_ids) for p in str(joined).split("|")}
    assert src.samples_used() == via_strings  # the O(groups) form agrees with the per-row strings
    return via_strings


def test_split_by_sample_is_seeded_stratified_and_keeps_the_extremes_in_training():
    labels = {f"S{i:02d}": float(i) for i in range(10)}
    train, val = split_by_sample(labels, 0.3, seed=3)
    assert (train, val) == split_by_sample(labels, 0.3, seed=3)
    assert len(val) == 3 and not set(train) & set(val) and set(train) | set(val) == set(labels)
    assert "S00" in train and "S09" in train
    # one validation sample per label tertile of the inner samples
    ranks = sorted(int(s[1:]) for s in val)
    assert ranks[0] <= 3 and 3 <= ranks[1] <= 6 and ranks[2] >= 6
    draws = {tuple(split_by_sample(labels, 0.3, seed=s)[1]) for s in range(8)}
    assert len(draws) > 1
    assert split_by_sample(labels, 0.0, seed=0) == (sorted(labels), [])
    with pytest.raises(ValueError, match="cannot split 1 sample"):
        split_by_sample({"A": 1.0}, 0.2, seed=0)
    with pytest.raises(ValueError, match=r"val_fraction must be in \[0, 1\)"):
        split_by_sample(labels, 1.0, seed=0)


def test_no_sample_on_both_sides_with_synthetic_and_interpolated_spectra(toy_zarr, synthetic_uri):
    plan = plan_split([toy_zarr, synthetic_uri], "Cu", val_fraction=0.34, seed=1, use_synthetic=True)
    train_parents = set().union(*(_parents(s) for s in plan.train))
    val_parents = set().union(*(_parents(s) for s in plan.val))
    assert val_parents == set(plan.val_samples) and len(plan.val_samples) == 2
    assert train_parents == set(plan.train_samples)
    assert not train_parents & val_parents
    # validation holds measured spectra only: 10 shots per validation sample
    assert plan.n_val == 20 and not any(s.synthetic.any() for s in plan.val)
    # synthetic rows: 12 per training sample + 12 per interpolated sample whose both parents train
    syn = sum(int(s.synthetic.sum()) for s in plan.train)
    ordered = sorted(plan.train_samples + plan.val_samples)
    pairs_inside = sum(1 for a, b in zip(ordered[:-1], ordered[1:]) if a in plan.train_samples and b in plan.train_samples)
    assert syn == 12 * (len(plan.train_samples) + pairs_inside)
    assert plan.excluded["synthetic_not_train_sample"] == 132 - syn


def test_augmentation_off_drops_synthetic_rows(toy_zarr, synthetic_uri):
    plan = plan_split([toy_zarr, synthetic_uri], "Cu", val_fraction=0.2, seed=0, use_synthetic=False)
    assert not any(s.synthetic.any() for s in plan.train)
    assert plan.excluded["synthetic_disabled"] > 0


def test_explicit_validation_sources_must_not_share_samples(toy_ds):
    train = select_samples(toy_ds, ["S00", "S01", "S02", "S03"])
    val = select_samples(toy_ds, ["S03", "S04"])
    with pytest.raises(ValueError, match=r"samples \['S03'\] are in both"):
        plan_split([train], "Cu", 0.2, 0, val_sources=[val])
    plan = plan_split([train], "Cu", 0.2, 0, val_sources=[select_samples(toy_ds, ["S04", "S05"])])
    assert plan.val_samples == ["S04", "S05"] and plan.n_train == 40 and plan.n_val == 20


def test_bad_sources_fail_clearly(toy_ds, tmp_path):
    other_grid = toy_campaign(n_samples=2, n_channels=256)
    with pytest.raises(ValueError, match=r"<dataset #1>: wavelength grid \(256 channels"):
        plan_split([toy_ds, other_grid], "Cu", 0.2, 0)
    with pytest.raises(ValueError, match=r"no label variable 'Na' \(labels present: \['Cu'\]\)"):
        plan_split([toy_ds], "Na", 0.2, 0)
    with pytest.raises((FileNotFoundError, ValueError), match="missing.zarr"):
        plan_split([str(tmp_path / "missing.zarr")], "Cu", 0.2, 0)
    unlabelled = toy_ds.assign(Cu=toy_ds["Cu"] * np.nan)
    with pytest.raises(ValueError, match="no measured spectrum with a finite 'Cu' label"):
        plan_split([unlabelled], "Cu", 0.2, 0)


def test_batches_read_one_chunk_at_a_time_and_cover_every_row_once(toy_zarr, synthetic_uri, monkeypatch):
    plan = plan_split([toy_zarr, synthetic_uri], "Cu", val_fraction=0.2, seed=0)
    tasks = build_taskset("Cu", default_lines("Cu"), True, True, [s.ds for s in plan.train])
    normaliser, scaler = fit_transforms(plan, tasks, "total", "global")
    sizes: list[int] = []
    original = SourceRows.read

    def spy(self, positions):
        rows = self.rows[positions]
        sizes.append(int(rows.max() - rows.min() + 1))
        assert np.unique(rows // self.chunk).size == 1  # never more than one storage chunk per read
        return original(self, positions)

    monkeypatch.setattr(SourceRows, "read", spy)
    batches = SpectraBatches(plan.train, normaliser, scaler, batch_size=8, shuffle=True, seed=5, buffer_chunks=2)
    first = list(batches)
    assert max(sizes) <= 16
    n_rows = sum(x.shape[0] for x, _ in first)
    assert n_rows == plan.n_train
    assert all(x.shape[0] == 8 for x, _ in first[:-1])
    assert first[0][0].shape[1] == 512 and first[0][1].shape[1] == len(tasks.names) == 3
    # targets of each row travel with it: the standardised label is a function of the sample's label
    labels = np.concatenate([y[:, 0].numpy() for _, y in first])
    assert np.unique(np.round(labels, 4)).size <= len(plan.train_samples) + 4
    again = list(batches)
    for (xa, ya), (xb, yb) in zip(first, again):
        assert np.array_equal(xa.numpy(), xb.numpy()) and np.array_equal(ya.numpy(), yb.numpy(), equal_nan=True)
    batches.set_epoch(1)
    shuffled = list(batches)
    assert not np.array_equal(first[0][0].numpy(), shuffled[0][0].numpy())
    in_order = list(SpectraBatches(plan.train, normaliser, scaler, batch_size=64, shuffle=False))
    assert sum(x.shape[0] for x, _ in in_order) == plan.n_train


def test_training_rows_exclude_nan_labels(toy_ds):
    ds = toy_ds.copy(deep=True)
    values = ds["Cu"].values.copy()
    values[:3] = np.nan  # three shots of S00 unlabelled
    ds["Cu"] = ("spectrum", values, ds["Cu"].attrs)
    plan = plan_split([ds], "Cu", 0.0, 0)
    assert plan.n_train == 57 and plan.excluded["nan_label"] == 3 and plan.val == []
