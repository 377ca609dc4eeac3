"""WS-DR against the plain Q-SNN, side by side: test accuracy per seed and per-layer firing rates
of the four variants of the ``wsdr`` sweep (weight standardization of Eq. 14 on or off, the spike
term of Eq. 16 on or off), as Figure 5 (accuracy) and Figures 2 and 4 (firing rates) compare them.

    python benchmarks/wsdr_ablation.py [--run] [--root runs/sweeps] [key=value ...]

``--run`` first runs (or resumes) the sweep with the overrides given; without it the summary
already written is read. The firing rates are the last validation epoch's, per spiking layer in
forward order (the first and last are not regulated by Eq. 15), averaged over the seeds.
"""

import argparse
import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from qsnn_lightning.training.analysis import read_summary
from qsnn_lightning.training.sweep import SUMMARY

SWEEP = "wsdr"
QSNN = str(Path(sys.executable).with_name("qsnn"))
VARIANTS = {  # (standardize, lambda > 0) -> Figure 5's name
    ("layer", True): "WS-DR (Q-SNN + weight + spike regulation)",
    ("layer", False): "weight regulation only",
    ("none", True): "spike regulation only",
    ("none", False): "plain Q-SNN",
}


def layer_rates(run_dir: str) -> dict[str, float]:
    """The run's last validation firing rate per spiking layer (results.json), forward order."""
    return json.loads((Path(run_dir) / "results.json").read_text())["val_firing_rates"]


def table(rows: list[dict]) -> list[str]:
    """Markdown lines: one per variant, WS-DR first; accuracy per seed, mean, difference to the plain Q-SNN."""
    groups = defaultdict(list)
    for row in rows:
        groups[(row["model.standardize"], float(row["loss.lam"]) > 0)].append(row)
    means = {key: sum(r["test_acc"] for r in members) / len(members) for key, members in groups.items()}
    plain = means.get(("none", False))
    layers = list(layer_rates(rows[0]["run_dir"])) if rows else []
    lines = [f"| variant | test accuracy per seed | mean | vs plain | {' | '.join(layers)} |",
             "|---|---|---|---|" + "---|" * len(layers)]
    for key, name in VARIANTS.items():
        if key not in groups:
            continue
        members = sorted(groups[key], key=lambda r: r["seed"])
        rates = [layer_rates(r["run_dir"]) for r in members]
        mean_rates = [sum(rate[layer] for rate in rates) / len(rates) for layer in layers]
        difference = f"{100 * (means[key] - plain):+.2f}" if plain is not None else "-"
        seeds = " / ".join(f"{100 * r['test_acc']:.2f}" for r in members)
        lines.append(f"| {name} | {seeds} | {100 * means[key]:.2f} | "
                     f"{difference} | {' | '.join(f'{rate:.3f}' for rate in mean_rates)} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="store_true", help="run (or resume) the sweep first")
    parser.add_argument("--root", default="runs/sweeps", help="the sweeps' folder (qsnn sweep --dir)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides of every run")
    args = parser.parse_args()
    if args.run:
        subprocess.run([QSNN, "sweep", SWEEP, "--local", "--dir", args.root, *args.overrides], check=True)
    summary = Path(args.root) / SWEEP / SUMMARY
    if not summary.is_file():
        sys.exit(f"no {summary} yet: run with --run")
    print("\n".join(table(read_summary(summary))))


if __name__ == "__main__":
    main()
