"""Generate a synthetic store from a measured dataset: fit, plan, template, shards (Dask), publish.

``generate_synthetic`` = ``prepare_synthesis`` (fit the noise model, write the template at the final URL;
returns the job) + ``run_chunks`` (one task per shard, serially or on a Dask cluster given by address or
client) + ``finalize_synthesis`` (fitted parameters, then the manifest, written last, beside the store).
The output root is a URL (local path, ``file://``, ``s3://``, ...; see ``spectra.location``). Tasks receive a
URL string and a shard index, never arrays or credentials; each worker holds one shard at a time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import xarray as xr

from libs_pipeline.spectra.location import Location, open_location, redact
from libs_pipeline.spectra.store import LATEST, SpectraStore, open_spectra
from libs_pipeline.synth.interpolation import interpolate_samples
from libs_pipeline.synth.noise_model import Detector, ShotFactor, fit_noise_model
from libs_pipeline.synth.plan import SynthesisPlan
from libs_pipeline.synth.synthetic_store import (
    JOB_FILE,
    MODEL_FILE,
    STORE_FORMAT,
    SynthesisJob,
    create_template,
    model_json,
    open_synthetic,
    published_model_location,
    read_job,
    store_attrs,
    store_id,
    work_location,
    write_shard,
)

TASK_RETRIES = 3  # Dask retries of a shard task (on top of the bounded retry around its writes)

Progress = Callable[[int, int], None]


class SynthesisError(RuntimeError):
    """One or more shards failed; the shards that succeeded keep their markers, so a rerun resumes."""


# ------------------------------------------------------------------------------------ inputs


def open_measured(dataset: str | Path | xr.Dataset) -> xr.Dataset:
    """The measured dataset: an xr.Dataset, a .zarr/.nc path, or a store URI ``<root>#<name>@<version>``."""
    if isinstance(dataset, xr.Dataset):
        return dataset
    return open_spectra(dataset)


def dataset_identity(dataset: str | Path | xr.Dataset, ds: xr.Dataset) -> dict[str, Any]:
    """Name and version of the measured dataset, from a store URI, a store path or the dataset attrs."""
    name = ds.attrs.get("name")
    version = ds.attrs.get("version")
    if not isinstance(dataset, xr.Dataset):
        text = str(dataset)
        if "#" in text:  # <root>#<name>@<version>, version resolved (LATEST -> the current one)
            root, _, ref = text.partition("#")
            name, _, version = ref.partition("@")
            version = SpectraStore(root).ref(name, version or LATEST).rpartition("@")[2]
        else:
            location = open_location(text, check=False)
            stem = location.name.rsplit(".", 1)[0] if "." in location.name else location.name
            if location.parent.parent.name == "spectra":  # <root>/spectra/<name>/<version>.zarr
                name, version = location.parent.name, stem
            else:
                name = name or stem
    return {"name": str(name or "dataset"), "version": None if version is None else str(version)}


# --------------------------------------------------------------------------------- prepare


