"""`./dev demo --duration 90` on a fresh checkout and a fresh virtual environment.

This is the README's first command, exactly as a new user runs it: the tracked files are
copied to an empty folder, `./dev demo` creates `.venv` there, installs gatehouse and runs
the demo, which must exit 0 with a work order open for every injected fault kind.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]


def _copy_checkout(dest: Path) -> None:
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, check=True, capture_output=True,
    ).stdout.split(b"\0")
    for raw in files:
        if not raw:
            continue
        rel = Path(raw.decode())
        src = ROOT / rel
        if not src.is_file():
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)


@pytest.mark.timeout(900)
def test_demo_runs_from_a_fresh_checkout(tmp_path: Path) -> None:
    checkout = tmp_path / "gatehouse"
    _copy_checkout(checkout)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIRTUAL_ENV")}
    env["PYTHON"] = sys.executable if sys.prefix == sys.base_prefix else sys._base_executable
    proc = subprocess.run(
        ["./dev", "demo", "--duration", "90", "--json", "--port", "0",
         "--data-dir", str(tmp_path / "demo-data")],
        cwd=checkout, env=env, capture_output=True, text=True, timeout=880,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    start = proc.stdout.index("{\n")
    summary = json.loads(proc.stdout[start:])
    assert summary["ok"] is True
    assert summary["fault_kinds_without_order"] == []
    assert set(summary["faults_injected"]) <= set(summary["work_orders_opened"])
    assert summary["messages_rejected"] == 0
    assert (checkout / ".venv" / "bin" / "gatehouse").exists()
