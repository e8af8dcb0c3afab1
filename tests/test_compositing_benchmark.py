"""The compositing benchmark runs end to end and prints its tables (numbers, not assertions of speed)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _summary_edge_de(table: str) -> dict[str, float]:
    """Mean edge dE per method from the 'mean <method> <edge dE> ...' rows of one ground-truth table."""
    return {m: float(v) for m, v in re.findall(r"^mean\s+(\S+)\s+([\d.]+)", table, re.MULTILINE)}


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
    for needle in ("edge dE", "image dE", "engine", "engine_lin", "plain", "seed", "IoU", "SRGB", "LINEAR"):
        assert needle in out, out[-2000:]
    srgb_table, linear_table = out.split("Ground truth mixed on ")[1:3]
    assert srgb_table.startswith("SRGB") and linear_table.startswith("LINEAR")
    srgb, linear = _summary_edge_de(srgb_table), _summary_edge_de(linear_table)
    assert set(srgb) == set(linear) == {"engine", "engine_lin", "plain", "plain_lin", "seed"}
    # Each ground truth is reproduced best by the engine blending in the space it was mixed in.
    assert srgb["engine"] < 0.5 * min(srgb["engine_lin"], srgb["plain"]), srgb
    assert linear["engine_lin"] < 0.5 * min(linear["engine"], linear["plain_lin"]), linear
