"""benchmarks/activation_memory.py run as a user runs it, on small frames (no timing asserts)."""

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # every test here trains, builds, benchmarks or measures a process

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "activation_memory.py"


ESTIMATED = "dvscifar10_1w2u"  # part 1 for one network (VGGSNN, chunked on the lean path); all four take 100 s more


@pytest.mark.parametrize("options", [("--experiments", ESTIMATED), ("--freed", "return", "--no-huge-pages", "--skip-estimates")])
def test_estimates_and_measured_steps_of_both_paths(options):
    """Part 1 (the Table 1 estimates) unless skipped, part 2 (measured steps of both paths) always."""
    result = subprocess.run([sys.executable, str(SCRIPT), "--batches", "1", "--steps", "1", "--size", "16", *options],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    estimates = out.split("\n2. ")[0]
    skipped = "--skip-estimates" in options
    assert ("1. One training step at the paper's batch" in estimates) is not skipped
    row = next((line.split() for line in estimates.splitlines() if line.startswith(ESTIMATED)), None)
    assert (row is None) is skipped
    if row:  # full, lean (GB), lean / full
        assert 0 < float(row[-2]) < float(row[-3]) and float(row[-1]) < 1
    assert [line.split()[0] for line in estimates.splitlines()[2:]] == ([] if skipped else [ESTIMATED])
    rows = [line.split() for line in out.splitlines() if line.split()[:1] == ["1"] and len(line.split()) == 7]
    assert [row[1] for row in rows] == ["full", "lean"]
    for row in rows:
        peak, raw = float(row[2]), float(row[3])
        assert 0 < raw and 0 <= peak < 2  # GB at 2x16x16, batch 1
    assert ("freed memory returned, huge pages off" if skipped else "freed memory reused, huge pages on") in out
    assert "batch 1: peak RSS" in out
