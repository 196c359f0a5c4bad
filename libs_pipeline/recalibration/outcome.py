"""What one recalibration run did, as a typed record: the step it is at, the champion before and after, the
comparison, the decision, and (on failure) the failed step and error.

The recalibrate flow fills a ``RecalibrationOutcome`` through the methods below (plain Python, no Prefect) and
returns ``to_dict()``; ``write_report`` writes ``summary.md`` and ``outcome.json`` to the run's report folder.
"""

from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from libs_pipeline.recalibration.run_folders import RunFolders, staging_dir
from libs_pipeline.recalibration.summary import summary_markdown
from libs_pipeline.registry.promotion import Decision
from libs_pipeline.spectra.atomic import atomic_write_json, atomic_write_text

CHALLENGER = "challenger"
CHAMPION = "champion"


@dataclass
class RecalibrationOutcome:
    """One recalibration run. ``status`` is one of ``summary.STATUSES`` once the run ends; ``step`` is the step
    being run (the failed step when ``status == 'failed'``)."""

    model_name: str
    config_hash: str
    report_dir: str
    flow_run_id: str | None
    spectra: dict[str, str | None]  # {"name", "version"}
    step: str = "start"
    status: str | None = None
    reason: str | None = None
    champion_before: str | None = None
    champion_after: str | None = None
    champion_path: str | None = None
    protocol: dict[str, Any] | None = None
    heldout_samples: list[str] | None = None
    synthetic: dict[str, Any] | None = None
    metrics: dict[str, dict] = field(default_factory=dict)
    roles: dict[str, str] = field(default_factory=dict)
    figures: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    selection: dict[str, Any] | None = None
    candidate_errors: dict[str, str] | None = None
    trust: dict[str, Any] | None = None
    challenger: str | None = None
    challenger_path: str | None = None
    decision: dict[str, Any] | None = None
    failed_step: str | None = None
    error: str | None = None
    seconds: float | None = None
    artifacts: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The outcome as plain data (what the flow returns and ``outcome.json`` holds); ``step`` is internal."""
        data = asdict(self)
        del data["step"]
        return data

    def record_champion(self, champion: dict | None) -> None:
        """The champion read at the start (``{"version", "path", "manifest"}`` or None): before = after."""
        before = champion["version"] if champion else None
        self.champion_before = self.champion_after = before
        self.champion_path = champion["path"] if champion else None

    def skip(self, champion_manifest: dict, reason: str) -> None:
        """Nothing changed since the champion was trained: report its recorded metrics and held-out samples."""
        recorded = {k: v for k, v in (champion_manifest.get("metrics") or {}).items() if k != "training"}
        self.status = "skipped"
        self.reason = f"skipped: {reason}"
        self.heldout_samples = (champion_manifest.get("data") or {}).get("heldout_samples")
        self.metrics = {CHAMPION: recorded} if "rmsep" in recorded else {}
        self.roles = {CHAMPION: CHAMPION}

    def record_loso(self, loso: dict) -> None:
        """The leave-one-sample-out comparison (``run_loso_recalibration``'s result) and its notes."""
        self.metrics = {CHALLENGER: loso["challenger_metrics"], **loso["candidate_metrics"]}
        self.roles = {CHALLENGER: f"challenger ({loso['selection']['winner']})",
                      **{n: "candidate" for n in loso["candidate_metrics"]}}
        self.figures = loso["figures"]
        self.heldout_samples = []
        self.selection = loso["selection"]
        self.candidate_errors = loso["candidate_errors"]
        self.trust = loso["trust"]
        self.notes = [
            f"comparison: {self.protocol['reason']}", loso["selection"]["reason"],
            "the winner's figure is the minimum over the families (selection-biased); "
            "benchmarks/accuracy.py reports the nested leave-one-sample-out figure",
        ]

    def record_synthesis(self, synthetic: dict | None) -> None:
        """The synthesize subflow's result (None when synthesis is off)."""
        realism = (synthetic or {}).get("realism") or {}
        self.synthetic = {"uri": synthetic["uri"] if synthetic else None, "realism_passed": realism.get("passed"),
                          "realism_failures": realism.get("failures")}

    def record_heldout(self, metrics: dict[str, dict], figures: dict[str, str], notes: list[str]) -> None:
        """The held-out comparison of challenger, champion and baselines."""
        self.metrics, self.figures, self.notes = metrics, figures, notes
        self.roles = {CHALLENGER: CHALLENGER, CHAMPION: CHAMPION}

    def record_registered(self, registered: dict, decision: Decision) -> None:
        """The challenger was registered (``{"version", "path"}``); ``decision`` is still to be carried out."""
        self.challenger, self.challenger_path = registered["version"], registered["path"]
        self.decision = decision.to_dict()

    def record_decision(self, decision: Decision) -> None:
        """The decision was carried out: the registered challenger is the champion now, or the champion stays."""
        if decision.promote:
            self.status = "promoted"
            self.champion_after, self.champion_path = self.challenger, self.challenger_path
            self.reason = f"promoted: {decision.reason}"
        else:
            self.status = "kept-champion"
            self.reason = f"champion kept: {decision.reason}"

    def fail(self, exc: BaseException, seconds: float) -> None:
        """The run stopped at ``self.step`` with ``exc``."""
        self.status = "failed"
        self.failed_step = self.step
        self.error = f"{type(exc).__name__}: {exc}"
        self.reason = f"failed at step {self.step}"
        self.seconds = seconds

    def failure_message(self) -> str:
        """The message the failed run reports: step, error, and whether the champion changed."""
        if self.champion_after == self.champion_before:
            champion_note = f"champion unchanged: {self.champion_before}"
        else:
            champion_note = f"champion now {self.champion_after}, before {self.champion_before}"
        return f"recalibration of {self.model_name!r} failed at step {self.failed_step}: {self.error} ({champion_note})"


def run_name(run_id: object | None, now: dt.datetime | None = None) -> str:
    """``recalibrate-YYYYmmddTHHMMSSZ[-<first 8 characters of the flow run id>]`` (UTC)."""
    stamp = (now or dt.datetime.now(dt.timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    return f"recalibrate-{stamp}-{str(run_id)[:8]}" if run_id else f"recalibrate-{stamp}"


def discard_staging(root: str | Path, report_dir: str | Path) -> None:
    """Remove the run's staging folder (after registration, or after a failure)."""
    shutil.rmtree(staging_dir(root, report_dir).parent, ignore_errors=True)


def write_report(outcome: RecalibrationOutcome, with_outcome_json: bool = True,
                 folders: RunFolders | None = None) -> None:
    """``summary.md`` (and ``outcome.json``) in the run's report folder: written in ``folders.work_dir`` and
    uploaded with the rest of the report when the root is an object store (``outcome.report_dir`` is then the
    report's URL); without ``folders``, into the local folder ``outcome.report_dir``."""
    report_dir = folders.work_dir if folders is not None else Path(outcome.report_dir)
    data = outcome.to_dict()
    atomic_write_text(report_dir / "summary.md", summary_markdown(data))
    if with_outcome_json:
        atomic_write_json(report_dir / "outcome.json", data)
    if folders is not None:
        folders.upload()


__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "RecalibrationOutcome",
    "RunFolders",
    "discard_staging",
    "run_name",
    "staging_dir",
    "write_report",
]
