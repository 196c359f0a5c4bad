"""Tiny campaigns on disk for tests: format (a) files of toy samples plus a YAML manifest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from libs_pipeline.spectra.shot_columns import write_shot_columns_file
from libs_pipeline.testing import toy_campaign


def write_campaign(folder: Path, n_samples: int = 3, n_shots: int = 4, n_channels: int = 64, seed: int = 0,
                   prefix: str = "S", name: str = "toy", manifest: str = "manifest.yaml") -> Path:
    """One shot_columns file per toy sample + a YAML manifest (labels Cu in wt%); returns the manifest path."""
    folder.mkdir(parents=True, exist_ok=True)
    ds = toy_campaign(n_samples=n_samples, n_shots=n_shots, n_channels=n_channels, seed=seed)
    samples = []
    for i, sid in enumerate(dict.fromkeys(ds["sample_id"].values.tolist())):
        sel = ds["sample_id"].values == sid
        new_id = f"{prefix}{i:02d}"
        write_shot_columns_file(folder / f"{new_id}.txt", ds["wavelength"].values, ds["intensity"].values[sel])
        samples.append({"sample_id": new_id, "file": f"{new_id}.txt", "labels": {"Cu": float(ds["Cu"].values[sel][0])}})
    path = folder / manifest
    path.write_text(yaml.safe_dump({"name": name, "units": "wt%", "matrix": "Al", "samples": samples}, sort_keys=False))
    return path


def add_sample(manifest: Path, sample_id: str, file: str, labels: dict | None = None, units: str | None = None) -> None:
    """Append one entry to a YAML manifest."""
    doc = yaml.safe_load(manifest.read_text())
    entry = {"sample_id": sample_id, "file": file, "labels": labels if labels is not None else {"Cu": 1.0}}
    if units:
        entry["units"] = units
    doc["samples"].append(entry)
    manifest.write_text(yaml.safe_dump(doc, sort_keys=False))


def shot_file_values(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(wavelength, intensity (shots, channels) float32) of a format (a) file, parsed independently."""
    table = np.loadtxt(path, delimiter=",", ndmin=2)
    return table[:, 0], table[:, 1:].T.astype(np.float32)


__all__ = ["add_sample", "shot_file_values", "write_campaign"]