def prepare_synthesis(
    dataset_uri: str | Path | xr.Dataset,
    out_uri: str | Path,
    per_sample: int,
    seed: int = 0,
    chunk_size: int = 1024,
    *,
    shard_chunks: int = 8,
    name: str | None = None,
    detector: Detector = "per_sample",
    shot_factor: ShotFactor = "normal",
    saturation: float | Literal["auto"] | None = "auto",
    instrument_fwhm_nm: float | None = None,
    max_shape_modes: int | None = None,
    interpolate_between: int = 0,
    interpolation_analyte: str | None = None,
) -> SynthesisJob:
    """Fit the noise model and write the store template; returns the job (reused when it already exists).

    ``out_uri``: a store root URL (the store goes to ``<root>/synthetic/<name>/<id>.zarr``) or a URL ending
    in ``.zarr`` (used as is). The id is a hash of the fitted model and the plan, so the same inputs,
    seed and chunking always address the same store, which is what makes a rerun resume. An object-store
    root that cannot be reached fails here (``StoreUnreachableError``), before anything is written.
    """
    out = open_location(out_uri)
    ds = open_measured(dataset_uri)
    identity = dataset_identity(dataset_uri, ds)
    name = name or identity["name"]
    model = fit_noise_model(
        ds,
        detector=detector,
        shot_factor=shot_factor,
        saturation=saturation,
        instrument_fwhm_nm=instrument_fwhm_nm,
        max_shape_modes=max_shape_modes,
    )
    model = interpolate_samples(model, interpolate_between, interpolation_analyte)
    plan = SynthesisPlan(tuple(model.sample_ids), int(per_sample), int(chunk_size), int(seed), int(shard_chunks))
    text = model_json(model)
    sid = store_id(text, plan)
    store = out if out.name.endswith(".zarr") else out / "synthetic" / name / f"{sid}.zarr"
    source = {"name": identity["name"], "version": identity["version"]}
    source_uri = None if isinstance(dataset_uri, xr.Dataset) else redact(str(dataset_uri))  # no credentials kept
    job = SynthesisJob(
        id=sid,
        store_url=store.url,
        plan=plan,
        name=name,
        attrs={**store_attrs(model, plan, text, source), "synthetic_id": sid},
        source_uri=source_uri,
    )
    existing_id = _store_id_of(store)
    if job.complete():
        if existing_id != sid:
            raise ValueError(
                f"{store.url}: already holds synthetic store {existing_id}, not {sid} (a different model or plan); "
                "remove it or choose another --out"
            )
        return job
    work = work_location(store)
    if (work / JOB_FILE).is_file():
        existing = read_job(work)
        if existing.id != sid:
            raise ValueError(
                f"{work.url}: holds job {existing.id}, not {sid} (a different model or plan for the same output path); "
                "remove it or choose another --out"
            )
        return existing
    if existing_id not in (None, sid) or (existing_id is None and (store / "zarr.json").exists()):
        raise ValueError(
            f"{store.url}: already holds a zarr store ({existing_id or 'not a synthetic store'}), not {sid}; "
            "remove it or choose another --out"
        )
    work.remove()  # a template whose writing was interrupted (no job.json): start it again
    create_template(job, model, text)
    return job


def _store_id_of(store: Location) -> str | None:
    try:
        return (store / "zarr.json").read_json()["attributes"].get("synthetic_id")
    except (OSError, ValueError, KeyError):
        return None


# -------------------------------------------------------------------------------------- run


@contextmanager
def _client(client_or_address):
    """A distributed.Client for an address (closed afterwards) or the given client as is."""
    from distributed import Client

    if isinstance(client_or_address, str):
        client = Client(client_or_address, set_as_default=False)
        try:
            yield client
        finally:
            client.close()
    else:
        yield client_or_address


@contextmanager
def cluster_address(address: str | None, n_workers: int = 2) -> Iterator[str]:
    """``address`` as is, or the address of a fresh LocalCluster (worker processes, 1 thread each), closed on exit."""
    if address:
        yield address
        return
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        yield cluster.scheduler_address


def _job(job: SynthesisJob | str | Location) -> SynthesisJob:
    return job if isinstance(job, SynthesisJob) else read_job(job)


