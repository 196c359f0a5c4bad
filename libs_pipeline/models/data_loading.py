"""Lazy, chunk-wise training data over measured and synthetic spectra stores, split by sample.

A source is opened lazily (zarr / netCDF / store URI / in-memory Dataset). Rows are grouped by the
store's chunks along ``spectrum``; an epoch visits the chunks in a seeded random order, holding at
most ``buffer_chunks`` chunks in memory, shuffling their rows and yielding fixed-size batches. So a
synthetic store of any size is never loaded whole. Splits are by sample: the validation samples'
measured spectra are held out and their synthetic spectra are never used for training.

Planning scales with the number of chunks and samples, not rows: rows are grouped by (sample id, parents,
synthetic) into integer codes (``sample_groups``) -- read directly from a store's integer ``sample_index`` and
sample table (``spectra.sample_table``; synthetic stores of 10^8 spectra), or computed once with ``np.unique``
for measured stores with string ``sample_id`` -- and every per-row decision is a numpy operation on the codes.
Python loops run over groups and chunks only. Per-row numpy arrays remain (row numbers, targets: about
8 + 8 * n_tasks bytes per used spectrum).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import xarray as xr
from torch.utils.data import IterableDataset, get_worker_info

from libs_pipeline.models.normalisation import (
    SpectrumNormaliser,
    TargetScaler,
    spectrum_divisors,
    spectrum_totals,
)
from libs_pipeline.models.tasks import TaskSet
from libs_pipeline.spectra.dataset import label_names, spectrum_sample_ids
from libs_pipeline.spectra.grid import same_grid
from libs_pipeline.spectra.sample_splits import split_by_sample
from libs_pipeline.spectra.location import StoreURLError
from libs_pipeline.spectra.sample_table import (
    has_sample_index,
    is_sample_indexed,
    open_sample_indexed,
    sample_codes,
    table_columns,
    table_values,
)
from libs_pipeline.spectra.store import open_spectra

log = logging.getLogger(__name__)

DEFAULT_CHUNK_ROWS = 256
SourceLike = str | Path | xr.Dataset


def open_source(source: SourceLike, position: int = 0) -> tuple[str, xr.Dataset]:
    """(name, lazily opened dataset) for a path / URL / store URI / Dataset; clear errors.

    A ``.zarr`` with an integer ``sample_index`` (synthetic stores) opens through ``open_sample_indexed``
    (refused unless published), anything else through ``spectra.store.open_spectra``.
    """
    if isinstance(source, xr.Dataset):
        return f"<dataset #{position}>", source
    uri = str(source)
    try:
        if "#" not in uri and uri.rstrip("/").endswith(".zarr") and has_sample_index(uri):
            return uri, open_sample_indexed(uri)
        return uri, open_spectra(uri)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"training source {uri}: not found ({exc})") from exc
    except StoreURLError as exc:
        raise ValueError(f"training source {uri}: {exc}") from exc
    except Exception as exc:
        raise ValueError(f"training source {uri}: cannot be opened as a spectra dataset: {exc}") from exc


def chunk_rows(ds: xr.Dataset) -> int:
    """Storage chunk length along ``spectrum`` (zarr encoding, else dask chunks, else a default)."""
    enc = ds["intensity"].encoding.get("chunks")
    if enc:
        return int(enc[0])
    if ds["intensity"].chunks:
        return int(ds["intensity"].chunks[0][0])
    return DEFAULT_CHUNK_ROWS


@dataclass(frozen=True)
class SampleGroups:
    """The rows of a dataset grouped by (sample id, parents, synthetic): one integer code per row.

    ``parents``: the measured sample(s) a group derives from (its own id for measured spectra; for synthetic
    spectra the ``source_sample`` names, 'a|b' for a sample interpolated between two references).
    """

    codes: np.ndarray  # (n_rows,) int: the group of every row
    sample_ids: np.ndarray  # (n_groups,) str
    parents: tuple[tuple[str, ...], ...]
    synthetic: np.ndarray  # (n_groups,) bool
    table: bool  # codes are the store's sample_index (per-sample variables come from its table)

    @property
    def joined(self) -> np.ndarray:
        """'a|b' parents text of every group."""
        return np.asarray(["|".join(p) for p in self.parents], dtype=str)

    def row_synthetic(self) -> np.ndarray:
        return self.synthetic[self.codes]


def _parents(sid: str, source: str, synthetic: bool) -> tuple[str, ...]:
    named = tuple(p for p in source.split("|") if p) if synthetic else ()
    return named or (sid,)


def sample_groups(ds: xr.Dataset) -> SampleGroups:
    """Group the rows of ``ds`` (see ``SampleGroups``): O(groups) Python work for sample-indexed stores."""
    if is_sample_indexed(ds):
        codes = sample_codes(ds)
        ids = table_values(ds, "sample_id")
        source = table_values(ds, "source_sample")
        syn = table_values(ds, "synthetic")
        syn = np.zeros(ids.size, dtype=bool) if syn is None else syn.astype(bool)
        source = ids if source is None else source
        parents = tuple(_parents(str(i), str(src), bool(f)) for i, src, f in zip(ids, source, syn))
        return SampleGroups(codes, ids, parents, syn, True)
    sids = spectrum_sample_ids(ds)
    source = np.asarray(ds["source_sample"].values).astype(str) if "source_sample" in ds else sids
    syn = np.asarray(ds["synthetic"].values, dtype=bool) if "synthetic" in ds else np.zeros(sids.size, dtype=bool)
    key = np.char.add(np.char.add(np.char.add(sids, "\x1f"), source), np.where(syn, "\x1f1", "\x1f0"))
    unique, codes = np.unique(key, return_inverse=True)
    parts = [str(k).split("\x1f") for k in unique]
    ids = np.asarray([p[0] for p in parts], dtype=str)
    flags = np.asarray([p[2] == "1" for p in parts], dtype=bool)
    parents = tuple(_parents(p[0], p[1], f) for p, f in zip(parts, flags))
    return SampleGroups(codes.reshape(-1), ids, parents, flags, False)


def row_values(ds: xr.Dataset, var: str, groups: SampleGroups | None = None) -> np.ndarray:
    """Per-row float64 values of ``var``: ``table[codes]`` for a table variable, else the variable itself."""
    if groups is not None and groups.table and var in table_columns(ds):
        return np.asarray(table_values(ds, var), dtype=np.float64)[groups.codes]
    return np.asarray(ds[var].values, dtype=np.float64)


def row_finite(ds: xr.Dataset, var: str, groups: SampleGroups) -> np.ndarray:
    """Per-row "``var`` is finite" (decided per sample for a table variable: 1 byte per row, no float copy)."""
    if groups.table and var in table_columns(ds):
        return np.isfinite(np.asarray(table_values(ds, var), dtype=np.float64))[groups.codes]
    return np.isfinite(np.asarray(ds[var].values, dtype=np.float64))


def synthetic_mask(ds: xr.Dataset) -> np.ndarray:
    """True for synthetic spectra (var ``synthetic``, or the sample table), False for measured ones."""
    if is_sample_indexed(ds) and "synthetic" in table_columns(ds):
        return sample_groups(ds).row_synthetic()
    if "synthetic" in ds:
        return np.asarray(ds["synthetic"].values, dtype=bool)
    return np.zeros(ds.sizes["spectrum"], dtype=bool)


def sample_parents(ds: xr.Dataset) -> list[tuple[str, ...]]:
    """The measured sample(s) each spectrum derives from (one tuple per row: for small datasets; planning uses
    ``sample_groups``)."""
    groups = sample_groups(ds)
    return [groups.parents[c] for c in groups.codes.tolist()]


@dataclass
class SourceRows:
    """The rows of one opened source used on one side of a split, plus their (raw-unit) targets.

    ``row_ids``: per-row 'a|b' parents text, or None when the rows carry ``codes`` into ``names`` (the
    scalable form ``plan_split`` builds: no string per row; ``sample_ids`` materialises them on demand).
    """

    name: str
    ds: xr.Dataset
    rows: np.ndarray
    row_ids: np.ndarray | None
    synthetic: np.ndarray
    chunk: int
    targets: np.ndarray | None = None
    totals: np.ndarray | None = None
    codes: np.ndarray | None = None
    names: np.ndarray | None = None

    @property
    def sample_ids(self) -> np.ndarray:
        """Per-row 'a|b' parents text (built from the codes when the rows carry no strings: O(rows) memory)."""
        if self.row_ids is not None:
            return self.row_ids
        return self.names[self.codes]

    def samples_used(self) -> set[str]:
        """Every measured sample these rows derive from (O(groups) Python work)."""
        if self.codes is not None and self.names is not None:
            joined = self.names[np.flatnonzero(np.bincount(self.codes, minlength=self.names.size))]
        else:
            joined = np.unique(self.row_ids)
        return {p for j in joined for p in str(j).split("|")}

    def blocks(self) -> list[np.ndarray]:
        """Positions into ``rows`` grouped by storage chunk (each block touches one chunk)."""
        if self.rows.size == 0:
            return []
        chunk_of = self.rows // self.chunk
        cuts = np.flatnonzero(np.diff(chunk_of)) + 1
        return np.split(np.arange(self.rows.size), cuts)

    def span(self, positions: np.ndarray) -> tuple[int, int]:
        rows = self.rows[positions]
        return int(rows.min()), int(rows.max()) + 1

    def read(self, positions: np.ndarray) -> np.ndarray:
        """Intensity (len(positions), m) float32 of the given positions (one contiguous slice read)."""
        lo, hi = self.span(positions)
        block = np.asarray(self.ds["intensity"].isel(spectrum=slice(lo, hi)).values, dtype=np.float32)
        return block[self.rows[positions] - lo]


@dataclass
class SplitPlan:
    """Training and validation rows of every source, and the samples on each side (disjoint)."""

    train: list[SourceRows]
    val: list[SourceRows]
    train_samples: list[str]
    val_samples: list[str]
    wavelength: np.ndarray
    excluded: dict[str, int] = field(default_factory=dict)

    @property
    def n_train(self) -> int:
        return int(sum(s.rows.size for s in self.train))

    @property
    def n_val(self) -> int:
        return int(sum(s.rows.size for s in self.val))


def _sample_labels(name: str, ds: xr.Dataset, analyte: str, groups: SampleGroups) -> dict[str, float]:
    """{sample id: first finite ``analyte`` value} over the measured rows (vectorised over rows)."""
    if analyte not in ds:
        labels = label_names(ds)
        raise ValueError(f"training source {name}: no label variable {analyte!r} (labels present: {labels})")
    values = row_values(ds, analyte, groups)
    candidates = np.flatnonzero(np.isfinite(values) & ~groups.row_synthetic())
    present, first = np.unique(groups.codes[candidates], return_index=True)
    out: dict[str, float] = {}
    for code, position in sorted(zip(present.tolist(), first.tolist()), key=lambda cp: cp[1]):  # row order
        out.setdefault(str(groups.sample_ids[code]), float(values[candidates[position]]))
    return out


def _row_dtype(n: int) -> type:
    return np.int32 if n < 2**31 else np.int64


def plan_split(
    train_sources: Sequence[SourceLike],
    analyte: str,
    val_fraction: float,
    seed: int,
    val_sources: Sequence[SourceLike] | None = None,
    use_synthetic: bool = True,
) -> SplitPlan:
    """Open the sources and decide, by sample, which rows train and which validate.

    Training = measured spectra of training samples (+ their synthetic spectra when ``use_synthetic``);
    validation = measured spectra of validation samples (from ``val_sources`` or split off by sample).
    Spectra with a missing (NaN) label are left out. A sample on both sides is an error.
    """
    if not train_sources:
        raise ValueError("no training sources given")
    opened = [open_source(s, i) for i, s in enumerate(train_sources)]
    opened_val = [open_source(s, len(opened) + i) for i, s in enumerate(val_sources or [])]
    wavelength = np.asarray(opened[0][1]["wavelength"].values, dtype=np.float64)
    for name, ds in opened + opened_val:
        wl = np.asarray(ds["wavelength"].values, dtype=np.float64)
        if not same_grid(wl, wavelength):
            raise ValueError(
                f"training source {name}: wavelength grid ({wl.size} channels, {wl[0]:.4f}-{wl[-1]:.4f} nm) differs "
                f"from the first source's ({wavelength.size} channels, {wavelength[0]:.4f}-{wavelength[-1]:.4f} nm)"
            )
    groups = {id(ds): sample_groups(ds) for _, ds in opened + opened_val}

    measured_labels: dict[str, float] = {}
    for name, ds in opened:
        measured_labels.update(_sample_labels(name, ds, analyte, groups[id(ds)]))
    if not measured_labels:
        raise ValueError(f"training sources hold no measured spectrum with a finite {analyte!r} label")

    if opened_val:
        val_labels: dict[str, float] = {}
        for name, ds in opened_val:
            val_labels.update(_sample_labels(name, ds, analyte, groups[id(ds)]))
        overlap = sorted(set(val_labels) & set(measured_labels))
        if overlap:
            raise ValueError(f"samples {overlap} are in both the training and the validation sources (split by sample)")
        train_samples, val_samples = sorted(measured_labels), sorted(val_labels)
    else:
        train_samples, val_samples = split_by_sample(measured_labels, val_fraction, seed)

    train_set, val_set = set(train_samples), set(val_samples)
    excluded = {"nan_label": 0, "synthetic_not_train_sample": 0, "synthetic_disabled": 0}

    def rows_for(name: str, ds: xr.Dataset, keep_samples: set[str], synthetic_ok: bool) -> SourceRows:
        g = groups[id(ds)]
        syn = g.row_synthetic()
        finite = row_finite(ds, analyte, g)
        # a synthetic spectrum is used only if every measured sample it derives from is on this side
        in_side = np.asarray([all(p in keep_samples for p in ps) for ps in g.parents], dtype=bool)[g.codes]
        keep = finite & in_side & (~syn | synthetic_ok)
        excluded["nan_label"] += int(np.count_nonzero(~finite & in_side))
        if not synthetic_ok:
            excluded["synthetic_disabled"] += int(np.count_nonzero(syn & in_side & finite))
        rows = np.flatnonzero(keep).astype(_row_dtype(keep.size))
        return SourceRows(name, ds, rows, None, syn[rows], chunk_rows(ds), codes=g.codes[rows], names=g.joined)

    train = [rows_for(n, ds, train_set, use_synthetic) for n, ds in opened]
    val_pool = opened_val if opened_val else opened
    val = [rows_for(n, ds, val_set, False) for n, ds in val_pool] if val_samples else []
    for _, ds in opened:
        g = groups[id(ds)]
        outside = np.asarray([f and not set(ps) <= train_set for ps, f in zip(g.parents, g.synthetic)], dtype=bool)
        excluded["synthetic_not_train_sample"] += int(np.count_nonzero(outside[g.codes]))
    train = [s for s in train if s.rows.size]
    val = [s for s in val if s.rows.size]
    if not train:
        raise ValueError("no training spectra left after the split")
    for side, other in ((train, val_set), (val, train_set)):
        for src in side:
            used = src.samples_used()
            if used & other:  # guard: the construction above makes this impossible
                raise AssertionError(f"samples {sorted(used & other)} on both sides of the split")
    plan = SplitPlan(train, val, train_samples, val_samples, wavelength, excluded)
    log.info(
        "split by sample: %d training samples (%d spectra), %d validation samples (%d spectra); left out %s",
        len(train_samples), plan.n_train, len(val_samples), plan.n_val, excluded,
    )
    return plan


def compute_targets(
    sources: Sequence[SourceRows],
    tasks: TaskSet,
    wavelength: np.ndarray,
    divisor: Callable[[np.ndarray], np.ndarray] = spectrum_totals,
) -> Iterator[np.ndarray]:
    """Fill each source's ``targets`` and ``totals`` (the input normalisation's per-spectrum divisor) chunk by chunk;
    yields each raw intensity block (for streaming fits)."""
    for src in sources:
        targets = np.empty((src.rows.size, len(tasks.names)))
        totals = np.empty(src.rows.size)
        for positions in src.blocks():
            block = src.read(positions)
            lo, hi = src.span(positions)  # the targets read only this block's slice of every per-row variable
            targets[positions] = tasks.targets(src.ds.isel(spectrum=slice(lo, hi)), src.rows[positions] - lo, block,
                                               wavelength)
            totals[positions] = divisor(block)
            yield block
        src.targets, src.totals = targets, totals


@dataclass(frozen=True)
class InputOptions:
    """How raw spectra become network inputs: normalisation, scaling, channel selection, saturation mask."""

    method: str = "total"
    scaling: str = "global"
    channels: np.ndarray | None = None
    reference: np.ndarray | None = None
    saturation: float | None = None
    saturation_margin: float = 0.01


def fit_transforms(
    plan: SplitPlan,
    tasks: TaskSet,
    method: str | InputOptions,
    scaling: str = "global",
    fallback: Sequence[SourceRows] = (),
) -> tuple[SpectrumNormaliser, TargetScaler]:
    """One streaming pass over the training rows (targets + input statistics) and one over validation.

    ``fallback`` rows (pretraining data) get their targets filled too; a task without any finite training
    target (e.g. T_K, known only for simulated spectra) takes its scaling statistics from them.
    """
    opts = method if isinstance(method, InputOptions) else InputOptions(method, scaling)

    def divisor(block: np.ndarray) -> np.ndarray:
        return spectrum_divisors(block, opts.method, opts.reference)

    normaliser = SpectrumNormaliser.fit(
        compute_targets(plan.train, tasks, plan.wavelength, divisor), opts.method, opts.scaling,
        opts.channels, opts.reference, opts.saturation, opts.saturation_margin,
    )
    for _ in compute_targets(plan.val, tasks, plan.wavelength, divisor):
        pass
    all_targets = np.concatenate([s.targets for s in plan.train])
    all_totals = np.concatenate([s.totals for s in plan.train])
    if fallback:
        for _ in compute_targets(fallback, tasks, plan.wavelength, divisor):
            pass
        missing = ~np.isfinite(all_targets).any(axis=0)
        if missing.any():
            extra = np.concatenate([s.targets for s in fallback])
            extra[:, ~missing] = np.nan  # only the missing tasks borrow the pretraining statistics
            all_targets = np.concatenate([all_targets, extra])
            all_totals = np.concatenate([all_totals, np.concatenate([s.totals for s in fallback])])
    scaler = TargetScaler.fit(tasks.names, all_targets, tasks.log_tasks, tasks.per_total_tasks, all_totals)
    return normaliser, scaler


class SpectraBatches(IterableDataset):
    """Batches ``(x (b, m) float32 normalised, y (b, n_tasks) float32 standardised)`` read chunk by chunk.

    ``shuffle``: chunk order and rows within a buffer of ``buffer_chunks`` chunks are permuted with
    a generator seeded by (seed, epoch); call ``set_epoch`` before each pass. A last partial batch
    smaller than ``min_last_batch`` is dropped. With DataLoader workers the chunks are dealt
    round-robin to workers.
    """

    def __init__(
        self,
        sources: Sequence[SourceRows],
        normaliser: SpectrumNormaliser,
        scaler: TargetScaler,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        buffer_chunks: int = 8,
        min_last_batch: int = 1,
    ) -> None:
        super().__init__()
        if any(s.targets is None for s in sources):
            raise ValueError("compute_targets must run before batching (targets missing)")
        self.sources = list(sources)
        self.normaliser = normaliser
        self.scaler = scaler
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.buffer_chunks = max(1, int(buffer_chunks))
        self.min_last_batch = max(1, int(min_last_batch))
        self.epoch = 0
        self._blocks = [(i, pos) for i, s in enumerate(self.sources) for pos in s.blocks()]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        n = sum(s.rows.size for s in self.sources)
        return n // self.batch_size + int(n % self.batch_size >= self.min_last_batch)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, self.epoch]))
        order = rng.permutation(len(self._blocks)) if self.shuffle else np.arange(len(self._blocks))
        worker = get_worker_info()
        if worker is not None:
            order = order[worker.id :: worker.num_workers]
        carry_x = np.empty((0, 0), np.float32)
        carry_y = np.empty((0, 0), np.float32)
        for start in range(0, len(order), self.buffer_chunks):
            xs, ys = [carry_x] if carry_x.size else [], [carry_y] if carry_y.size else []
            for k in order[start : start + self.buffer_chunks]:
                i, positions = self._blocks[int(k)]
                src = self.sources[i]
                xs.append(self.normaliser.transform(src.read(positions)))
                ys.append(self.scaler.transform(src.targets[positions], src.totals[positions]))
            x, y = np.concatenate(xs), np.concatenate(ys)
            if self.shuffle:
                perm = rng.permutation(x.shape[0])
                x, y = x[perm], y[perm]
            n_full = x.shape[0] // self.batch_size * self.batch_size
            for b in range(0, n_full, self.batch_size):
                yield torch.from_numpy(x[b : b + self.batch_size]), torch.from_numpy(y[b : b + self.batch_size])
            carry_x, carry_y = x[n_full:], y[n_full:]
        if carry_x.shape[0] >= self.min_last_batch:  # training asks for >= 2 (batch norm)
            yield torch.from_numpy(carry_x), torch.from_numpy(carry_y)


def source_fingerprint(name: str, ds: xr.Dataset) -> dict:
    """Version record of a source: its URI, any version attrs, and a hash of sample ids, labels and grid.

    Sample-indexed stores hash the integer ``sample_index`` and the sample table (ids, parents, labels) instead
    of one string per row; measured stores hash their per-row ids and labels as before.
    """
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(ds["wavelength"].values, dtype=np.float64).tobytes())
    labels = sorted(label_names(ds))
    if is_sample_indexed(ds):
        h.update(b"sample_index")
        h.update(np.ascontiguousarray(sample_codes(ds), dtype=np.int64).tobytes())
        columns = table_columns(ds)
        for var in sorted(columns):
            values = np.asarray(ds[columns[var]].values)
            h.update(var.encode() + b"\x00")
            h.update("\x00".join(values.astype(str)).encode() if values.dtype.kind in "OUS"
                     else np.ascontiguousarray(values).tobytes())
        n_synthetic = int(np.count_nonzero(synthetic_mask(ds)))
    else:
        h.update("\x00".join(spectrum_sample_ids(ds)).encode())
        for label in labels:
            h.update(np.ascontiguousarray(ds[label].values, dtype=np.float64).tobytes())
        n_synthetic = int(synthetic_mask(ds).sum())
    h.update(str(tuple(ds["intensity"].shape)).encode())
    version_attrs = {
        k: (v if isinstance(v, int | float | bool) else str(v))
        for k, v in ds.attrs.items()
        if any(t in k.lower() for t in ("version", "hash", "id", "seed", "source"))
    }
    return {
        "uri": name,
        "n_spectra": int(ds.sizes["spectrum"]),
        "n_synthetic": n_synthetic,
        "labels": labels,
        "attrs": version_attrs,
        "fingerprint": h.hexdigest()[:16],
    }
