"""The bench and check scripts still start: each one's ``--help`` runs (they import most of the package, so a
moved module breaks them long before anyone runs a bench)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


@pytest.mark.parametrize("script", sorted(p.name for p in SCRIPTS.glob("bench-*")))
def test_bench_script_starts(script: str, repo_env: dict[str, str]) -> None:
    proc = subprocess.run([sys.executable, str(SCRIPTS / script), "--help"], env=repo_env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "usage:" in proc.stdout.lower()
