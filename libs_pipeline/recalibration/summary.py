"""The decision of one recalibration run as markdown and as the rows of the metrics table."""

from __future__ import annotations

from pathlib import Path

from libs_pipeline.spectra.location import open_location

#: Outcome statuses of one recalibration run.
STATUSES = ("promoted", "kept-champion", "skipped", "failed")


def _fmt(value: object) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    if isinstance(value, float):
        return "n/a" if value != value else f"{value:.4g}"  # NaN != NaN
    return "n/a" if value is None else str(value)


def metrics_rows(metrics: dict[str, dict], roles: dict[str, str] | None = None) -> list[dict]:
    """Rows of the challenger-vs-champion table: one per method, held-out metrics (NaN -> None); with the
    leave-one-sample-out comparison also each candidate's RMSEP minus the univariate's on the same samples and
    its paired bootstrap interval."""
    keys = ("rmsep", "mae", "bias", "r2", "sample_rmsep", "flag_rate", "rmsep_flagged", "rmsep_kept", "error_auroc",
            "wrong_flagged_fraction", "minus_univariate", "minus_univariate_ci95", "n_spectra")
    rows = []
    for method, m in metrics.items():
        row: dict = {"method": method, "role": (roles or {}).get(method, "baseline")}
        for k in keys:
            v = m.get(k)
            row[k] = None if isinstance(v, float) and v != v else v
        rows.append(row)
    return rows


def figure_uri(path: str | Path) -> str:
    """A figure's link target: ``file://`` for a local file, the store URL (``s3://...``) as it is."""
    where = open_location(path, check=False)
    return where.local_path.as_uri() if where.is_local else where.url


def summary_markdown(outcome: dict) -> str:
    """The decision of one recalibration run as markdown (what happened, why, versions, metrics, figures)."""
    status = outcome.get("status", "?")
    name = outcome.get("model_name", "?")
    spectra = outcome.get("spectra") or {}
    lines = [
        f"# Recalibration of `{name}`: {status}",
        "",
        f"**{outcome.get('reason', '')}**",
        "",
        f"- data: `{spectra.get('name')}@{spectra.get('version')}`, config hash `{outcome.get('config_hash')}`",
        f"- champion before: `{outcome.get('champion_before')}`, after: `{outcome.get('champion_after')}`",
    ]
    if outcome.get("challenger"):
        lines.append(f"- challenger: `{outcome['challenger']}` at `{outcome.get('challenger_path')}`")
    if outcome.get("heldout_samples"):
        lines.append(f"- held-out samples: {', '.join(outcome['heldout_samples'])}")
    if status == "failed":
        unchanged = outcome.get("champion_after") == outcome.get("champion_before")
        lines += ["", f"Failed at step `{outcome.get('failed_step')}`: `{outcome.get('error')}`",
                  "", "The champion was not changed." if unchanged else "The champion had already been changed."]
    metrics = outcome.get("metrics") or {}
    if metrics:
        rows = metrics_rows(metrics, outcome.get("roles"))
        cols = list(rows[0])
        lines += ["", "| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
        lines += ["| " + " | ".join(_fmt(r[c]) for c in cols) + " |" for r in rows]
    for note in outcome.get("notes") or []:
        lines += ["", f"> {note}"]
    selection = outcome.get("selection") or {}
    if selection:
        lines += ["", f"**Served family: {selection.get('winner')}** — {selection.get('reason')}"]
    for name, error in (outcome.get("candidate_errors") or {}).items():
        lines += ["", f"- candidate `{name}` could not be evaluated: {error}"]
    trust = outcome.get("trust") or {}
    if trust:
        lines += ["", f"Trust: threshold {_fmt(trust.get('threshold'))} ({trust.get('method')}); parts in use: "
                  f"{', '.join(trust.get('parts') or []) or 'none (nothing is flagged)'}"]
        lines += [f"- `{part}` off: {why}" for part, why in (trust.get("disabled_parts") or {}).items()]
    figures = outcome.get("figures") or {}
    if figures:
        lines += [""] + [f"![{k}]({figure_uri(v)})" for k, v in figures.items()]
    if outcome.get("report_dir"):
        lines += ["", f"Report folder: `{outcome['report_dir']}`"]
    if outcome.get("seconds") is not None:
        lines += ["", f"Wall time: {outcome['seconds']:.1f} s"]
    return "\n".join(lines) + "\n"


__all__ = ["STATUSES", "figure_uri", "metrics_rows", "summary_markdown"]