def run_chunks(job: SynthesisJob | str | Location, client_or_address=None, progress: Progress | None = None) -> int:
    """Write every shard that has no marker yet; returns how many were written in this call.

    ``job``: a job or its work prefix URL. ``client_or_address``: None runs the shards in this process, one
    after another; a ``distributed.Client`` or a scheduler address (``tcp://host:port``) runs one task per
    shard on that cluster (retried ``TASK_RETRIES`` times, e.g. when its worker dies). ``progress(done, total)``
    counts shards. Failed shards raise ``SynthesisError`` after the others have finished.
    """
    job = _job(job)
    total = job.plan.n_shards
    if job.complete():
        if progress:
            progress(total, total)
        return 0
    pending = job.pending_shards()
    done = total - len(pending)
    if progress:
        progress(done, total)
    failures: list[tuple[int, BaseException]] = []
    written = 0
    work = job.work_url
    if client_or_address is None:
        for index in pending:
            try:
                written += bool(write_shard(work, index)["written"])
            except Exception as exc:  # keep going: every finished shard is progress a rerun keeps
                failures.append((index, exc))
            done += 1
            if progress:
                progress(done, total)
    else:
        from distributed import as_completed

        with _client(client_or_address) as client:
            keys = [f"synth-{job.id}-{i}" for i in pending]
            futures = client.map(write_shard, [work] * len(pending), pending, key=keys, retries=TASK_RETRIES)
            index_of = {f.key: i for f, i in zip(futures, pending)}
            for future in as_completed(futures, loop=client.loop):
                try:
                    written += bool(future.result()["written"])
                except Exception as exc:
                    failures.append((index_of[future.key], exc))
                future.release()
                done += 1
                if progress:
                    progress(done, total)
    if failures:
        failures.sort(key=lambda f: f[0])
        first_index, first = failures[0]
        raise SynthesisError(
            f"{len(failures)} of {total} shards failed (first: shard {first_index}: {type(first).__name__}: {first}); "
            f"rerun to resume: finished shards are kept in {job.store_url} (markers in {work})"
        ) from first
    return written


# --------------------------------------------------------------------------------- finalize


def finalize_synthesis(job: SynthesisJob | str | Location) -> str:
    """Publish a job whose shards are all written: the parameters, then the manifest (last); returns the store URL."""
    job = _job(job)
    if job.complete():
        job.work.remove()
        return job.store_url
    missing = job.pending_shards()
    if missing:
        raise SynthesisError(f"{job.work_url}: {len(missing)} shard(s) not written yet (first: {missing[0]}); "
                             "run them first")
    model_text = (job.work / MODEL_FILE).read_text()
    model_target = published_model_location(job.store)
    model_target.write_text(model_text)
    job.manifest.write_json(
        {
            "format": STORE_FORMAT,
            "id": job.id,
            "name": job.name,
            "store": job.store.name,
            "source": {"uri": job.source_uri, **job.attrs["source"]},
            "plan": job.plan.to_dict(),
            "n_spectra": job.plan.n_spectra,
            "n_chunks": job.plan.n_chunks,
            "n_shards": job.plan.n_shards,
            "noise_model": {"file": model_target.name,
                            "sha256": hashlib.sha256(model_text.encode("utf-8")).hexdigest()},
            "attrs": job.attrs,
        },
    )
    job.work.remove()
    return job.store_url


def generate_synthetic(
    dataset_uri: str | Path | xr.Dataset,
    out_uri: str | Path,
    per_sample: int,
    seed: int = 0,
    chunk_size: int = 1024,
    client_or_address=None,
    *,
    progress: Progress | None = None,
    **options: Any,
) -> str:
    """Fit, generate (resumable, deterministic) and publish; returns the URL of ``<id>.zarr``.

    ``options`` go to ``prepare_synthesis`` (shard_chunks, name, detector, shot_factor, saturation, instrument_fwhm_nm,
    max_shape_modes, interpolate_between, interpolation_analyte). Bytes depend only on (inputs, seed, chunk_size).
    """
    job = prepare_synthesis(dataset_uri, out_uri, per_sample, seed, chunk_size, **options)
    run_chunks(job, client_or_address, progress)
    return finalize_synthesis(job)


__all__ = [
    "SynthesisError",
    "cluster_address",
    "finalize_synthesis",
    "generate_synthetic",
    "open_measured",
    "open_synthetic",
    "prepare_synthesis",
    "run_chunks",
]
