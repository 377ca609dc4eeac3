"""WS-DR against the plain Q-SNN, side by side: test accuracy per seed and per-layer firing rates
of the four variants of the ``wsdr`` sweep (weight standardization of Eq. 14 on or off, the spike
term of Eq. 16 on or off), as Figure 5 (accuracy) and Figures 2 and 4 (firing rates) compare them.

    python benchmarks/wsdr_ablation.py [--run] [--root runs/sweeps] [key=value ...]

``--run`` first runs (or resumes) the sweep with the overrides given; without it the summary
already written is read. The firing rates are the last validation epoch's, per spiking layer in
forward order (the first and last are not regulated by Eq. 15), averaged over the seeds.
"""

import json
from collections import defaultdict
from pathlib import Path

from sweep_tables import print_tables

SWEEP = "wsdr"
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
    print_tables(__doc__, (SWEEP,), table)


if __name__ == "__main__":
    main()
