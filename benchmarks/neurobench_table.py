"""NeuroBench's figures beside test accuracy for every Fashion-MNIST and N-Fashion-MNIST experiment.

    python benchmarks/neurobench_table.py [--root runs/neurobench] [--samples 1000] [--experiments NAME,NAME] [key=value ...]

Each experiment trains once, with its own recipe and seed, through ``qsnn train EXP
neurobench=true neurobench_samples=N run_dir=ROOT`` (the overrides after it), unless ROOT/EXP
already holds a finished run with NeuroBench's figures; then one markdown table of the newest run
of each: the test accuracy ``qsnn train`` reports (the whole test split), NeuroBench's accuracy and
figures on the first N test samples (synaptic operations and membrane updates per sample), and the
deployed footprint (1-bit hidden weights, 8-bit first and last layers, k-bit membranes).
"""

import argparse
import json
import subprocess
from pathlib import Path

from sweep_tables import QSNN

EXPERIMENTS = ("fmnist_1w2u", "fmnist_1w4u", "fmnist_1w8u", "fmnist_fp", "fmnist_1w2u_nowsdr", "fmnist_1w2u_long",
               "nfmnist_1w2u", "nfmnist_fp")
COLUMNS = ("experiment", "bits", "T", "test accuracy", "NeuroBench accuracy", "activation sparsity", "effective ACs",
           "effective MACs", "dense", "membrane updates", "deployed bytes")


def newest_result(root: Path, experiment: str) -> "dict | None":
    """The newest results.json under ``root/experiment`` that carries NeuroBench's figures."""
    found = [json.loads(path.read_text()) for path in sorted((root / experiment).glob("*/results.json"))]
    found = [result for result in found if "neurobench" in result]
    return found[-1] if found else None


def row(result: dict) -> list[str]:
    """One table row of a run's results.json."""
    bench = result["neurobench"]
    return [
        f"`{result['experiment']}`", result["bits"], str(result["timesteps"]), f"{100 * result['test_acc']:.2f}%",
        f"{100 * bench['accuracy']:.2f}%", f"{bench['activation_sparsity']:.4f}", f"{bench['effective_acs']:,.0f}",
        f"{bench['effective_macs']:,.0f}", f"{bench['dense_operations']:,.0f}", f"{bench['membrane_updates']:,.0f}",
        f"{bench['deployed_bytes']:,.0f}",
    ]


def experiment_list(text: str) -> list[str]:
    """``--experiments``: comma-separated names of EXPERIMENTS."""
    names = text.split(",")
    unknown = [name for name in names if name not in EXPERIMENTS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown experiment {unknown[0]!r}")
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="runs/neurobench", help="the runs' folder (run_dir of every experiment)")
    parser.add_argument("--samples", type=int, default=1000, help="test samples NeuroBench measures (neurobench_samples)")
    parser.add_argument("--experiments", type=experiment_list, default=list(EXPERIMENTS),
                        help=f"comma-separated, of {', '.join(EXPERIMENTS)} (default: all)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides of every run")
    args = parser.parse_args()
    root = Path(args.root)
    for experiment in args.experiments:
        if newest_result(root, experiment) is None:
            command = [QSNN, "train", experiment, "neurobench=true", f"neurobench_samples={args.samples}",
                       f"run_dir={root}", "trainer.enable_progress_bar=false", *args.overrides]
            print("$", " ".join(command[1:]), flush=True)
            subprocess.run(command, check=True)
    print("\n| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS))
    for experiment in args.experiments:
        result = newest_result(root, experiment)
        print("| " + " | ".join(row(result)) + " |" if result else f"| `{experiment}` | (no finished run) |")


if __name__ == "__main__":
    main()
