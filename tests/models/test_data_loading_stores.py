"""Training data from sample-indexed synthetic stores: the integer index and table drive the split, batches stream
from an S3 root exactly as from a local root, and a measured store with string ids still works beside them."""

from __future__ import annotations

import numpy as np
import pytest

from libs_pipeline.features.lines import default_lines
from libs_pipeline.models import train_model
from libs_pipeline.models.data_loading import (
    SpectraBatches,
    fit_transforms,
    open_source,
    plan_split,
    sample_groups,
    source_fingerprint,
    synthetic_mask,
)
from libs_pipeline.models.tasks import build_taskset
from libs_pipeline.synth.generate import generate_synthetic, prepare_synthesis


def _epoch(plan, seed=3):
    tasks = build_taskset("Cu", default_lines("Cu"), multitask=True, plasma=False, datasets=[s.ds for s in plan.train])
    normaliser, scaler = fit_transforms(plan, tasks, "total")
    batches = SpectraBatches(plan.train, normaliser, scaler, batch_size=16, shuffle=True, seed=seed, buffer_chunks=2)
    batches.set_epoch(1)
    return [(x.numpy(), y.numpy()) for x, y in batches]


def test_groups_come_from_the_integer_index_and_table(toy_zarr, tmp_path):
    uri = generate_synthetic(toy_zarr, tmp_path, 12, seed=0, chunk_size=16, interpolate_between=1,
                             interpolation_analyte="Cu")
    _, ds = open_source(uri)
    groups = sample_groups(ds)
    assert groups.table and groups.codes.dtype == np.int8 and groups.codes.size == 11 * 12
    mixed = list(groups.sample_ids).index("S00~S01@0.5000")
    assert len(groups.parents) == 11 and groups.parents[mixed] == ("S00", "S01") and groups.synthetic.all()
    assert groups.parents[list(groups.sample_ids).index("S03")] == ("S03",)
    assert synthetic_mask(ds).all()
    # the measured store (string sample ids) is grouped by np.unique: one group per sample
    _, measured = open_source(toy_zarr)
    mgroups = sample_groups(measured)
    assert not mgroups.table and list(mgroups.sample_ids) == [f"S{i:02d}" for i in range(6)]
    np.testing.assert_array_equal(mgroups.sample_ids[mgroups.codes], measured["sample_id"].values.astype(str))
    # the fingerprint covers the index and the table: another seed draws the same index, a different plan does not
    same_layout = generate_synthetic(toy_zarr, tmp_path / "b", 12, seed=1, chunk_size=16, interpolate_between=1,
                                     interpolation_analyte="Cu")
    other = generate_synthetic(toy_zarr, tmp_path / "c", 13, seed=0, chunk_size=16, interpolate_between=1,
                               interpolation_analyte="Cu")
    fp = source_fingerprint(uri, ds)
    assert fp["n_synthetic"] == 132 and fp["labels"] == ["Cu"]
    assert source_fingerprint(same_layout, open_source(same_layout)[1])["fingerprint"] == fp["fingerprint"]
    assert source_fingerprint(other, open_source(other)[1])["fingerprint"] != fp["fingerprint"]


def test_an_unpublished_store_is_refused_as_a_training_source(toy_zarr, tmp_path):
    job = prepare_synthesis(toy_zarr, tmp_path, 5, seed=0, chunk_size=8)
    with pytest.raises(ValueError, match="training source .*incomplete store \\(no manifest"):
        open_source(job.store_url)


def test_training_streams_from_s3_exactly_as_from_a_local_root(s3_root, toy_zarr, tmp_path, fast_config):
    options = dict(seed=0, chunk_size=16, interpolate_between=1, interpolation_analyte="Cu")
    s3_uri = generate_synthetic(toy_zarr, s3_root, 12, **options)
    local_uri = generate_synthetic(toy_zarr, tmp_path, 12, **options)
    assert s3_uri.startswith("s3://")
    s3_plan = plan_split([toy_zarr, s3_uri], "Cu", val_fraction=0.34, seed=1)
    local_plan = plan_split([toy_zarr, local_uri], "Cu", val_fraction=0.34, seed=1)
    assert (s3_plan.train_samples, s3_plan.val_samples) == (local_plan.train_samples, local_plan.val_samples)
    assert s3_plan.n_train == local_plan.n_train and s3_plan.excluded == local_plan.excluded
    s3_batches, local_batches = _epoch(s3_plan), _epoch(local_plan)
    assert len(s3_batches) == len(local_batches) > 3
    for (xs, ys), (xl, yl) in zip(s3_batches, local_batches):
        np.testing.assert_array_equal(xs, xl)
        np.testing.assert_array_equal(ys, yl)
    config = fast_config.model_copy(update={"max_steps": 10, "eval_every": 5})
    s3_model = train_model([toy_zarr, s3_uri], config)
    local_model = train_model([toy_zarr, local_uri], config)
    for (name, a), (_, b) in zip(s3_model.network.state_dict().items(), local_model.network.state_dict().items()):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=name)


def _indexed(ds):
    """A measured dataset in the sample-indexed layout: integer index + table, no string per spectrum."""
    import xarray as xr

    names, codes = np.unique(ds["sample_id"].values.astype(str), return_inverse=True)
    first = np.unique(codes, return_index=True)[1]
    cu = np.asarray(ds["Cu"].values)[first]
    out = ds.drop_vars(["sample_id", "Cu"]).assign(
        sample_index=("spectrum", codes.astype(np.int8)),
        sample__Cu=xr.Variable(("sample",), cu, {"row_attrs": dict(ds["Cu"].attrs)}),
    )
    return out.assign_coords(sample=("sample", names))


def test_planning_uses_no_string_per_row_for_indexed_sources(toy_ds, toy_zarr, tmp_path, monkeypatch):
    from libs_pipeline.models import data_loading
    from libs_pipeline.spectra.sample_table import expand_sample_table

    synthetic = generate_synthetic(toy_zarr, tmp_path, 12, seed=0, chunk_size=16)
    measured = expand_sample_table(_indexed(toy_ds))
    reference = plan_split([toy_ds, synthetic], "Cu", val_fraction=0.34, seed=1)

    def no_per_row_strings(ds):
        raise AssertionError("per-row sample id strings built")

    monkeypatch.setattr(data_loading, "spectrum_sample_ids", no_per_row_strings)
    plan = plan_split([measured, synthetic], "Cu", val_fraction=0.34, seed=1)
    assert (plan.train_samples, plan.val_samples) == (reference.train_samples, reference.val_samples)
    assert [s.rows.tolist() for s in plan.train] == [s.rows.tolist() for s in reference.train]
    assert all(s.row_ids is None and s.codes is not None for s in plan.train + plan.val)
    fingerprint = source_fingerprint("measured", measured)
    assert fingerprint["n_spectra"] == 60 and fingerprint["n_synthetic"] == 0
