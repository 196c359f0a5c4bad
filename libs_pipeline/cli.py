"""`libs-pipeline ...`: the command-line interface (typer). Commands are thin wrappers around the library."""

from __future__ import annotations

import typer

app = typer.Typer(help="libs-pipeline: trustworthy LIBS calibration models.", no_args_is_help=True)


@app.callback()
def main() -> None:
    """Ingest, synthesise, train, evaluate, recalibrate and predict LIBS calibration models."""


# --- simulate (physics) ---

# --- ingest (spectra) ---

# --- synthesize (synth) ---

# --- train / evaluate (models, evaluation) ---

# --- predict (trust) ---

# --- models (registry) ---

# --- demo ---
