"""The on-disk synthetic store: a zarr 3 template written up front, then filled chunk by chunk.

A generation job lives in a hidden work folder beside its final name until every chunk is written:
    .<id>.work/job.json            what to generate (written last when the template is complete)
    .<id>.work/noise_model.json    the fitted parameters the chunks draw from
    .<id>.work/store.zarr/         the zarr store; chunk i writes only rows of chunk i
    .<id>.work/chunks/<i>.done     completion marker, written atomically after chunk i's region
A chunk with a marker is never rewritten, so a killed run restarted finishes with the same bytes.
The finished store is renamed to ``<id>.zarr`` (canonical layout + ``synthetic`` and provenance vars).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
import zarr
from zarr.codecs import ZstdCodec

from libs_pipeline.spectra.atomic import atomic_write_json, atomic_write_text
from libs_pipeline.spectra.dataset import LABEL_ROLE, SCHEMA_VERSION
from libs_pipeline.spectra.store import local_path
from libs_pipeline.synth.noise_model import NoiseModel, sample_spectra
from libs_pipeline.synth.plan import SynthesisPlan

STORE_FORMAT = "libs-pipeline/synthetic/1"
JOB_FILE = "job.json"
MODEL_FILE = "noise_model.json"
STORE_DIR = "store.zarr"
MARKER_DIR = "chunks"
SEED_RULE = (
    "chunk i = rows [i*chunk_size, (i+1)*chunk_size) draws from numpy SeedSequence(seed).spawn(n_chunks)[i], "
    "sample by sample in blocks of 256 rows"
)
COMPRESSOR = ZstdCodec(level=1)
DRAW_BLOCK = 256  # rows drawn per call (fixed: part of what makes the bytes reproducible)


def model_json(model: NoiseModel) -> str:
    """Canonical JSON text of a model (sorted keys, exact float repr): hashed into the store id."""
    return json.dumps(model.to_dict(), sort_keys=True, allow_nan=False) + "\n"


def store_id(model_text: str, plan: SynthesisPlan) -> str:
    """Content id of a synthetic store: first 16 hex of sha256 over the model and the plan."""
    payload = json.dumps({"format": STORE_FORMAT, "model": model_text, "plan": plan.to_dict()}, sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class SynthesisJob:
    """A generation job: where it is written, what it draws, and where it lands when complete."""

    id: str
    work_dir: Path
    final_path: Path
    plan: SynthesisPlan
    name: str
    attrs: dict[str, Any]
    source_uri: str | None = None

    @property
    def store_path(self) -> Path:
        return self.work_dir / STORE_DIR

    @property
    def model_path(self) -> Path:
        return self.work_dir / MODEL_FILE

    def marker(self, index: int) -> Path:
        return self.work_dir / MARKER_DIR / f"{index:07d}.done"

    def pending_chunks(self) -> list[int]:
        done = {p.name for p in (self.work_dir / MARKER_DIR).glob("*.done")}
        return [i for i in range(self.plan.n_chunks) if f"{i:07d}.done" not in done]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": STORE_FORMAT,
            "id": self.id,
            "name": self.name,
            "final_path": str(self.final_path),
            "plan": self.plan.to_dict(),
            "attrs": self.attrs,
            "source_uri": self.source_uri,
        }


def work_dir_for(final_path: Path) -> Path:
    return final_path.parent / f".{final_path.stem}.work"


def read_job(work_dir: str | Path) -> SynthesisJob:
    """The job of a work folder; a folder without job.json holds no complete template."""
    work_dir = Path(work_dir)
    path = work_dir / JOB_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no synthesis job here (template missing or incomplete)")
    data = json.loads(path.read_text())
    if data.get("format") != STORE_FORMAT:
        raise ValueError(f"{path}: format {data.get('format')!r} is not {STORE_FORMAT!r}")
    return SynthesisJob(
        id=data["id"],
        work_dir=work_dir,
        final_path=Path(data["final_path"]),
        plan=SynthesisPlan.from_dict(data["plan"]),
        name=data["name"],
        attrs=data["attrs"],
        source_uri=data.get("source_uri"),
    )


# --------------------------------------------------------------------------------- template


def _array(group: zarr.Group, name: str, shape, dtype, chunks, dims, attrs=None, fill_value=None) -> zarr.Array:
    return group.create_array(
        name,
        shape=shape,
        dtype=dtype,
        chunks=chunks,
        dimension_names=dims,
        attributes=attrs or {},
        compressors=COMPRESSOR,
        fill_value=fill_value,
    )


def create_template(job: SynthesisJob, model: NoiseModel, model_text: str) -> None:
    """Write the work folder: model JSON, the zarr template (metadata + wavelength), then job.json."""
    work = job.work_dir
    work.mkdir(parents=True, exist_ok=True)
    (work / MARKER_DIR).mkdir(exist_ok=True)
    atomic_write_text(job.model_path, model_text)
    n, c, cs = job.plan.n_spectra, model.n_channels, job.plan.chunk_size
    group = zarr.open_group(job.store_path, mode="w", zarr_format=3, attributes=job.attrs)
    wl = _array(group, "wavelength", (c,), "float64", (c,), ["wavelength"], {"units": "nm"})
    wl[:] = model.wavelength
    _array(group, "spectrum", (n,), "int64", (cs,), ["spectrum"], fill_value=-1)
    _array(group, "intensity", (n, c), "float32", (cs, c), ["spectrum", "wavelength"], {"units": "counts"}, np.nan)
    _array(group, "sample_id", (n,), str, (cs,), ["spectrum"])
    _array(group, "shot", (n,), "int64", (cs,), ["spectrum"], fill_value=-1)
    for label, units in model.label_units.items():
        _array(group, label, (n,), "float64", (cs,), ["spectrum"], {"units": units, "role": LABEL_ROLE}, np.nan)
    _array(group, "synthetic", (n,), "bool", (cs,), ["spectrum"], {"description": "drawn from the noise model"}, False)
    _array(
        group, "source_sample", (n,), str, (cs,), ["spectrum"],
        {"description": "reference sample(s) drawn from; 'a|b' for an interpolated sample"},
    )
    _array(
        group, "mix_weight", (n,), "float32", (cs,), ["spectrum"],
        {"description": "interpolated samples: weight of the second reference sample (0 otherwise)"}, 0.0,
    )
    atomic_write_json(work / JOB_FILE, job.to_dict())


def store_attrs(model: NoiseModel, plan: SynthesisPlan, model_text: str, source: dict[str, Any]) -> dict[str, Any]:
    """Dataset attrs of a synthetic store: schema, provenance, seed rule and the scalar model parameters."""
    return {
        "schema_version": SCHEMA_VERSION,
        "synthetic": True,
        "synthetic_format": STORE_FORMAT,
        "seed": plan.seed,
        "per_sample": plan.per_sample,
        "chunk_size": plan.chunk_size,
        "seed_rule": SEED_RULE,
        "noise_model_sha256": hashlib.sha256(model_text.encode("utf-8")).hexdigest(),
        "noise_model": {
            "shot_factor": model.shot_factor,
            "detector": model.detector,
            "floor": model.floor,
            "saturation": model.saturation,
            "integer": model.integer,
            "instrument_fwhm_nm": model.instrument_fwhm_nm,
            "parameters": model.parameters(),
        },
        "source": source,
    }


# ----------------------------------------------------------------------------------- chunks


@lru_cache(maxsize=4)
def _job_state(work_dir: str, stamp: int) -> tuple[SynthesisJob, NoiseModel, dict[str, zarr.Array]]:
    """Job, model and open arrays of a work folder, cached per process (``stamp``: job.json mtime)."""
    job = read_job(work_dir)
    model = NoiseModel.from_dict(json.loads(job.model_path.read_text()))
    group = zarr.open_group(job.store_path, mode="r+", zarr_format=3)
    arrays = {name: arr for name, arr in group.arrays()}
    return job, model, arrays


def load_job_state(work_dir: str | Path) -> tuple[SynthesisJob, NoiseModel, dict[str, zarr.Array]]:
    work_dir = str(Path(work_dir))
    stamp = os.stat(Path(work_dir) / JOB_FILE).st_mtime_ns
    return _job_state(work_dir, stamp)


def chunk_values(model: NoiseModel, plan: SynthesisPlan, index: int) -> dict[str, np.ndarray]:
    """Every variable's values for the rows of chunk ``index`` (drawn from the chunk's own seed)."""
    rng = plan.chunk_rng(index)
    start, stop = plan.rows(index)
    intensity = np.empty((stop - start, model.n_channels), dtype=np.float32)
    sample, shot = [], []
    row = 0
    for seg in plan.segments(index):
        sid = plan.sample_ids[seg.sample_index]
        for offset in range(0, seg.n, DRAW_BLOCK):  # bounded temporaries, whatever the chunk size
            n = min(DRAW_BLOCK, seg.n - offset)
            intensity[row:row + n] = sample_spectra(model, sid, n, rng)
            row += n
        sample.extend([sid] * seg.n)
        shot.append(np.arange(seg.first_draw, seg.first_draw + seg.n, dtype=np.int64))
    samples = [model.sample(s) for s in sample]
    values: dict[str, np.ndarray] = {
        "spectrum": np.arange(start, stop, dtype=np.int64),
        "intensity": intensity,
        "sample_id": np.asarray(sample, dtype=str),
        "shot": np.concatenate(shot),
        "synthetic": np.ones(stop - start, dtype=bool),
        "source_sample": np.asarray(["|".join(s.parents) if s.parents else s.sample_id for s in samples], dtype=str),
        "mix_weight": np.asarray([s.weight for s in samples], dtype=np.float32),
    }
    for label in model.label_units:
        values[label] = np.asarray([s.labels.get(label, np.nan) for s in samples], dtype=np.float64)
    return values


def write_chunk(work_dir: str, index: int) -> dict[str, Any]:
    """Draw and write chunk ``index`` unless its marker says it is done; then write the marker.

    The unit of work of a generation run (a Dask task): takes a path and an index, returns a tiny dict.
    """
    job, model, arrays = load_job_state(work_dir)
    marker = job.marker(index)
    if marker.exists():
        return {"index": index, "written": False}
    start, stop = job.plan.rows(index)
    for name, values in chunk_values(model, job.plan, index).items():
        arrays[name][start:stop] = values
    atomic_write_json(marker, {"index": index, "rows": [start, stop]})
    return {"index": index, "written": True}


# ------------------------------------------------------------------------------------- read


def open_synthetic(uri: str | Path) -> xr.Dataset:
    """Open a finished synthetic store lazily (dask arrays, chunked along ``spectrum``)."""
    path = local_path(uri)
    if not (path / "zarr.json").is_file():
        raise FileNotFoundError(f"{path}: not a zarr store (no zarr.json)")
    ds = xr.open_zarr(path, consolidated=False, zarr_format=3)
    if not ds.attrs.get("synthetic"):
        raise ValueError(f"{path}: not a synthetic store (attrs has no synthetic=True)")
    return ds
