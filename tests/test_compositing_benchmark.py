"""The compositing benchmark runs end to end and prints its tables (numbers, not assertions of speed)."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_compositing_benchmark_quick_mode_prints_its_tables():
    done = subprocess.run(
        [sys.executable, "benchmarks/compositing.py", "--quick"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    for needle in ("edge dE", "engine", "plain", "seed", "IoU"):
        assert needle in out, out[-2000:]
