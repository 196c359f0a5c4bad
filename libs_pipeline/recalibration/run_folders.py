"""Where one recalibration run writes: its report on the store, the local folder the report is built in, and
the local folder its challenger is staged in.

On a local root the report is built in place (``<root>/reports/<run>/``) and the challenger is staged in
``<root>/staging/<run>/challenger`` (as before). On an object-store root (``s3://...``) both live in one local
temporary folder: the report is uploaded to ``<root>/reports/<run>/`` whole whenever it is written
(``upload``), the staged challenger goes to the store only through ``ModelRegistry.register``, and ``close``
removes the temporary folder. Nothing is ever written to a local folder named like the URL.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from libs_pipeline.spectra.location import Location, open_location


def staging_dir(root: str | Path, report_dir: str | Path) -> Path:
    """Where a run on a local root stages its challenger before registering it: ``<root>/staging/<run>/challenger``."""
    return Path(root) / "staging" / Path(report_dir).name / "challenger"


@dataclass(frozen=True)
class RunFolders:
    """``report``: the run's report folder on the store; ``work_dir``: the local folder its files are written
    in (the report folder itself on a local root); ``staging``: the local folder of the staged challenger."""

    report: Location
    work_dir: Path
    staging: Path

    @classmethod
    def create(cls, root: str | Path | Location, run: str) -> RunFolders:
        store = open_location(root)
        report = store / "reports" / run
        if store.is_local:
            work_dir = report.local_path
            work_dir.mkdir(parents=True, exist_ok=True)
            return cls(report, work_dir, staging_dir(store.local_path, work_dir))
        base = Path(tempfile.mkdtemp(prefix=f"libs-pipeline-{run}-"))
        (base / "report").mkdir()
        return cls(report, base / "report", base / "staging" / "challenger")

    @property
    def is_local(self) -> bool:
        return self.report.is_local

    def final(self, path: str | Path) -> str:
        """Where a file written under ``work_dir`` is in the report on the store (a path or a URL)."""
        if self.is_local:
            return str(path)
        return self.report.join(*Path(path).relative_to(self.work_dir).parts).url

    def upload(self) -> None:
        """Copy the local report files to the store (object-store roots; a local report already is in place)."""
        if not self.is_local:
            self.report.put_directory(self.work_dir)

    def discard_staging(self) -> None:
        """Remove the run's staging folder (after registration, or after a failure)."""
        shutil.rmtree(self.staging.parent, ignore_errors=True)

    def close(self) -> None:
        """Remove the local temporary folder of an object-store run (nothing on a local root)."""
        if not self.is_local:
            shutil.rmtree(self.work_dir.parent, ignore_errors=True)


__all__ = ["RunFolders", "staging_dir"]
