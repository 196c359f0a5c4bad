"""The synthetic store: a zarr 3 template written at its final URL, filled shard by shard, published by a manifest.

Everything goes through ``Location`` (local folder, ``file://``, ``s3://``, any fsspec URL); nothing is renamed,
so the same layout works on an object store:

    <dir>/<id>.zarr/                   the zarr store, written in place; shard s is written by task s only
    <dir>/.<id>.work/job.json          what to generate (written last, when the template is complete)
    <dir>/.<id>.work/noise_model.json  the fitted parameters the shards draw from
    <dir>/.<id>.work/tasks/<s>.done    completion marker of shard s, written after its objects
    <dir>/<id>.noise_model.json        published copy of the parameters
    <dir>/<id>.manifest.json           written LAST: a store without it is not complete (``open_synthetic`` refuses it)

A shard with a marker is never rewritten, so a killed run restarted finishes with the same bytes (an
unmarked shard is rewritten whole: one object per array, so a half-written one is replaced).

Layout (format 2): ``intensity`` (spectrum, wavelength) float32, ``sample_index`` and ``shot`` (spectrum,),
each sharded by ``plan.shard_rows`` rows with inner chunks of ``plan.chunk_size`` rows; the per-sample
lookup table (``sample``, ``sample__source_sample``, ``sample__mix_weight``, ``sample__synthetic`` and
``sample__<label>``, see ``spectra.sample_table``) replaces the per-row strings and labels. ``open_synthetic``
presents ``sample_id``, ``source_sample``, ``mix_weight``, ``synthetic`` and the labels per spectrum, lazily.

Codec, chosen by measurement (``python benchmarks/cluster_synthesis.py --codecs-only`` reproduces the table:
one 1024 x 4096 block of toy-campaign draws of 8 samples, encoded on one core, 2 Dec 2026):

    model draws           codec                              ratio   encode CPU s / 1024 rows
    float (non-integer)   Zstd level 1 (format 1)            0.720   0.0436
    float (non-integer)   Blosc zstd 1 + bit-shuffle         0.752   0.0489
    float (non-integer)   Blosc lz4 5 + byte-shuffle         0.755   0.0055   <- chosen for float models
    integer (rint)        Zstd level 1, float32              0.341   0.0801
    integer (rint)        Blosc zstd 1 + bit-shuffle, f32    0.284   0.0350   <- chosen for integer models
    integer (rint)        Blosc zstd 1 + bit-shuffle, int32  0.282   0.0366
    integer (rint)        Blosc lz4 5 + byte-shuffle, f32    0.376   0.0100

Drawing the same block takes about 0.23-0.28 CPU s, so Zstd 1 cost ~15-19 % of the draw time, Blosc lz4 +
shuffle ~2 % at the same ratio (rerun 2 Dec 2026: 0.0372 / 0.0049 s, same ratios). An integer dtype gains nothing over float32 with bit-shuffle (0.282 vs 0.284), so intensity
stays float32 for every model (one dtype for readers).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import xarray as xr
import zarr
from zarr.codecs import BloscCodec

from libs_pipeline.spectra.dataset import LABEL_ROLE, SCHEMA_VERSION
from libs_pipeline.spectra.location import Location, open_location
from libs_pipeline.spectra.sample_table import (
    INDEX,
    ROW_ATTRS,
    SAMPLE_DIM,
    TABLE_PREFIX,
    index_dtype,
    manifest_location,
    open_sample_indexed,
)
from libs_pipeline.synth.noise_model import NoiseModel, sample_spectra
from libs_pipeline.synth.plan import SynthesisPlan

STORE_FORMAT = "libs-pipeline/synthetic/2"
JOB_FILE = "job.json"
MODEL_FILE = "noise_model.json"
MARKER_DIR = "tasks"
SEED_RULE = (
    "chunk i = rows [i*chunk_size, (i+1)*chunk_size) draws from numpy SeedSequence(seed).spawn(n_chunks)[i], "
    "sample by sample in blocks of 256 rows (unchanged by sharding: a shard draws its chunks one by one); "
    "read noise is drawn only for samples whose read noise is above 0, by Box-Muller (all float64 radius uniforms, "
    "then all float32 angle uniforms: noise_model.standard_normal_f32)"
)
FLOAT_COMPRESSOR = BloscCodec(cname="lz4", clevel=5, shuffle="shuffle", typesize=4)
INTEGER_COMPRESSOR = BloscCodec(cname="zstd", clevel=1, shuffle="bitshuffle", typesize=4)
SMALL_COMPRESSOR = BloscCodec(cname="zstd", clevel=1, shuffle="bitshuffle")  # per-spectrum ints and the table
DRAW_BLOCK = 256  # rows drawn per call (fixed: part of what makes the bytes reproducible)
WRITE_ATTEMPTS = 4  # a shard's writes are retried on transient I/O errors (then the Dask task retries)
WRITE_BACKOFF_S = 0.5
ROW_ARRAYS = ("intensity", INDEX, "shot")  # the arrays written per shard


def intensity_compressor(model: NoiseModel) -> BloscCodec:
    return INTEGER_COMPRESSOR if model.integer else FLOAT_COMPRESSOR


def model_json(model: NoiseModel) -> str:
    """Canonical JSON text of a model (sorted keys, exact float repr): hashed into the store id."""
    return json.dumps(model.to_dict(), sort_keys=True, allow_nan=False) + "\n"


def store_id(model_text: str, plan: SynthesisPlan) -> str:
    """Content id of a synthetic store: first 16 hex of sha256 over the model and the plan."""
    payload = json.dumps({"format": STORE_FORMAT, "draws": SEED_RULE, "model": model_text, "plan": plan.to_dict()},
                         sort_keys=True)  # the draw rule is part of the content: other draws, another id
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def _stem(location: Location) -> str:
    name = location.name
    return name.removesuffix(".zarr")


def work_location(store: Location) -> Location:
    """The work prefix of a store: ``.<id>.work`` beside ``<id>.zarr``."""
    return store.parent / f".{_stem(store)}.work"


def published_model_location(store: Location) -> Location:
    return store.parent / f"{_stem(store)}.noise_model.json"


@dataclass(frozen=True)
class SynthesisJob:
    """A generation job: where its store and work prefix are, what it draws."""

    id: str
    store_url: str  # credential-free URL of <id>.zarr
    plan: SynthesisPlan
    name: str
    attrs: dict[str, Any]
    source_uri: str | None = None

    @property
    def store(self) -> Location:
        return open_location(self.store_url, check=False)

    @property
    def work(self) -> Location:
        return work_location(self.store)

    @property
    def work_url(self) -> str:
        return self.work.url

    @property
    def manifest(self) -> Location:
        return manifest_location(self.store)

    def complete(self) -> bool:
        """Published: its manifest exists."""
        return self.manifest.is_file()

    def marker(self, shard: int) -> Location:
        return self.work / MARKER_DIR / f"{shard:07d}.done"

    def pending_shards(self) -> list[int]:
        done = set((self.work / MARKER_DIR).children())
        return [s for s in range(self.plan.n_shards) if f"{s:07d}.done" not in done]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": STORE_FORMAT,
            "id": self.id,
            "name": self.name,
            "store": self.store_url,
            "plan": self.plan.to_dict(),
            "attrs": self.attrs,
            "source_uri": self.source_uri,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str) -> SynthesisJob:
        if data.get("format") != STORE_FORMAT:
            raise ValueError(f"{where}: format {data.get('format')!r} is not {STORE_FORMAT!r}")
        try:
            return cls(
                id=data["id"], store_url=data["store"], plan=SynthesisPlan.from_dict(data["plan"]), name=data["name"],
                attrs=data["attrs"], source_uri=data.get("source_uri"),
            )
        except KeyError as exc:
            raise ValueError(f"{where}: job has no field {exc.args[0]!r}") from None


def read_job(work: str | Location) -> SynthesisJob:
    """The job of a work prefix; a prefix without job.json holds no complete template."""
    location = open_location(work, check=False) / JOB_FILE
    if not location.is_file():
        raise FileNotFoundError(f"{location.url}: no synthesis job here (template missing or incomplete)")
    return SynthesisJob.from_dict(json.loads(location.read_text()), location.url)


# --------------------------------------------------------------------------------- template


def sample_table(model: NoiseModel) -> dict[str, tuple[np.ndarray, dict[str, Any]]]:
    """Per-sample columns {per-spectrum var: (values over the model's samples, attrs per spectrum)}."""
    samples = [model.sample(s) for s in model.sample_ids]
    columns: dict[str, tuple[np.ndarray, dict[str, Any]]] = {
        "source_sample": (
            np.asarray(["|".join(s.parents) if s.parents else s.sample_id for s in samples], dtype=str),
            {"description": "reference sample(s) drawn from; 'a|b' for an interpolated sample"},
        ),
        "mix_weight": (
            np.asarray([s.weight for s in samples], dtype=np.float32),
            {"description": "interpolated samples: weight of the second reference sample (0 otherwise)"},
        ),
        "synthetic": (np.ones(len(samples), dtype=bool), {"description": "drawn from the noise model"}),
    }
    for label, units in model.label_units.items():
        columns[label] = (
            np.asarray([s.labels.get(label, np.nan) for s in samples], dtype=np.float64),
            {"units": units, "role": LABEL_ROLE},
        )
    return columns


def _array(group: zarr.Group, name: str, shape, dtype, chunks, dims, *, shards=None, attrs=None, fill_value=None,
           compressor=SMALL_COMPRESSOR, write_empty: bool = False) -> zarr.Array:
    return group.create_array(
        name, shape=shape, dtype=dtype, chunks=chunks, shards=shards, dimension_names=dims,
        attributes=attrs or {}, compressors=compressor, fill_value=fill_value,
        config={"write_empty_chunks": write_empty},  # table columns: one chunk file each, even when all fill
    )


def create_template(job: SynthesisJob, model: NoiseModel, model_text: str) -> None:
    """Write the model JSON, the zarr template (metadata, wavelength, sample table), then job.json last."""
    work = job.work
    (work / MODEL_FILE).write_text(model_text)
    plan = job.plan
    n, c, cs, ss = plan.n_spectra, model.n_channels, plan.chunk_size, plan.shard_rows
    ss = min(ss, -(-n // cs) * cs)  # a store smaller than one shard: one shard covering every chunk
    group = zarr.open_group(job.store.zarr_store(), mode="w", zarr_format=3, attributes=job.attrs)
    wl = _array(group, "wavelength", (c,), "float64", (c,), ["wavelength"], attrs={"units": "nm"})
    wl[:] = model.wavelength
    _array(group, "intensity", (n, c), "float32", (cs, c), ["spectrum", "wavelength"], shards=(ss, c),
           attrs={"units": "counts"}, fill_value=np.nan, compressor=intensity_compressor(model))
    _array(group, INDEX, (n,), index_dtype(len(model.sample_ids)), (cs,), ["spectrum"], shards=(ss,), fill_value=-1,
           attrs={"description": f"row of the sample table (dimension {SAMPLE_DIM!r})"})
    _array(group, "shot", (n,), "int64", (cs,), ["spectrum"], shards=(ss,), fill_value=-1)
    k = len(model.sample_ids)
    ids = _array(group, SAMPLE_DIM, (k,), str, (k,), [SAMPLE_DIM])
    ids[:] = np.asarray(model.sample_ids, dtype=str)
    for var, (values, row_attrs) in sample_table(model).items():
        column = _array(group, f"{TABLE_PREFIX}{var}", (k,), values.dtype if values.dtype.kind != "U" else str, (k,),
                        [SAMPLE_DIM], attrs={ROW_ATTRS: row_attrs}, write_empty=True)
        column[:] = values
    (work / JOB_FILE).write_json(job.to_dict())


def store_attrs(model: NoiseModel, plan: SynthesisPlan, model_text: str, source: dict[str, Any]) -> dict[str, Any]:
    """Dataset attrs of a synthetic store: schema, provenance, seed rule and the scalar model parameters."""
    return {
        "schema_version": SCHEMA_VERSION,
        "synthetic": True,
        "synthetic_format": STORE_FORMAT,
        "seed": plan.seed,
        "per_sample": plan.per_sample,
        "chunk_size": plan.chunk_size,
        "shard_chunks": plan.shard_chunks,
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


# ----------------------------------------------------------------------------------- draws


def draw_chunk(
    model: NoiseModel, plan: SynthesisPlan, index: int, out: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(intensity float32, sample_index int, shot int64) of the rows of chunk ``index``, from the chunk's own seed.

    ``out``: arrays of the chunk's length to draw into (a shard's buffer: no second copy).
    """
    rng = plan.chunk_rng(index)
    start, stop = plan.rows(index)
    if out is None:
        out = (np.empty((stop - start, model.n_channels), dtype=np.float32),
               np.empty(stop - start, dtype=index_dtype(len(plan.sample_ids))), np.empty(stop - start, dtype=np.int64))
    intensity, codes, shot = out
    row = 0
    for seg in plan.segments(index):
        sid = plan.sample_ids[seg.sample_index]
        codes[row:row + seg.n] = seg.sample_index
        shot[row:row + seg.n] = np.arange(seg.first_draw, seg.first_draw + seg.n)
        for offset in range(0, seg.n, DRAW_BLOCK):  # bounded temporaries, whatever the chunk size
            n = min(DRAW_BLOCK, seg.n - offset)
            intensity[row + offset:row + offset + n] = sample_spectra(model, sid, n, rng)
        row += seg.n
    return intensity, codes, shot


def chunk_values(model: NoiseModel, plan: SynthesisPlan, index: int) -> dict[str, np.ndarray]:
    """Every variable's values per row of chunk ``index`` (strings and labels expanded: for in-memory datasets)."""
    intensity, codes, shot = draw_chunk(model, plan, index)
    start, stop = plan.rows(index)
    values: dict[str, np.ndarray] = {
        "spectrum": np.arange(start, stop, dtype=np.int64),
        "intensity": intensity,
        "sample_id": np.asarray(plan.sample_ids, dtype=str)[codes],
        "shot": shot,
    }
    for var, (table, _) in sample_table(model).items():
        values[var] = table[codes]
    return values


# ----------------------------------------------------------------------------------- shards


ALLOCATOR_MMAP_THRESHOLD = 256 * 2**20
ALLOCATOR_TRIM_THRESHOLD = 512 * 2**20


@lru_cache(maxsize=1)
def tune_allocator() -> bool:
    """Keep the draws' large temporaries on the heap (glibc ``mallopt``), once per process; False where unsupported.

    Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which switches off glibc's dynamic mmap
    threshold: every temporary of a draw (several MB) becomes a fresh ``mmap`` whose pages fault in and are
    zeroed again. Measured on one shard task of 1024 x 4096 (CPU s per 1024 rows): 0.296 with glibc defaults,
    0.368 with that setting; raising the mmap/trim thresholds restores the defaults' cost. A worker holds one
    shard at a time, so at most a few hundred MB stay reserved.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_mmap_threshold, ALLOCATOR_MMAP_THRESHOLD)) and bool(
        mallopt(m_trim_threshold, ALLOCATOR_TRIM_THRESHOLD))


@lru_cache(maxsize=1)
def single_threaded_compression() -> None:
    """One Blosc thread per process: a shard task already has its core (one Dask worker thread per core), and
    Blosc's default of one thread per core oversubscribes them. Measured, 2 processes writing 25 shards of
    8192 x 1024 on 2 cores: 25 300 spectra/s with Blosc's default, 29 100 with one thread."""
    import numcodecs.blosc

    numcodecs.blosc.set_nthreads(1)


@lru_cache(maxsize=4)
def _job_state(work_url: str, job_text: str) -> tuple[SynthesisJob, NoiseModel, dict[str, zarr.Array]]:
    """Job, model and open arrays of a work prefix, cached per process (keyed by the job's text)."""
    job = SynthesisJob.from_dict(json.loads(job_text), work_url)
    model = NoiseModel.from_dict(json.loads((job.work / MODEL_FILE).read_text()))
    group = zarr.open_group(job.store.zarr_store(), mode="r+", zarr_format=3)
    # every row of a shard is drawn, none equals the fill value: skip zarr's per-chunk "is it empty?" scan (an
    # np.full + array_equal per chunk, measured at half of a shard's write CPU)
    arrays = {name: group[name].with_config({"write_empty_chunks": True}) for name in ROW_ARRAYS}
    return job, model, arrays


def load_job_state(work_url: str) -> tuple[SynthesisJob, NoiseModel, dict[str, zarr.Array]]:
    tune_allocator()
    single_threaded_compression()
    location = open_location(work_url, check=False) / JOB_FILE
    return _job_state(work_url, location.read_text())


def shard_values(model: NoiseModel, plan: SynthesisPlan, shard: int) -> dict[str, np.ndarray]:
    """The per-spectrum arrays of shard ``shard`` (its chunks drawn one by one, each from its own seed)."""
    start, stop = plan.shard_rows_range(shard)
    intensity = np.empty((stop - start, model.n_channels), dtype=np.float32)
    codes = np.empty(stop - start, dtype=index_dtype(len(plan.sample_ids)))
    shot = np.empty(stop - start, dtype=np.int64)
    for index in plan.shard_chunk_range(shard):
        a, b = plan.rows(index)
        draw_chunk(model, plan, index, (intensity[a - start:b - start], codes[a - start:b - start],
                                        shot[a - start:b - start]))
    return {"intensity": intensity, INDEX: codes, "shot": shot}


TRANSIENT_ERRORS = (OSError, TimeoutError)


def with_retries(action, what: str, attempts: int | None = None, backoff_s: float | None = None):
    """``action()``, retried on transient I/O errors (OSError, TimeoutError) with exponential backoff
    (defaults: ``WRITE_ATTEMPTS`` attempts, ``WRITE_BACKOFF_S`` doubling)."""
    attempts = WRITE_ATTEMPTS if attempts is None else attempts
    backoff_s = WRITE_BACKOFF_S if backoff_s is None else backoff_s
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except TRANSIENT_ERRORS as exc:
            if attempt == attempts:
                raise OSError(f"{what}: failed {attempts} times, last: {type(exc).__name__}: {exc}") from exc
            time.sleep(backoff_s * 2 ** (attempt - 1))
    raise AssertionError("unreachable")


def write_region(arrays: dict[str, zarr.Array], start: int, stop: int, values: dict[str, np.ndarray]) -> None:
    """Write one shard's rows of every per-spectrum array (each a whole shard: one object per array)."""
    for name in ROW_ARRAYS:
        arrays[name][start:stop] = values[name]


def clear_shard(store: Location, shard: int) -> None:
    """Remove shard ``shard`` of every per-spectrum array (what an interrupted write left is never read back)."""
    for name in ROW_ARRAYS:
        target = store.join(name, "c", str(shard), *(["0"] if name == "intensity" else []))
        with_retries(target.remove, f"{store.url}: clearing shard {shard}")


def write_marker(marker: Location, shard: int, start: int, stop: int) -> None:
    marker.write_json({"shard": shard, "rows": [start, stop]})


def write_shard(work_url: str, shard: int) -> dict[str, Any]:
    """Draw and write shard ``shard`` unless its marker says it is done; then write the marker.

    The unit of work of a generation run (a Dask task): takes a URL and an index, returns a tiny dict. Store
    credentials and endpoints come from the worker's environment, never from the arguments.
    """
    job, model, arrays = load_job_state(work_url)
    marker = job.marker(shard)
    if marker.exists():
        return {"shard": shard, "written": False}
    start, stop = job.plan.shard_rows_range(shard)
    values = shard_values(model, job.plan, shard)
    if stop - start < job.plan.shard_rows:  # the edge shard: zarr would merge into (and so read) what is there
        clear_shard(job.store, shard)
    with_retries(lambda: write_region(arrays, start, stop, values), f"{job.store_url}: shard {shard}")
    with_retries(lambda: write_marker(marker, shard, start, stop), f"{marker.url}: completion marker")
    return {"shard": shard, "written": True}


# ------------------------------------------------------------------------------------- read


def open_synthetic(uri: str | Location) -> xr.Dataset:
    """Open a published synthetic store lazily (dask arrays, chunked along ``spectrum``).

    The per-spectrum ``sample_id``, ``source_sample``, ``mix_weight``, ``synthetic`` and label variables are
    derived lazily from ``sample_index`` and the sample table. A store whose manifest is missing is refused:
    its generation has not finished (rerun it to resume).
    """
    store = open_location(uri)
    if not (store / "zarr.json").is_file():
        raise FileNotFoundError(f"{store.url}: not a zarr store (no zarr.json)")
    attrs = (store / "zarr.json").read_json().get("attributes", {})
    if not attrs.get("synthetic"):
        raise ValueError(f"{store.url}: not a synthetic store (attrs has no synthetic=True)")
    if "synthetic_format" in attrs and attrs["synthetic_format"] != STORE_FORMAT:
        raise ValueError(f"{store.url}: synthetic store format {attrs['synthetic_format']!r} is not {STORE_FORMAT!r} "
                         "(regenerate it)")
    return open_sample_indexed(store)
