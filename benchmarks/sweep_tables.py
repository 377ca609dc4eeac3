"""What the sweep-study scripts (membrane_scales.py, wsdr_ablation.py) share: their command line,
running or resuming their local sweeps, and printing one table per sweep summary; ``QSNN``, the
installed CLI beside this Python, is fp_gap.py's and neurobench_table.py's too."""

import argparse
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from qsnn_lightning.training.analysis import read_summary
from qsnn_lightning.training.sweep import SUMMARY

QSNN = str(Path(sys.executable).with_name("qsnn"))


def print_tables(doc: str, sweeps: tuple[str, ...], table: Callable[[list[dict]], list[str]]) -> None:
    """``[--run] [--root DIR] [key=value ...]``: with ``--run`` each sweep runs (or resumes) locally
    with the overrides; then each summary found is printed as ``table(rows)``."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--run", action="store_true", help="run (or resume) the sweeps first")
    parser.add_argument("--root", default="runs/sweeps", help="the sweeps' folder (qsnn sweep --dir)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides of every run, e.g. data.subset=6000")
    args = parser.parse_args()
    for sweep in sweeps:
        if args.run:
            subprocess.run([QSNN, "sweep", sweep, "--local", "--dir", args.root, *args.overrides], check=True)
        summary = Path(args.root) / sweep / SUMMARY
        if not summary.is_file():
            print(f"{sweep}: no {summary} yet (run with --run)")
            continue
        print(f"\n{sweep} ({summary})\n")
        print("\n".join(table(read_summary(summary))))
