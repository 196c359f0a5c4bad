"""The demo's trust summary: RMSEP of the flagged and of the kept predictions of a fresh batch."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from flows.demo import score_batch_task
from libs_pipeline.spectra.store import SpectraStore
from libs_pipeline.testing import toy_campaign


def test_fresh_batch_rmsep_is_split_by_the_flag(tmp_path):
    ds = toy_campaign(n_samples=2, n_shots=3, n_channels=32)
    version = SpectraStore(tmp_path).write_version("batch", ds, sources=[{}], reader="dataset")
    truth = np.asarray(ds["Cu"].values, dtype=float)
    errors = np.array([0.1, -0.1, 0.1, 2.0, -2.0, 0.1])
    flags = np.array([False, False, False, True, True, False])
    table = pd.DataFrame({"sample_id": np.asarray(ds["sample_id"].values).astype(str), "analyte": "Cu",
                          "concentration": truth + errors, "flag": flags})
    path = tmp_path / "pred.csv"
    table.to_csv(path, index=False)
    out = score_batch_task.fn(str(tmp_path), "batch", version, str(path))
    assert out["rmsep_flagged"] == pytest.approx(2.0) and out["rmsep_kept"] == pytest.approx(0.1)
    assert out["n_flagged"] == 2 and out["n_kept"] == 4
    assert "n_wrong" not in out and out["tolerance"] is None
    errors[5] = 1.5  # a wrong prediction kept silently beside the two flagged ones
    table["concentration"] = truth + errors
    table.to_csv(path, index=False)
    out = score_batch_task.fn(str(tmp_path), "batch", version, str(path), tolerance=1.0)
    assert (out["n_wrong"], out["n_wrong_flagged"], out["n_wrong_kept"]) == (3, 2, 1)
    assert out["wrong_flagged_fraction"] == pytest.approx(2 / 3) and out["tolerance"] == 1.0
    table.iloc[::-1].to_csv(path, index=False)  # rows that do not follow the dataset are refused
    with pytest.raises(ValueError, match="rows do not follow the spectra of batch@"):
        score_batch_task.fn(str(tmp_path), "batch", version, str(path))
