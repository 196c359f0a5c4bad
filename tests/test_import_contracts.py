"""The import rules of pyproject.toml's [tool.importlinter] (layers, torch/libskit/prefect confinement, test
helpers, no cycles), checked with import-linter; and the CLI importing no flow, Prefect or torch until a command
needs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    assert lint.is_file(), f"{lint} missing: install the test extra (pip install -e '.[test]')"
    done = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout and "6 kept" in done.stdout


def test_cli_module_imports_no_flow_prefect_or_torch():
    code = (
        "import sys, libs_pipeline.cli; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'flows', 'prefect', 'torch', 'libskit'}))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
