"""Figures are written as real, non-empty PNGs; the markdown report and artifact rows are complete and JSON-safe."""

from __future__ import annotations

import json

import numpy as np
import pytest
from matplotlib.image import imread

from libs_pipeline.evaluation.metrics import evaluate_methods
from libs_pipeline.evaluation.plots import parity_plot, residual_plot
from libs_pipeline.evaluation.report import (
    SUMMARY_COLUMNS,
    artifact_key,
    is_artifact_key,
    markdown_report,
    markdown_table,
    table_rows,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def predictions():
    rng = np.random.default_rng(np.random.SeedSequence(0))
    sids = np.repeat(["a", "b", "c", "d"], 5)
    y = np.repeat([0.5, 1.0, 2.0, 4.0], 5)
    preds = {"univariate": y + rng.normal(0, 0.1, y.size), "pls": y * 1.05 + rng.normal(0, 0.05, y.size)}
    return preds, y, sids


@pytest.mark.parametrize("plot", [parity_plot, residual_plot])
def test_plots_are_non_empty_pngs(tmp_path, predictions, plot):
    preds, y, sids = predictions
    path = plot(preds, y, sids, tmp_path / "sub" / "fig.png", units="wt%")
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 5000
    image = imread(path)
    assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 300
    assert image[..., :3].std() > 0.05  # not a blank canvas
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["fig.png"]  # no temp files left


def test_plot_rejects_empty_and_inconsistent_input(tmp_path, predictions):
    _, y, sids = predictions
    with pytest.raises(ValueError, match="at least one method"):
        parity_plot({}, y, sids, tmp_path / "x.png")
    with pytest.raises(ValueError, match="y_true has 20 values but y_pred has 3"):
        residual_plot({"m": np.ones(3)}, y, sids, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_markdown_report_and_rows(predictions):
    preds, y, sids = predictions
    table = evaluate_methods(preds, y, sids)
    text = markdown_report(
        table, "Evaluation r1", "wt%", figures={"parity plot": "parity.png"}, facts={"analyte": "Cu"}, notes=["n1"]
    )
    assert text.startswith("# Evaluation r1\n")
    assert "- **analyte**: Cu" in text and "![parity plot](parity.png)" in text and "- n1" in text
    header = next(line for line in text.splitlines() if line.startswith("| method"))
    assert header == "| method | " + " | ".join(SUMMARY_COLUMNS) + " |"
    rows = [line for line in text.splitlines() if line.startswith("| univariate") or line.startswith("| pls")]
    assert len(rows) == 2
    rmsep = f"{table.loc['pls', 'sample_rmsep']:.4g}"
    assert rmsep in rows[1]

    records = table_rows(table)
    json.dumps(records, allow_nan=False)  # NaN became None
    assert [r["method"] for r in records] == ["univariate", "pls"]
    assert records[0]["n_spectra"] == 20 and isinstance(records[0]["n_spectra"], int)
    assert set(records[0]) == {"method", *table.columns}


def test_nan_cells():
    import pandas as pd

    table = pd.DataFrame({"sample_r2": [float("nan")]}, index=pd.Index(["m"], name="method"))
    assert table_rows(table)[0]["sample_r2"] is None
    assert "| m | n/a |" in markdown_table(table)
    with pytest.raises(ValueError, match="table is empty"):
        markdown_table(table.iloc[:0])


def test_artifact_keys():
    assert artifact_key("Evaluation metrics", "evaluate-20260101T000000Z_x") == "evaluation-metrics-evaluate-20260101t000000z-x"
    assert is_artifact_key("evaluation-report") and not is_artifact_key("Bad_Key") and not is_artifact_key("a--b")
    with pytest.raises(ValueError, match="empty"):
        artifact_key("__")
