"""benchmarks/memopt_compare.py run as a user runs it, on tiny frames (no timing asserts)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # every test here trains, builds, benchmarks or measures a process

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "memopt_compare.py"


def test_memopt_and_the_lean_path_report_memory_time_and_gradient_differences(tmp_path):
    out = tmp_path / "rows.json"
    result = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--quick", "--shapes", "tutorial", "--json", str(out)],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {row["variant"]: row for row in json.loads(out.read_text())}
    assert list(rows) == ["sj_plain", "sj_memopt", "ours_full", "ours_lean"]
    for row in rows.values():
        assert row["batch"] == 2 and row["input"] == [2, 16, 16] and row["step_s"] > 0 and row["peak_mem_mb"] > 0
    assert rows["sj_memopt"]["memopt_level"] == 1  # levels 2-4 need CUDA in spikingjelly 2.0.0
    assert rows["sj_memopt"]["max_grad_abs_diff"] == 0  # checkpointing replays the same operations
    assert rows["ours_lean"]["max_grad_rel_diff"] < 1e-3  # the same gradients, summed in another order
    assert "sj_memopt" in result.stdout and "ours_lean" in result.stdout and "mem x" in result.stdout


def test_memopt_levels_that_need_cuda_are_refused_in_one_line():
    result = subprocess.run([sys.executable, str(SCRIPT), "--memopt-level", "3"], capture_output=True, text=True)
    assert result.returncode == 2 and "memopt levels 2-4" in result.stderr
