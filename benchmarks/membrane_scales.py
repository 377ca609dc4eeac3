"""The membrane-scale study: for each ``model.membrane_scale`` and membrane bits k, the test
accuracy and what the stored membranes hold, side by side, from the local sweeps
``membrane_scale`` (Fashion-MNIST, T = 2) and ``membrane_scale_events`` (N-Fashion-MNIST, T = 3).

    python benchmarks/membrane_scales.py [--run] [--root runs/sweeps] [key=value ...]

``--run`` first runs (or resumes) both sweeps with the overrides given (the study's short budget
is ``data.subset=6000 trainer.max_epochs=2``); without it the summaries already written are read.
Per sweep, k and scale: the test accuracy of each seed and their mean, its difference to the
paper's scale (``max``) at the same k, ``stored_nonzero`` (the share of stored membranes not at
level 0, last validation epoch, every quantized layer) and the mean level entropy in nats
(log 3 = 1.10 is the most 2-bit levels can carry).
"""

from collections import defaultdict

from sweep_tables import print_tables

SWEEPS = ("membrane_scale", "membrane_scale_events")


def table(rows: list[dict]) -> list[str]:
    """Markdown lines: one per (k, scale), seeds averaged."""
    groups = defaultdict(list)
    for row in rows:
        groups[(int(row["k"]), row["model.membrane_scale"])].append(row)
    paper = {k: sum(r["test_acc"] for r in rows) / len(rows) for (k, scale), rows in groups.items() if scale == "max"}
    lines = ["| k | scale | test accuracy per seed | mean | vs max | stored non-zero | level entropy (nats) |",
             "|---|---|---|---|---|---|---|"]
    for (k, scale), members in sorted(groups.items()):
        accuracies = [r["test_acc"] for r in sorted(members, key=lambda r: r["seed"])]
        mean = sum(accuracies) / len(accuracies)
        nonzero = sum(r["stored_nonzero"] for r in members) / len(members)
        entropy = sum(r["level_entropy"] for r in members) / len(members)
        difference = f"{100 * (mean - paper[k]):+.2f}" if k in paper else "-"
        lines.append(f"| {k} | {scale} | {' / '.join(f'{100 * a:.2f}' for a in accuracies)} | {100 * mean:.2f} | "
                     f"{difference} | {100 * nonzero:.2f}% | {entropy:.3f} |")
    return lines


def main() -> None:
    print_tables(__doc__, SWEEPS, table)


if __name__ == "__main__":
    main()
