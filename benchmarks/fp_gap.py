"""The default experiment against full precision at the same budget, side by side: for each seed,
``qsnn train fmnist_1w2u`` then ``qsnn train fmnist_fp`` with the same overrides (fmnist_fp
extends fmnist_1w2u: same epochs, schedule and data), each one's test accuracy and wall time,
and the gap in points (issue 15 asks for >= 90.0% and a gap <= 1.0).

    python benchmarks/fp_gap.py [--seeds 42 1 ...] [--run-dir runs/fp_gap] [key=value ...]

The overrides reach both runs (e.g. ``trainer.max_epochs=4`` for a short proxy); seed 42 is what
``make train`` runs. Wall times include start-up and compilation; they are only comparable
between runs of one invocation on an otherwise idle machine.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from sweep_tables import QSNN

QUANTIZED, FULL_PRECISION = "fmnist_1w2u", "fmnist_fp"


def train(experiment: str, seed: int, root: str, overrides: list[str]) -> tuple[float, float]:
    """(test accuracy, wall seconds) of one ``qsnn train`` run, read from its results.json."""
    quiet = [] if any(o.startswith("trainer.enable_progress_bar=") for o in overrides) else ["trainer.enable_progress_bar=false"]
    start = time.perf_counter()
    finished = subprocess.run(
        [QSNN, "train", experiment, f"seed={seed}", f"run_dir={root}", f"name={experiment}_seed{seed}",
         *quiet, *overrides],
        capture_output=True, text=True,
    )
    seconds = time.perf_counter() - start
    if finished.returncode != 0:  # qsnn's own one-line error is the last line it wrote
        last_line = (finished.stderr.strip().splitlines() or ["(no output)"])[-1]
        print(f"fp_gap.py: qsnn train {experiment} seed={seed} failed: {last_line}", file=sys.stderr)
        sys.exit(2)
    run_dir = next(line.split(": ", 1)[1] for line in finished.stdout.splitlines() if line.startswith("run directory: "))
    return json.loads((Path(run_dir) / "results.json").read_text())["test_acc"], seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42], help="seeds, each trained for both models")
    parser.add_argument("--run-dir", default="runs/fp_gap", help="where the runs go (run_dir of both)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides of both runs")
    args = parser.parse_args()
    print("| seed | 1w-2u test accuracy | its wall time | 32w-32u test accuracy | its wall time | gap (points) |")
    print("|---|---|---|---|---|---|")
    gaps = []
    for seed in args.seeds:
        quantized, quantized_seconds = train(QUANTIZED, seed, args.run_dir, args.overrides)
        full, full_seconds = train(FULL_PRECISION, seed, args.run_dir, args.overrides)
        gaps.append(100 * (full - quantized))
        print(f"| {seed} | {100 * quantized:.2f}% | {quantized_seconds:.0f} s | {100 * full:.2f}% | "
              f"{full_seconds:.0f} s | {gaps[-1]:+.2f} |", flush=True)
    print(f"mean gap over {len(gaps)} seed(s): {sum(gaps) / len(gaps):+.2f} points")


if __name__ == "__main__":
    main()
