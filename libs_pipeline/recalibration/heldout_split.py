"""The held-out split of a larger campaign: hold out samples by a stable per-sample rule and store the rest as
the training part of the spectra version (``<dataset>.train``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import xarray as xr

from libs_pipeline.spectra.sample_splits import heldout_samples
from libs_pipeline.spectra.dataset import resolve_analyte, sample_ids, select_samples, spectrum_sample_ids
from libs_pipeline.spectra.store import SpectraStore

#: The training part of a spectra version is stored as its own dataset, ``<dataset><TRAIN_SUFFIX>``.
TRAIN_SUFFIX = ".train"


@dataclass(frozen=True)
class TrainingSplit:
    """A spectra version split by sample: the stored training part and the held-out sample ids."""

    root: str
    spectra: dict
    train: dict
    analyte: str
    units: str
    heldout: list[str]
    train_samples: list[str]
    trust_samples: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainingSplit:
        return cls(**data)

    def open_train(self) -> xr.Dataset:
        """The stored training part (lazy)."""
        return SpectraStore(self.root).open(self.train["name"], self.train["version"])

    def open_heldout(self) -> xr.Dataset:
        """The held-out samples of the full spectra version (lazy)."""
        full = SpectraStore(self.root).open(self.spectra["name"], self.spectra["version"])
        return select_samples(full, self.heldout)

    def open_trust(self) -> xr.Dataset:
        """The trust-calibration samples of the full spectra version (lazy)."""
        full = SpectraStore(self.root).open(self.spectra["name"], self.spectra["version"])
        return select_samples(full, self.trust_samples)


def labelled_samples(ds: xr.Dataset, analyte: str) -> list[str]:
    """Samples whose spectra carry a finite label for ``analyte``."""
    known = np.isfinite(np.asarray(ds[analyte].values, dtype=np.float64))
    keep = set(spectrum_sample_ids(ds)[known])
    return [s for s in sample_ids(ds) if s in keep]


#: Salt offset of the trust-sample rule, so it is independent of the held-out rule.
TRUST_SALT = 7919


def write_training_split(
    root: str | Path, dataset: str, version: str, fraction: float, seed: int, analyte: str | None = None,
    trust_fraction: float = 0.0,
) -> TrainingSplit:
    """Hold out samples of ``dataset@version`` (stable per-sample rule), reserve ``trust_fraction`` of the rest
    for trust calibration (same rule, another salt; never trained on, never used for early stopping) and store
    the remainder as ``<dataset>.train`` (content-addressed: the same split writes nothing new)."""
    store = SpectraStore(root)
    ds = store.open(dataset, version)
    where = f"spectra {dataset}@{version}"
    analyte, units = resolve_analyte(ds, analyte, where)
    samples = labelled_samples(ds, analyte)
    held = heldout_samples(samples, fraction, seed)
    rest = [s for s in samples if s not in set(held)]
    trust = heldout_samples(rest, trust_fraction, seed + TRUST_SALT) if trust_fraction > 0 else []
    train_ids = [s for s in rest if s not in set(trust)]
    train = select_samples(ds, train_ids)
    train_name = f"{dataset}{TRAIN_SUFFIX}"
    source = {
        "derived_from": store.ref(dataset, version),
        "rule": "recalibration training split",
        "heldout_samples": held,
        "heldout_fraction": fraction,
        "trust_samples": trust,
        "trust_fraction": trust_fraction,
        "split_seed": seed,
        "analyte": analyte,
    }
    train_version = store.write_version(train_name, train, sources=[source], reader="dataset")
    return TrainingSplit(
        root=str(root),
        spectra={"name": dataset, "version": version, "uri": store.uri(dataset, version)},
        train={"name": train_name, "version": train_version, "uri": store.uri(train_name, train_version)},
        analyte=analyte,
        units=units,
        heldout=held,
        train_samples=train_ids,
        trust_samples=trust,
    )


__all__ = ["TRAIN_SUFFIX", "TRUST_SALT", "TrainingSplit", "labelled_samples", "write_training_split"]
