"""`libs-pipeline ...`: the command-line interface (typer). Commands are thin wrappers around the library."""

from __future__ import annotations

import os
from pathlib import Path

import typer

# The temporary Prefect API the flows start has no internet to send usage telemetry to (and should not).
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# The library's loggers (libs_pipeline.*) go to the flow-run logs (UI), also with the temporary API; Prefect reads
# this when it is first imported (the flows import it later).
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "libs_pipeline")
os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")  # library calls outside a flow run

app = typer.Typer(help="libs-pipeline: trustworthy LIBS calibration models.", no_args_is_help=True)


@app.callback()
def main() -> None:
    """Ingest, synthesise, train, evaluate, recalibrate and predict LIBS calibration models."""


# --- simulate (physics) ---



@app.command("simulate")
def simulate(
    out_dir: str = typer.Argument(..., help="folder for the raw files, manifest.yaml and ground-truth tables"),
    samples: int = typer.Option(None, "--samples", min=1, help="reference samples (default 30)"),
    shots: int = typer.Option(None, "--shots", min=1, help="laser shots per sample (default 20)"),
    seed: int = typer.Option(0, "--seed", min=0, help="random seed (same seed -> same bytes)"),
    scenario: str = typer.Option("nominal", "--scenario", help="nominal, temperature_shift, low_laser_energy, "
                                 "wavelength_shift, steel_matrix, interfering_element, gain_change"),
    severity: str = typer.Option("mild", "--severity", help="mild | strong"),
    channels: int = typer.Option(None, "--channels", min=16, help="spectrometer channels over 250-850 nm (default 4096)"),
    config_file: Path = typer.Option(None, "--config", exists=True, dir_okay=False,
                                     help="YAML/JSON file of CampaignConfig fields (the options above override it)"),
    workers: int = typer.Option(None, "--workers", min=1, help="processes (default: available CPUs)"),
) -> None:
    """Simulate a virtual LIBS campaign (libskit plasma -> spectrometer -> detector); prints the manifest path."""
    import yaml
    from pydantic import ValidationError

    from libs_pipeline.config import CampaignConfig
    from libs_pipeline.physics.campaign import simulate_campaign, write_campaign_files
    from libs_pipeline.physics.scenarios import scenario_config

    try:
        fields = yaml.safe_load(config_file.read_text()) if config_file else {}
        if not isinstance(fields, dict):
            raise ValueError(f"{config_file}: expected a mapping of CampaignConfig fields")
        given = {"n_samples": samples, "n_shots": shots, "n_channels": channels}
        fields.update({k: v for k, v in given.items() if v is not None})
        config = scenario_config(CampaignConfig.model_validate(fields), scenario, severity)
    except (ValueError, ValidationError, yaml.YAMLError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    campaign = simulate_campaign(config, seed=seed, workers=workers)
    typer.echo(str(write_campaign_files(campaign, out_dir)))


# --- ingest (spectra) ---

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3
EXIT_CODES_HELP = (
    "Exit codes: 0 every file landed (or was already ingested); 3 partial: some files were rejected "
    "(quarantined), the rest landed; 1 every new file was rejected, nothing landed; 2 bad options (including a "
    "store root that is malformed, of an unknown scheme or unreachable: nothing is written)."
)


def _ingest_options(**kwargs):
    """IngestOptions from command-line values; a bad value exits 2 with pydantic's message."""
    from pydantic import ValidationError

    from libs_pipeline.config import IngestOptions

    try:
        return IngestOptions(**{k: v for k, v in kwargs.items() if v is not None})
    except ValidationError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from None


def _print_ingest(result) -> None:
    """The ingest outcome for people: counts, each accepted file's layout, one line per (file, rule) finding."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(width=200, markup=False, highlight=False)
    console.print(f"version {result.version or '(none)'}  status {result.status}  dataset {result.name}")
    console.print(
        f"{result.n_spectra} spectra ({result.n_new_spectra} new); files: {len(result.accepted)} accepted, "
        f"{len(result.skipped)} already ingested, {len(result.rejected_files)} rejected; {len(result.warnings)} warning(s)"
    )
    for f in result.files:
        console.print(f"  {f['file']}: {f.get('layout')} ({f.get('layout_source')}); "
                      + "; ".join(str(f[k]) for k in ("encoding", "number_format", "compression") if f.get(k)))
    for title, findings in (("rejected", result.rejected), ("warnings", result.warnings)):
        if not findings:
            continue
        table = Table("file", "rule", "count", "first at", "last at", "reason", title=title)
        for r in findings:
            table.add_row(*[Text(x) for x in (r.file, r.rule, str(r.count), r.first_at(), r.last_at(), r.reason)])
        console.print(table)
    if result.quarantine_report:
        console.print(f"quarantine: {result.quarantine_report}")
    console.print(f"report: {result.report_path}")


def _ingest_exit_code(result) -> int:
    return {"rejected": EXIT_REJECTED, "partial": EXIT_PARTIAL}.get(result.status, EXIT_OK)


_ROOT_HELP = "store root: spectra/, synthetic/, models/, reports/ under it (env LIBS_PIPELINE_ROOT)"
_OVERLAP_HELP = "overlapping spectrometer segments: average | keep_first | keep_second | reject"
_BAD_SHOT_HELP = "dead/flat/fully saturated shots: warn (keep) | drop | reject (the file)"


@app.command("ingest", epilog=EXIT_CODES_HELP)
def ingest_command(
    manifest: str = typer.Argument(..., help="campaign manifest (.yaml or .csv); labels are optional (unknown samples)"),
    store: str = typer.Option(..., "--root", "--store", envvar="LIBS_PIPELINE_ROOT", help=_ROOT_HELP),
    name: str = typer.Option(None, "--name", help="dataset name (default: manifest name or file stem)"),
    resample: bool = typer.Option(False, "--resample", help="interpolate files on another grid onto the dataset grid"),
    max_file_mb: float = typer.Option(200.0, "--max-file-mb", help="reject files (decompressed) larger than this"),
    dark_tolerance: float = typer.Option(100.0, "--dark-tolerance", help="reject intensities below -X counts"),
    saturation_level: float = typer.Option(None, "--saturation-level", help="warn about channels near this level"),
    overlap_policy: str = typer.Option("average", "--overlap-policy", help=_OVERLAP_HELP),
    bad_shot_policy: str = typer.Option("warn", "--bad-shot-policy", help=_BAD_SHOT_HELP),
    lock_timeout: float = typer.Option(600.0, "--lock-timeout", help="seconds to wait for another ingest of the dataset"),
) -> None:
    """Validate and ingest a campaign into a new version of a spectra dataset (exit codes below)."""
    from libs_pipeline.config import IngestConfig
    from libs_pipeline.spectra.ingest import run_ingest

    options = _ingest_options(
        resample=resample, max_file_mb=max_file_mb, dark_tolerance=dark_tolerance, saturation_level=saturation_level,
        overlap_policy=overlap_policy, bad_shot_policy=bad_shot_policy, lock_timeout_s=lock_timeout,
    )
    root = _open_store_root(store)
    result = run_ingest(IngestConfig(manifest=manifest, root=root.url, name=name, options=options))
    _print_ingest(result)
    code = _ingest_exit_code(result)
    if code:
        raise typer.Exit(code)


def _open_store_root(url: str):
    """The store root's Location; a malformed, unknown or unreachable root exits 2 with a message naming it
    (checked before anything is written)."""
    from libs_pipeline.spectra.location import StoreUnreachableError, StoreURLError, open_location, redact

    try:
        return open_location(url)
    except (StoreURLError, StoreUnreachableError) as exc:
        message = str(exc) if redact(url) in str(exc) else f"store root {redact(url)}: {exc}"
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(EXIT_USAGE) from None


spectra_app = typer.Typer(help="Versioned spectra datasets: list and show.", no_args_is_help=True)
app.add_typer(spectra_app, name="spectra")


@spectra_app.command("list")
def spectra_list(
    name: str = typer.Argument(None, help="dataset name (all datasets when omitted)"),
    store: str = typer.Option(..., "--root", "--store", envvar="LIBS_PIPELINE_ROOT", help=_ROOT_HELP),
) -> None:
    """Versions of each dataset, oldest first; * marks LATEST."""
    from rich.console import Console
    from rich.table import Table

    from libs_pipeline.spectra.store import SpectraStore

    spectra_store = SpectraStore(_open_store_root(store))
    names = [name] if name else spectra_store.names()
    table = Table("dataset", "version", "", "created", "spectra", "samples", "channels", "sources")
    for n in names:
        latest = spectra_store.latest(n)
        for v in spectra_store.versions(n):
            m = spectra_store.manifest(n, v)
            c = m["counts"]
            table.add_row(n, v, "*" if v == latest else "", m["created"][:19], str(c["n_spectra"]), str(c["n_samples"]),
                          str(c["n_channels"]), str(c["n_sources"]))
    Console(width=160).print(table)


@spectra_app.command("show")
def spectra_show(
    name: str = typer.Argument(..., help="dataset name"),
    version: str = typer.Argument("LATEST", help="version id or LATEST"),
    store: str = typer.Option(..., "--root", "--store", envvar="LIBS_PIPELINE_ROOT", help=_ROOT_HELP),
) -> None:
    """One version: counts, grid, sources and the per-sample table."""
    from rich.console import Console
    from rich.table import Table

    from libs_pipeline.spectra.store import SpectraStore, VersionNotFoundError

    spectra_store = SpectraStore(_open_store_root(store))
    try:
        m = spectra_store.manifest(name, version)
        samples = spectra_store.samples(name, version)
    except (VersionNotFoundError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    console = Console(width=160, markup=False, highlight=False)
    wl = m["wavelength_nm"]
    console.print(f"{name}@{m['version']} created {m['created']} (parent {m['parent']}), uri {spectra_store.uri(name, m['version'])}")
    console.print(f"{m['counts']}; grid {wl['min']:.4f}-{wl['max']:.4f} nm; readers {m['reader']}")
    table = Table(*[str(c) for c in samples.columns], title="samples")
    for row in samples.itertuples(index=False):
        table.add_row(*["" if v is None or v != v else str(v) for v in row])
    console.print(table)
    sources = Table("file", "sha256", "reader", "spectra", "run", title="sources")
    for s in m["sources"]:
        sources.add_row(s["file"], s["sha256"][:16], s["reader"], str(s["n_spectra"]), s.get("run", ""))
    console.print(sources)


# --- synthesize (synth) ---


@app.command("synthesize")
def synthesize_command(
    dataset: str = typer.Option(..., "--dataset", help="with --store: a version id or LATEST; else a .zarr/.nc path or store URI"),
    per_sample: int = typer.Option(..., "--per-sample", min=1, help="synthetic spectra per sample"),
    out: str = typer.Option(None, "--out", help="output store root or a path ending in .zarr (default: --root)"),
    store: str = typer.Option(None, "--root", "--store", help="store root that --dataset is a version of (no "
                              "LIBS_PIPELINE_ROOT default here: without --root, --dataset is a path or store URI)"),
    name: str = typer.Option(None, "--name", help="dataset name in the store (needed with --store)"),
    seed: int = typer.Option(0, "--seed", min=0, help="same seed + inputs + chunk size -> same bytes"),
    chunk_size: int = typer.Option(1024, "--chunk-size", min=1, help="spectra per chunk (sets peak memory)"),
    shard_chunks: int = typer.Option(8, "--shard-chunks", min=1, help="chunks per shard (one object, one Dask task)"),
    dask_address: str = typer.Option(None, "--dask-address", help="tcp://host:port of an existing Dask scheduler"),
    workers: int = typer.Option(2, "--workers", min=0, help="LocalCluster processes without --dask-address; 0 = in-process"),
    detector: str = typer.Option("per_sample", "--detector", help="per_sample | pooled gain and read noise"),
    shot_factor: str = typer.Option("normal", "--shot-factor", help="normal | lognormal"),
    max_shape_modes: int = typer.Option(None, "--max-shape-modes", min=0, help="0 = the paper's model only"),
    interpolate_between: int = typer.Option(0, "--interpolate-between", min=0, help="virtual samples between neighbours"),
    realism: bool = typer.Option(True, "--realism/--no-realism", help="write the realism report beside the store"),
) -> None:
    """Draw synthetic spectra from the per-sample noise model fitted to a measured dataset (resumable)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from libs_pipeline.config import SynthesisConfig
    from libs_pipeline.spectra.location import StoreUnreachableError
    from libs_pipeline.spectra.store import SpectraStore, VersionNotFoundError
    from libs_pipeline.synth.generate import SynthesisError, finalize_synthesis
    from libs_pipeline.synth.synthesis_run import prepare_from_config, realism_from_config, write_chunks

    console = Console(markup=False, highlight=False, soft_wrap=True)
    try:
        if store is not None:
            if not name:
                raise ValueError("--root needs --name (the dataset name in the store)")
            dataset_uri = SpectraStore(store).uri(name, dataset)
        else:
            dataset_uri = dataset
        out_uri = out or store
        if out_uri is None:
            raise ValueError("give --out (or --root, which then receives the synthetic store)")
        config = SynthesisConfig(
            dataset_uri=dataset_uri, out_uri=out_uri, per_sample=per_sample, seed=seed, chunk_size=chunk_size,
            shard_chunks=shard_chunks, name=name, detector=detector, shot_factor=shot_factor, max_shape_modes=max_shape_modes,
            interpolate_between=interpolate_between, dask_address=dask_address, n_workers=max(workers, 1),
            realism=realism,
        )
        job = prepare_from_config(config)
    except (ValueError, FileNotFoundError, VersionNotFoundError, StoreUnreachableError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    console.print(f"{job.plan.n_spectra} spectra of {len(job.plan.sample_ids)} samples in {job.plan.n_shards} shards "
                  f"of {job.plan.shard_chunks} chunks -> {job.store_url}")
    columns = (TextColumn("synthesizing"), BarColumn(), MofNCompleteColumn(), TextColumn("shards"),
               TimeElapsedColumn(), TimeRemainingColumn())
    try:
        with Progress(*columns, console=console) as bar:
            bar_task = bar.add_task("shards", total=job.plan.n_shards)

            def progress(done: int, total: int) -> None:
                bar.update(bar_task, completed=done, total=total)

            write_chunks(job, config, progress, in_process=dask_address is None and workers == 0)
        uri = finalize_synthesis(job)
    except SynthesisError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    console.print(f"synthetic store: {uri}")
    if realism:
        report, paths = realism_from_config(config, uri)
        console.print(f"realism report: {'PASSED' if report.passed else 'FAILED'} ({paths['markdown']}, {paths['figure']})")
        for failure in report.failures:
            console.print(f"  - {failure}")

@app.command("plan-synthesis")
def plan_synthesis_command(
    n_spectra: int = typer.Option(..., "--n-spectra", min=1, help="spectra in the store (rounded up to whole samples)"),
    n_channels: int = typer.Option(4096, "--n-channels", min=1, help="wavelength channels per spectrum"),
    n_samples: int = typer.Option(8, "--n-samples", min=1, help="samples in the noise model"),
    chunk_size: int = typer.Option(1024, "--chunk-size", min=1, help="spectra per chunk (the seed unit)"),
    shard_chunks: int = typer.Option(8, "--shard-chunks", min=1, help="chunks per shard (one object, one task)"),
    labels: int = typer.Option(1, "--labels", min=0, help="label variables in the sample table"),
    integer: bool = typer.Option(False, "--integer/--float", help="integer-count model (codec and ratio)"),
    dataset: str = typer.Option(None, "--dataset", help="measured dataset: fit its model and measure the intensity "
                                "compression ratio on one drawn chunk (sets channels, samples, labels, integer)"),
) -> None:
    """Dry run: print (JSON) the layout, file count, bytes, tasks and planning time/memory of a synthetic store."""
    import json

    from libs_pipeline.synth.layout_plan import plan_layout, ratio_from_model

    ratio = None
    try:
        if dataset is not None:
            from libs_pipeline.synth.generate import open_measured
            from libs_pipeline.synth.noise_model import fit_noise_model

            model = fit_noise_model(open_measured(dataset))
            ratio = ratio_from_model(model, chunk_size)
            n_channels, n_samples = model.n_channels, len(model.sample_ids)
            labels, integer = len(model.label_units), bool(model.integer)
        result = plan_layout(n_spectra, n_channels, n_samples, chunk_size, shard_chunks, labels, integer, ratio)
    except (ValueError, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(json.dumps(result, indent=2))


# --- train / evaluate (models, evaluation) ---


@app.command("train")
def train_command(
    config_file: str = typer.Argument(..., help="TrainingConfig as YAML/JSON (analyte, measured_uris, synthetic_uris, ...)"),
    model_dir: str = typer.Option(None, "--model-dir", help="model directory to write (default: <output_dir>/<name>)"),
    no_progress: bool = typer.Option(False, "--no-progress", help="hide the progress bar"),
) -> None:
    """Train the multitask CNN on the config's data URIs; prints the model directory."""
    from libs_pipeline.models.training_run import load_training_config, run_training

    try:
        config = load_training_config(config_file)
        if no_progress:
            config = config.model_copy(update={"progress_bar": False})
        if model_dir:
            config = config.model_copy(update={"model_dir": model_dir})
        path = run_training(config)
    except (ValueError, FileNotFoundError, FileExistsError, RuntimeError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(str(path))



@app.command("evaluate")
def evaluate_command(
    dataset_uri: str = typer.Argument(..., help="spectra dataset: .zarr / .nc path or store URI"),
    root: str = typer.Option("runs", "--root", envvar="LIBS_PIPELINE_ROOT", help="report goes to <root>/reports/<run>/"),
    model_dir: str = typer.Option(None, "--model-dir", help="trained neural model directory to evaluate too"),
    analyte: str = typer.Option(None, "--analyte", help="label to evaluate (default: the dataset's first label)"),
    test_sample: list[str] = typer.Option(None, "--test-sample", help="held-out sample id (repeatable)"),
    test_fraction: float = typer.Option(0.3, "--test-fraction", help="share of samples held out when none given"),
    seed: int = typer.Option(0, "--seed", help="seed of the held-out draw"),
    run_name: str = typer.Option(None, "--run-name", help="report folder name (default: evaluate-<UTC time>)"),
    pls_max_components: int = typer.Option(10, "--pls-max-components"),
    protocol: str = typer.Option("auto", "--protocol", help="auto | holdout | nested (leave-one-sample-out; "
                                 "auto: nested for small campaigns)"),
) -> None:
    """Score the baselines (and a model) on held-out samples, or every sample by nested leave-one-sample-out on
    a small campaign; write the report."""
    from pydantic import ValidationError

    from libs_pipeline.config import EvaluationConfig
    from libs_pipeline.evaluation.report import SUMMARY_COLUMNS, markdown_table
    from libs_pipeline.evaluation.run import run_evaluation

    try:
        config = EvaluationConfig(
            dataset_uri=dataset_uri, root=root, model_dir=model_dir, analyte=analyte,
            test_samples=test_sample or None, test_fraction=test_fraction, seed=seed, run_name=run_name,
            pls_max_components=pls_max_components, protocol=protocol,
        )
        result = run_evaluation(config)
    except (ValidationError, ValueError, FileNotFoundError, FileExistsError, RuntimeError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(markdown_table(result.table, SUMMARY_COLUMNS))
    typer.echo(f"report: {result.report_path}")

# --- predict (trust) ---


PREDICT_EXIT_CODES_HELP = (
    "Exit codes: 0 predictions written for every input; 3 partial: some raw files were rejected at ingest "
    "(quarantined), the others were predicted; 1 nothing could be predicted (every file rejected, model or "
    "spectra not found); 2 corrupt model or bad options."
)


def _is_dataset_ref(value: str) -> bool:
    """A .zarr/.nc path or a store URI ``<root>#<name>@<version>`` (not raw files to ingest first)."""
    return "#" in value or Path(value).suffix.lower() in (".zarr", ".nc", ".nc4")


@app.command("predict", epilog=PREDICT_EXIT_CODES_HELP)
def predict(
    spectra: list[str] = typer.Argument(..., help="a .zarr/.nc path or store URI <root>#<name>@<version>; or raw "
                                        "files / a folder of them / a campaign manifest (ingested into --root first)"),
    model: str = typer.Option(..., "--model", help="model directory, or a version id / alias with --root and --name"),
    root: str = typer.Option(None, "--root", "--registry", "--store", envvar="LIBS_PIPELINE_ROOT",
                             help=_ROOT_HELP + "; its models/ hold --model versions, raw files are ingested into it "
                             "(--registry, --store: older names)"),
    name: str = typer.Option(None, "--name", help="registered model name"),
    out: str = typer.Option(None, "--out", help="per-spectrum table (.csv or .parquet); per-sample table beside it "
                            "(raw input default: <root>/predictions/<run>/predictions.csv)"),
    dataset: str = typer.Option(None, "--dataset", help="dataset the raw files are ingested into (default "
                                "'unknown-samples', or the manifest's name)"),
    mc_samples: int = typer.Option(20, "--mc-samples", min=2, help="MC-dropout passes for the predictive uncertainty"),
    seed: int = typer.Option(0, "--seed", help="seed of the MC-dropout passes"),
    resample: bool = typer.Option(False, "--resample", help="interpolate spectra onto the model's (and dataset's) grid"),
    bad_shot_policy: str = typer.Option("warn", "--bad-shot-policy", help=_BAD_SHOT_HELP),
) -> None:
    """Concentration, predictive uncertainty, trust score, flag and reason per spectrum and per sample.

    Raw files (of unknown samples) are ingested first, so every predicted spectrum is archived and versioned.
    """
    from rich.console import Console
    from rich.table import Table

    from libs_pipeline.registry import CorruptModelError, RegistryError
    from libs_pipeline.prediction import run_prediction

    code = EXIT_OK
    if len(spectra) == 1 and _is_dataset_ref(spectra[0]):
        source = spectra[0]
    else:
        from libs_pipeline.spectra.unknown_samples import ingest_new_files

        if root is None:
            typer.echo(f"error: cannot open spectra {' '.join(spectra)}: not a .zarr/.nc dataset or store URI; raw files "
                       "(or a folder of them, or a manifest) are ingested before prediction: give --root ROOT",
                       err=True)
            raise typer.Exit(EXIT_REJECTED)
        options = _ingest_options(resample=resample, bad_shot_policy=bad_shot_policy)
        try:
            batch = ingest_new_files(spectra, root, name=dataset, options=options)
        except ValueError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(EXIT_REJECTED) from None
        _print_ingest(batch.result)
        if batch.spectra is None:
            typer.echo("error: no spectra to predict: every file was rejected (see the report above)", err=True)
            raise typer.Exit(EXIT_REJECTED)
        source = batch.spectra
        out = out or _open_store_root(root).join("predictions", batch.result.run_id, "predictions.csv").url
        code = EXIT_PARTIAL if batch.result.rejected else EXIT_OK
    try:
        run = run_prediction(model, source, out, root, name, mc_samples=mc_samples, seed=seed, resample=resample)
    except CorruptModelError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except (FileNotFoundError, ValueError, RegistryError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    samples = run.tables.samples
    table = Table("sample", "concentration", "uncertainty", "trust score", "flagged shots", "flag", "reason")
    for row in samples.itertuples(index=False):
        table.add_row(
            str(row.sample_id),
            f"{row.concentration:.4g} {row.units}",
            "" if row.uncertainty != row.uncertainty else f"{row.uncertainty:.2g}",
            f"{row.trust_score:.2f}",
            f"{row.flagged_fraction:.0%}",
            "FLAG" if row.flag else "ok",
            str(row.reason),
        )
    Console(width=200).print(table)
    spectra_table = run.tables.spectra
    typer.echo(
        f"{int(spectra_table['flag'].sum())}/{len(spectra_table)} spectra and {int(samples['flag'].sum())}/{len(samples)} "
        f"samples flagged (model {run.model_dir})"
    )
    if run.spectra_path is not None:
        typer.echo(f"wrote {run.spectra_path} and {run.samples_path}")
    if code:
        raise typer.Exit(code)


# --- models (registry) ---

models_app = typer.Typer(help="Model registry: list, show, promote and roll back versions.", no_args_is_help=True)
app.add_typer(models_app, name="models")

_ROOT_OPTION = typer.Option("runs", "--root", envvar="LIBS_PIPELINE_ROOT", help="store root (models/ lives under it)")


def _registry_call(fn):
    """Run a registry operation; its errors become a one-line message and exit code 1 (2 for corrupt models)."""
    from libs_pipeline.registry import CorruptModelError, RegistryError

    try:
        return fn()
    except CorruptModelError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except RegistryError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


@models_app.command("list")
def models_list(
    name: str = typer.Argument(None, help="model name (all models when omitted)"),
    root: str = _ROOT_OPTION,
) -> None:
    """Versions of each model, oldest first, with aliases, RMSEP and the training data version."""
    from rich.console import Console
    from rich.table import Table

    from libs_pipeline.registry import ModelRegistry

    registry = ModelRegistry(_open_store_root(root))
    names = [name] if name else registry.names()
    if not names:
        typer.echo(f"no models under {registry.models_dir}")
        return
    table = Table("model", "version", "aliases", "created", "rmsep", "spectra version", "status")
    for model in names:
        for v in _registry_call(lambda m=model: registry.list(m)):
            rmsep = v.metrics.get("rmsep")
            spectra = (v.data.get("spectra") or {}).get("version", "")
            table.add_row(
                model, v.version, ",".join(v.aliases), (v.created_at or "")[:19],
                "" if rmsep is None else f"{rmsep:.4g}", str(spectra), v.problem or "ok",
            )
    Console(width=160).print(table)


@models_app.command("show")
def models_show(
    name: str,
    ref: str = typer.Argument("champion", help="version id or alias"),
    root: str = _ROOT_OPTION,
) -> None:
    """The manifest of one version (JSON) after verifying every file's sha256; exit 2 if it is corrupt."""
    import json

    from libs_pipeline.registry import ModelRegistry

    registry = ModelRegistry(_open_store_root(root))
    path = _registry_call(lambda: registry.verified_url(name, ref))  # checks the stored files; downloads nothing
    manifest = _registry_call(lambda: registry.manifest(name, ref))
    typer.echo(json.dumps({"path": str(path), "status": "verified", "manifest": manifest}, indent=2, sort_keys=True))


@models_app.command("promote")
def models_promote(
    name: str,
    ref: str = typer.Argument(..., help="version id or alias to promote"),
    alias: str = typer.Option("champion", "--alias", help="alias to move"),
    reason: str = typer.Option(None, "--reason", help="recorded in the history log"),
    root: str = _ROOT_OPTION,
) -> None:
    """Point an alias (default champion) at a verified version."""
    from libs_pipeline.registry import ModelRegistry

    registry = ModelRegistry(_open_store_root(root))
    event = _registry_call(lambda: registry.promote(name, ref, alias=alias, reason=reason))
    if not event:
        typer.echo(f"{name}: {alias} already is {registry.resolve(name, alias)}")
    else:
        typer.echo(f"{name}: {alias} {event['previous'] or '(none)'} -> {event['version']}")


@models_app.command("rollback")
def models_rollback(
    name: str,
    alias: str = typer.Option("champion", "--alias", help="alias to move back"),
    reason: str = typer.Option(None, "--reason", help="recorded in the history log"),
    root: str = _ROOT_OPTION,
) -> None:
    """Point an alias back at the version it held before its current one."""
    from libs_pipeline.registry import ModelRegistry

    event = _registry_call(lambda: ModelRegistry(_open_store_root(root)).rollback(name, alias=alias, reason=reason))
    typer.echo(f"{name}: {alias} {event['previous']} -> {event['version']} (rolled back)")


@app.command("recalibrate")
def recalibrate_command(
    dataset: str = typer.Option(None, "--dataset", help="spectra dataset name (overrides the config file)"),
    config: str = typer.Option(None, "--config", help="YAML/JSON file with RecalibrationConfig fields"),
    root: str = typer.Option(
        None, "--root", envvar="LIBS_PIPELINE_ROOT", help="store root (overrides the config file)"
    ),
) -> None:
    """Run the recalibration flow once, here (retrain on new data, promote only a better challenger)."""
    import yaml
    from pydantic import ValidationError

    from libs_pipeline.config import RecalibrationConfig

    data: dict = {}
    if config:
        try:
            data = yaml.safe_load(open(config, encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            typer.echo(f"error: {config}: {exc}", err=True)
            raise typer.Exit(1) from None
        if not isinstance(data, dict):
            typer.echo(f"error: {config}: expected a mapping of RecalibrationConfig fields", err=True)
            raise typer.Exit(1)
    data.update({k: v for k, v in {"dataset": dataset, "root": root}.items() if v is not None})
    try:
        cfg = RecalibrationConfig(**data)
    except ValidationError as exc:
        typer.echo(f"error: invalid recalibration config{f' in {config}' if config else ''}:\n{exc}", err=True)
        raise typer.Exit(1) from None
    from flows.recalibrate import recalibrate

    state = recalibrate(cfg, return_state=True)
    if not state.is_completed():
        typer.echo(f"error: {state.message}", err=True)
        raise typer.Exit(1)
    for line in recalibration_lines(state.result()):
        typer.echo(line)


def recalibration_lines(outcome: dict) -> list[str]:
    """What ``recalibrate`` prints: the decision, the comparison protocol, the candidate table (with each
    candidate's RMSEP minus the univariate's on the same samples and its paired 95 % interval, when compared by
    leave-one-sample-out), why the served family won (and which families were not eligible), the champion and the
    report folder."""

    def num(value: object) -> str:
        return f"{value:.4g}" if isinstance(value, (int, float)) and value == value else "n/a"

    lines = [outcome["reason"]]
    if outcome.get("protocol"):
        lines.append(f"comparison: {outcome['protocol']['reason']}")
    for method, m in (outcome.get("metrics") or {}).items():
        line = f"  {method:<24} RMSEP {num(m.get('rmsep'))}  flag rate {num(m.get('flag_rate'))}"
        if method != "univariate" and num(m.get("minus_univariate")) != "n/a":  # paired, on the same samples
            low, high = m.get("minus_univariate_ci95") or (None, None)
            line += f"  vs univariate {m['minus_univariate']:+.4g} [{num(low)}, {num(high)}]"
        lines.append(line)
    selection = outcome.get("selection") or {}
    if selection.get("reason"):
        lines.append(f"served family: {selection['reason']}")
    lines.append(f"champion: {outcome.get('champion_after')}; report: {outcome['report_dir']}")
    return lines


@models_app.command("history")
def models_history(name: str, root: str = _ROOT_OPTION) -> None:
    """The append-only log of registrations and alias changes."""
    from libs_pipeline.registry import ModelRegistry

    for e in _registry_call(lambda: ModelRegistry(_open_store_root(root)).history(name)):
        alias = f" {e['alias']}" if e.get("alias") else ""
        prev = f" (was {e['previous']})" if e.get("previous") else ""
        why = f": {e['reason']}" if e.get("reason") else ""
        typer.echo(f"{e['seq']:>4} {e['time'][:19]} {e['action']}{alias} {e['version']}{prev}{why}")


# --- alerts (Prefect automations) ---


@app.command("deploy-alerts")
def deploy_alerts_command(
    webhook: str = typer.Option(..., "--webhook", help="URL that receives the notifications (HTTP POST, JSON)"),
    flow_name: str = typer.Option("recalibrate", "--flow", help="flow whose failed runs notify"),
) -> None:
    """Create or update the alert automations (failed recalibration, degraded champion kept) and their webhook
    block on the Prefect server PREFECT_API_URL names; running it again updates them (deployments/alerts.py)."""
    import importlib.util

    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        typer.echo("error: PREFECT_API_URL is not set: point it at the server the alerts belong to "
                   "(prefect config set PREFECT_API_URL=http://127.0.0.1:4200/api)", err=True)
        raise typer.Exit(2)
    path = Path(__file__).resolve().parents[1] / "deployments" / "alerts.py"
    if not path.is_file():
        typer.echo(f"error: {path} not found (deploy-alerts runs from a checkout of the repository)", err=True)
        raise typer.Exit(2)
    spec = importlib.util.spec_from_file_location("libs_pipeline_alerts", path)
    alerts = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(alerts)
    for name, ident in alerts.deploy_alerts(webhook, flow_name).items():
        typer.echo(f"{name}: {ident}")


# --- demo ---


@app.command("demo")
def demo_command(
    out: Path = typer.Option(Path("demo-output"), "--out", help="folder for the store, raw files, models and reports"),
    samples: int = typer.Option(40, "--samples", min=8, help="reference samples of the virtual campaign"),
    shots: int = typer.Option(20, "--shots", min=2, help="laser shots per reference sample"),
    per_sample: int = typer.Option(200, "--per-sample", min=0, help="synthetic spectra per training sample"),
    max_steps: int = typer.Option(1500, "--max-steps", min=1, help="training steps of the challenger"),
    seed: int = typer.Option(0, "--seed", min=0),
) -> None:
    """The main job end to end on the virtual instrument: simulate, ingest, synthesise, train, evaluate,
    register/promote, predict with trust flags; prints where everything is."""
    import pandas as pd
    from rich.console import Console
    from rich.table import Table

    from flows.demo import demo
    from libs_pipeline.config import DemoConfig

    console = Console()
    summary = demo(DemoConfig(out=str(out), n_samples=samples, n_shots=shots, per_sample=per_sample,
                              max_steps=max_steps, seed=seed))
    data, recal = summary["dataset"], summary["recalibration"]
    console.rule("libs-pipeline demo")
    console.print(f"dataset [bold]{data['name']}[/] version [bold]{data['version']}[/]: {data['uri']}")
    console.print(demo_synthetic_line(summary.get("synthetic"), recal["status"]), markup=False)
    console.print(f"recalibration: {recal['status']} - {recal['reason']}; champion {recal['champion_after']}")
    scored = summary["scored_model"]
    console.print(f"evaluated and scoring fresh batches with: {scored['version']} ({scored['role']})")
    table = Table(title=f"held-out samples {', '.join(recal.get('heldout_samples') or [])}")
    for column in ("method", "RMSEP", "MAE", "bias", "R2", "flag rate"):
        table.add_column(column)
    for method, m in (summary.get("metrics") or {}).items():
        table.add_row(method, *(f"{m.get(k, float('nan')):.4g}" if isinstance(m.get(k), (int, float)) else "-"
                                for k in ("rmsep", "mae", "bias", "r2", "flag_rate")))
    console.print(table)
    trust = Table(title="trust on fresh batches (RMSEP against the batches' known labels)")
    for column in ("batch", "spectra flagged", "samples flagged", "RMSEP flagged", "RMSEP kept", "wrong flagged",
                   "first reason"):
        trust.add_column(column)

    def rmsep(value) -> str:
        return "-" if value is None else f"{value:.4g}"

    def wrong_flagged(split: dict) -> str:  # wrong = |error| > 2 x the served model's held-out RMSEP
        if split.get("n_wrong") is None:
            return "-"
        return f"{split['n_wrong_flagged']}/{split['n_wrong']} (|error| > {split['tolerance']:.3g})"

    for label, p in summary["predictions"].items():
        reasons = pd.read_csv(p["samples_table"])["reason"].dropna()
        split = p.get("flagged_vs_kept") or {}
        trust.add_row(label, f"{p['spectra_flagged']}/{p['n_spectra']}", f"{p['samples_flagged']}/{p['n_samples']}",
                      rmsep(split.get("rmsep_flagged")), rmsep(split.get("rmsep_kept")), wrong_flagged(split),
                      str(reasons.iloc[0]) if len(reasons) else "-")
    console.print(trust)
    console.print(f"prediction tables: {Path(summary['out']) / 'predictions'}")
    console.print(f"evaluation report: {summary['evaluation_report']}")
    console.print(f"recalibration report: {recal['report_dir']}")
    console.print(f"summary: {Path(summary['out']) / 'demo_summary.json'}  ({summary['seconds']} s)")
    console.print("next (the demo's store is not the default --root 'runs'):", markup=False)
    shown = "champion" if scored["role"] == "champion" else scored["version"]
    for command in demo_follow_up_commands(summary["store"], data["name"], shown):
        console.print(f"  {command}", markup=False, highlight=False, soft_wrap=True)
    console.print("See it in the Prefect UI, figures included: `prefect server start`, then "
                  "`PREFECT_API_URL=http://127.0.0.1:4200/api make demo` and open http://127.0.0.1:4200 "
                  "(Artifacts: virtual-aluminium-recalibration-summary)", markup=False)


def demo_synthetic_line(synthetic: dict | None, recalibration_status: str) -> str:
    """The demo summary's line on the synthetic store this run drew and its realism verdict; a run that drew none
    (recalibration skipped because nothing changed, or synthesis off) says so instead of reporting a failure."""
    if not synthetic or not synthetic.get("uri"):
        return f"synthetic store: none drawn in this run (recalibration {recalibration_status})"
    passed = synthetic.get("realism_passed")
    if passed is None:
        return f"synthetic store {synthetic['uri']}: no realism report"
    if passed:
        return f"synthetic store {synthetic['uri']}: realism report PASSED"
    failures = "; ".join(str(f) for f in synthetic.get("realism_failures") or [])
    return f"synthetic store {synthetic['uri']}: realism report FAILED" + (f" ({failures})" if failures else "")


def demo_follow_up_commands(store: str, name: str, model: str = "champion") -> list[str]:
    """The registry commands for the demo's store (its root is ``<out>/store``, not the default ``runs``);
    ``model``: the alias or version id the demo scored (a version id when there is no champion yet)."""
    import shlex

    root = shlex.quote(str(store))
    return [
        f"libs-pipeline models list {name} --root {root}",
        f"libs-pipeline models show {name} {model} --root {root}",
        f"libs-pipeline models history {name} --root {root}",
        f"libs-pipeline recalibrate --dataset {name} --root {root}",
    ]
