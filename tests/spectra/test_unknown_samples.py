"""Unknown samples: manifests without labels, raw files without a manifest, the batch's spectra, exit codes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from libs_pipeline.cli import app
from libs_pipeline.spectra.ingest import ingest_campaign
from libs_pipeline.spectra.store import SpectraStore
from libs_pipeline.spectra.unknown_samples import ingest_new_files, is_campaign_manifest, spectra_files

from libs_pipeline.testing.instrument_files import shot_columns_text, spectrum_rows_text, toy_shots, write

OREAS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "oreas_na"
WL, X = toy_shots()
WL2, X2 = toy_shots(sample=1)


def test_csv_manifest_without_labels_ingests_unknown_samples(tmp_path):
    folder = tmp_path / "lab"
    folder.mkdir()
    write(folder / "u1.txt", shot_columns_text(WL, X))
    write(folder / "u2.txt", shot_columns_text(WL, X2))
    (folder / "m.csv").write_text("file,sample\nu1.txt,U1\nu2.txt,U2\n")
    result = ingest_campaign(folder / "m.csv", tmp_path / "store")
    assert result.status == "created" and result.rejected == []
    store = SpectraStore(tmp_path / "store")
    samples = store.samples("m")
    assert samples["sample_id"].tolist() == ["U1", "U2"] and samples["certified"].tolist() == [False, False]
    ds = store.open("m").load()
    np.testing.assert_allclose(ds["intensity"].values, np.concatenate([X, X2]), atol=1e-2)


def test_mixed_manifest_keeps_labels_of_certified_samples_and_nan_for_unknown(tmp_path):
    folder = tmp_path / "lab"
    folder.mkdir()
    write(folder / "ref.txt", shot_columns_text(WL, X))
    write(folder / "unk.txt", shot_columns_text(WL, X2))
    (folder / "m.yaml").write_text(yaml.safe_dump({"name": "mix", "units": "wt%", "samples": [
        {"sample_id": "REF", "file": "ref.txt", "labels": {"Cu": 2.5}}, {"sample_id": "UNK", "file": "unk.txt"}]}))
    result = ingest_campaign(folder / "m.yaml", tmp_path / "store")
    assert result.status == "created"
    store = SpectraStore(tmp_path / "store")
    ds = store.open("mix").load()
    cu = ds["Cu"].values
    assert cu[:4].tolist() == [2.5] * 4 and np.isnan(cu[4:]).all()
    samples = store.samples("mix").set_index("sample_id")
    assert bool(samples.loc["REF", "certified"]) and not bool(samples.loc["UNK", "certified"])
    assert samples.loc["REF", "Cu_wt%"] == 2.5 and np.isnan(samples.loc["UNK", "Cu_wt%"])


def test_a_folder_of_raw_files_lands_and_the_batch_is_selected(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    write(inbox / "rock-7.txt.gz", shot_columns_text(WL, X, ";", ","), compress=True)
    write(inbox / "rows.csv", spectrum_rows_text(WL, X2, ["R1", "R1", "R2", "R2"]))
    (inbox / "README.md").write_text("notes")
    (inbox / "labels.csv").write_text("file,sample,Cu_wt%\n")
    assert [p.name for p in spectra_files([inbox])] == ["rock-7.txt.gz", "rows.csv"]
    assert is_campaign_manifest(inbox / "labels.csv") and not is_campaign_manifest(inbox / "rows.csv")
    store = tmp_path / "store"
    batch = ingest_new_files([inbox], store)
    result = batch.result
    assert result.status == "created" and result.name == "unknown-samples"
    assert batch.spectra.sample_id.values.tolist() == ["rock-7"] * 4 + ["R1", "R1", "R2", "R2"]
    assert SpectraStore(store).samples("unknown-samples")["certified"].tolist() == [False] * 3
    # a second batch: only its own spectra are selected, though the dataset holds both
    later = tmp_path / "later"
    later.mkdir()
    write(later / "new.txt", shot_columns_text(WL, X2[:2]))
    second = ingest_new_files([later / "new.txt"], store)
    assert second.result.n_spectra == 10 and second.spectra.sample_id.values.tolist() == ["new", "new"]
    # the same files again: nothing new is written, the batch is still selected (by sha256)
    again = ingest_new_files([inbox], store)
    assert again.result.status == "unchanged" and again.spectra.sizes["spectrum"] == 8


def test_raw_file_with_an_unsafe_sample_id_is_rejected_by_name(tmp_path):
    write(tmp_path / "rows.csv", spectrum_rows_text(WL, X[:1], ["../x"]))
    result = ingest_new_files([tmp_path / "rows.csv"], tmp_path / "store").result
    (f,) = result.rejected
    assert f.rule == "unsafe_sample_id" and "'../x'" in f.reason


@pytest.mark.skipif(not OREAS.is_dir(), reason="needs ../shared/data/oreas_na")
def test_oreas_files_as_unknown_samples(tmp_path):
    batch = ingest_new_files([OREAS], tmp_path / "store")
    assert batch.result.status == "created" and len(batch.result.accepted) == 7
    assert batch.spectra.sizes["spectrum"] == 70
    assert {f["layout"] for f in batch.result.files} == {"shot_columns"}


runner = CliRunner()


def test_ingest_exit_codes_0_partial_3_rejected_1(tmp_path):
    folder = tmp_path / "lab"
    folder.mkdir()
    write(folder / "ok.txt", shot_columns_text(WL, X))
    (folder / "empty.txt").write_text("")
    (folder / "m.csv").write_text("file,sample\nok.txt,OK\nempty.txt,E\n")
    res = runner.invoke(app, ["ingest", str(folder / "m.csv"), "--store", str(tmp_path / "s")])
    assert res.exit_code == 3 and "status partial" in res.output and "empty_file" in res.output
    assert "ok.txt: shot_columns" in res.output
    res = runner.invoke(app, ["ingest", str(folder / "m.csv"), "--store", str(tmp_path / "s")])
    assert res.exit_code == 3  # the empty file is still rejected; ok.txt is already ingested
    (folder / "m2.csv").write_text("file,sample\nok.txt,OK\n")
    assert runner.invoke(app, ["ingest", str(folder / "m2.csv"), "--store", str(tmp_path / "s")]).exit_code == 0
    (folder / "m3.csv").write_text("file,sample\nempty.txt,E\n")
    assert runner.invoke(app, ["ingest", str(folder / "m3.csv"), "--store", str(tmp_path / "s")]).exit_code == 1
    res = runner.invoke(app, ["ingest", "--help"], env={"COLUMNS": "200"})
    assert "3 partial" in res.output and "1 every new file was rejected" in res.output
