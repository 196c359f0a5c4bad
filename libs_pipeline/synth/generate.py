"""Generate a synthetic store from a measured dataset: fit, plan, template, chunks (Dask), publish.

``generate_synthetic`` = ``prepare_synthesis`` (fit the noise model, write the template; returns the
work folder) + ``run_chunks`` (one task per chunk, serially or on a Dask cluster given by address or
client) + ``finalize_synthesis`` (rename into place, manifest and fitted parameters beside the store).
Tasks receive a path and a chunk index, never arrays; each worker holds one chunk at a time.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import xarray as xr

from libs_pipeline.spectra.atomic import atomic_write_json, atomic_write_text
from libs_pipeline.spectra.file_hash import file_sha256
from libs_pipeline.spectra.store import LATEST, SpectraStore, local_path, open_spectra
from libs_pipeline.synth.interpolation import interpolate_samples
from libs_pipeline.synth.noise_model import Detector, ShotFactor, fit_noise_model
from libs_pipeline.synth.plan import SynthesisPlan
from libs_pipeline.synth.synthetic_store import (
    JOB_FILE,
    STORE_FORMAT,
    SynthesisJob,
    create_template,
    model_json,
    open_synthetic,
    read_job,
    store_attrs,
    store_id,
    work_dir_for,
    write_chunk,
)

Progress = Callable[[int, int], None]


class SynthesisError(RuntimeError):
    """One or more chunks failed; the chunks that succeeded keep their markers, so a rerun resumes."""


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
            path = local_path(text)
            if path.parent.parent.name == "spectra":  # <root>/spectra/<name>/<version>.zarr
                name, version = path.parent.name, path.stem
            else:
                name = name or path.stem
    return {"name": str(name or "dataset"), "version": None if version is None else str(version)}


# --------------------------------------------------------------------------------- prepare


def prepare_synthesis(
    dataset_uri: str | Path | xr.Dataset,
    out_uri: str | Path,
    per_sample: int,
    seed: int = 0,
    chunk_size: int = 1024,
    *,
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

    ``out_uri``: a store root (the store goes to ``<root>/synthetic/<name>/<id>.zarr``) or a path ending
    in ``.zarr`` (used as is). The id is a hash of the fitted model and the plan, so the same inputs,
    seed and chunking always address the same store, which is what makes a rerun resume.
    """
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
    plan = SynthesisPlan(tuple(model.sample_ids), int(per_sample), int(chunk_size), int(seed))
    text = model_json(model)
    sid = store_id(text, plan)
    out = local_path(out_uri)
    final = out if out.suffix == ".zarr" else out / "synthetic" / name / f"{sid}.zarr"
    work = work_dir_for(final)
    source = {"name": identity["name"], "version": identity["version"]}
    source_uri = None if isinstance(dataset_uri, xr.Dataset) else str(dataset_uri)
    job = SynthesisJob(
        id=sid,
        work_dir=work,
        final_path=final,
        plan=plan,
        name=name,
        attrs={**store_attrs(model, plan, text, source), "synthetic_id": sid},
        source_uri=source_uri,
    )
    if final.exists():
        existing_id = _store_id_of(final)
        if existing_id != sid:
            raise ValueError(
                f"{final}: already holds synthetic store {existing_id}, not {sid} (a different model or plan); "
                "remove it or choose another --out"
            )
        return job
    if (work / JOB_FILE).is_file():
        existing = read_job(work)
        if existing.id != sid:
            raise ValueError(
                f"{work}: holds job {existing.id}, not {sid} (a different model or plan for the same output path); "
                "remove it or choose another --out"
            )
        return existing
    if work.exists():  # a template whose writing was interrupted: start it again
        shutil.rmtree(work)
    create_template(job, model, text)
    return job


def _store_id_of(path: Path) -> str | None:
    try:
        return json.loads((path / "zarr.json").read_text())["attributes"].get("synthetic_id")
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


def run_chunks(job: SynthesisJob | str | Path, client_or_address=None, progress: Progress | None = None) -> int:
    """Write every chunk that has no marker yet; returns how many were written in this call.

    ``client_or_address``: None runs the chunks in this process, one after another; a
    ``distributed.Client`` or a scheduler address (``tcp://host:port``) runs one task per chunk on that
    cluster. Failed chunks raise ``SynthesisError`` after the others have finished.
    """
    job = job if isinstance(job, SynthesisJob) else read_job(job)
    total = job.plan.n_chunks
    if job.final_path.exists():
        if progress:
            progress(total, total)
        return 0
    pending = job.pending_chunks()
    done = total - len(pending)
    if progress:
        progress(done, total)
    failures: list[tuple[int, BaseException]] = []
    written = 0
    work = str(job.work_dir)
    if client_or_address is None:
        for index in pending:
            try:
                written += bool(write_chunk(work, index)["written"])
            except Exception as exc:  # keep going: every finished chunk is progress a rerun keeps
                failures.append((index, exc))
            done += 1
            if progress:
                progress(done, total)
    else:
        from distributed import as_completed

        with _client(client_or_address) as client:
            keys = [f"synth-{job.id}-{i}" for i in pending]
            futures = client.map(write_chunk, [work] * len(pending), pending, key=keys, retries=0)
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
            f"{len(failures)} of {total} chunks failed (first: chunk {first_index}: {type(first).__name__}: {first}); "
            f"rerun to resume: finished chunks are kept in {job.work_dir}"
        ) from first
    return written


# --------------------------------------------------------------------------------- finalize


def finalize_synthesis(job: SynthesisJob | str | Path) -> str:
    """Publish a job whose chunks are all written: parameters and manifest beside, then rename the store."""
    job = job if isinstance(job, SynthesisJob) else read_job(job)
    final = job.final_path
    if final.exists():
        shutil.rmtree(job.work_dir, ignore_errors=True)
        return str(final)
    missing = job.pending_chunks()
    if missing:
        raise SynthesisError(f"{job.work_dir}: {len(missing)} chunk(s) not written yet (first: {missing[0]}); run them first")
    model_target = final.parent / f"{final.stem}.noise_model.json"
    atomic_write_text(model_target, job.model_path.read_text())
    atomic_write_json(
        final.parent / f"{final.stem}.manifest.json",
        {
            "format": STORE_FORMAT,
            "id": job.id,
            "name": job.name,
            "store": final.name,
            "source": {"uri": job.source_uri, **job.attrs["source"]},
            "plan": job.plan.to_dict(),
            "n_spectra": job.plan.n_spectra,
            "n_chunks": job.plan.n_chunks,
            "noise_model": {"file": model_target.name, "sha256": file_sha256(model_target)},
            "attrs": job.attrs,
        },
    )
    try:
        os.rename(job.store_path, final)
    except OSError:
        if not final.exists():
            raise
    shutil.rmtree(job.work_dir, ignore_errors=True)
    return str(final)


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
    """Fit, generate (resumable, deterministic) and publish; returns the path of ``<id>.zarr``.

    ``options`` go to ``prepare_synthesis`` (name, detector, shot_factor, saturation, instrument_fwhm_nm,
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
