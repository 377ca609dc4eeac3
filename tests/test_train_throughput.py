"""benchmarks/train_throughput.py run as a user runs it, on tiny images (no timing asserts)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # every test here trains, builds, benchmarks or measures a process

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "train_throughput.py"
ROW_KEYS = {"impl", "workload", "device", "batch", "images_per_s", "peak_mem_mb"}


def bench(*args, timeout=600):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout)


TINY = ("--tiny", "--quick", "--no-compile", "--batch", "1", "--warmup", "0", "--rounds", "1")


def check_rows(rows, workloads, impls):
    assert [(row["workload"], row["impl"]) for row in rows] == [
        (workload, impl) for workload in workloads for impl in impls
    ]
    for row in rows:
        assert set(row) == ROW_KEYS and row["device"] == "cpu" and row["batch"] == 1
        assert row["images_per_s"] > 0
        assert 30 < row["peak_mem_mb"] < 4000  # at least the fp32 weights (ResNet19: 48 MB), gradients and state


def test_benchmark_rows_for_a_subset(tmp_path):
    out = tmp_path / "rows.json"
    impls = ["qsnn_1w2u", "spikingjelly"]
    result = bench(*TINY, "--workloads", "resnet19_cifar", "--impls", ",".join(impls), "--json", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    check_rows(json.loads(out.read_text()), ["resnet19_cifar"], impls)
    assert "parameters: qsnn_1w2u 12,569,226, spikingjelly 12,569,226" in result.stdout


def test_benchmark_writes_one_sane_row_per_implementation(tmp_path):
    """Every implementation on the event workload (the subset test above covers ResNet19; both
    workloads for all six took 195 s of CI's 2 cores, twice this)."""
    out = tmp_path / "rows.json"
    result = bench(*TINY, "--workloads", "vggsnn_dvs", "--json", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads(out.read_text())
    impls = ["qsnn_fp", "qsnn_1w8u", "qsnn_1w4u", "qsnn_1w2u", "spikingjelly", "snntorch"]
    check_rows(rows, ["vggsnn_dvs"], impls)
    # the table has one line per row with the ratio against SpikingJelly (1.00x on its own line)
    table = result.stdout[result.stdout.index("workload"):]
    assert table.count("spikingjelly") == 1 and table.count("1.00x") >= 2
    parameters = result.stdout.split("; parameters: ")[1].splitlines()[0].split(", ")
    assert [part.split()[0] for part in parameters] == impls
    assert len({part.split()[1] for part in parameters}) == 1  # the same network for every implementation


def test_bad_arguments_exit_2_in_one_line():
    result = bench("--workloads", "resnet50")
    assert result.returncode == 2 and "unknown workload 'resnet50'" in result.stderr
    result = bench("--impls", "norse")
    assert result.returncode == 2 and "unknown implementation 'norse'" in result.stderr
