"""One result per seed? ``qsnn train`` with the same seed, repeated, and under the CPU kernels
another machine would pick, side by side in one run.

    python benchmarks/determinism.py [--repeats 2] [--isa default avx2] [--json FILE] [key=value ...]

Each run is a fresh ``qsnn train fmnist_1w2u`` process (``key=value`` overrides shorten it, e.g.
``data.subset=4096 trainer.max_epochs=2``; none: the default experiment as ``make train`` runs it).
``--isa avx2`` caps oneDNN (``ONEDNN_MAX_CPU_ISA=AVX2``) and ATen's vectorized kernels
(``ATEN_CPU_CAPABILITY=avx2``) at AVX2, what a CPU without AVX-512 runs. The script prints each
run's test accuracy, and for every run after the first how many of the final weights differ from
the first run's and by how much at most.
"""

import argparse
import json
import os
import subprocess
import tempfile
from pathlib import Path

import torch
from sweep_tables import QSNN

ISA_ENVIRONMENTS = {
    "default": {},
    "avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"},
}


def train(runs: Path, isa: str, overrides: list[str]) -> tuple[float, dict]:
    """(test accuracy, final state_dict) of one ``qsnn train`` process under ``isa``'s kernels."""
    command = [QSNN, "train", "fmnist_1w2u", f"run_dir={runs}", "trainer.enable_progress_bar=false", *overrides]
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **ISA_ENVIRONMENTS[isa]})
    if result.returncode != 0:
        raise SystemExit(f"qsnn train failed ({isa}):\n{result.stderr[-3000:]}")
    (run_dir,) = (runs / "fmnist_1w2u").iterdir()
    results = json.loads((run_dir / "results.json").read_text())
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    return results["test_acc"], state


def difference(first: dict, other: dict) -> tuple[int, int, float]:
    """(values that differ, values compared, largest absolute difference) over floating tensors."""
    differing = total = 0
    largest = 0.0
    for key, value in first.items():
        if value.is_floating_point():
            gap = (value - other[key]).abs()
            differing += int((gap > 0).sum())
            total += value.numel()
            largest = max(largest, float(gap.max()))
    return differing, total, largest


def main() -> None:
    """Run the repeats under each ISA setting, interleaved, and print what differs from the first run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2, help="runs per ISA setting (default 2)")
    parser.add_argument("--isa", nargs="+", default=["default", "avx2"], choices=sorted(ISA_ENVIRONMENTS))
    parser.add_argument("--json", help="also write the rows to this file")
    args, overrides = parser.parse_known_args()
    rows, reference = [], None
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(args.repeats):
            for isa in args.isa:
                accuracy, state = train(Path(scratch) / f"{isa}-{repeat}", isa, overrides)
                reference = reference or state
                differing, total, largest = difference(reference, state)
                rows.append({"isa": isa, "repeat": repeat, "test_acc": accuracy, "values_differing": differing,
                             "values": total, "max_abs_difference": largest})
                print(f"{isa:>8} run {repeat}: test accuracy {accuracy:.4f}; against the first run {differing:,} of "
                      f"{total:,} weight values differ (max |diff| {largest:.3g})", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
