"""The ``qsnn`` command line: ``qsnn train``, ``qsnn experiments``, ``qsnn test``, ``qsnn sweep``, ``qsnn export``,
``qsnn footprint``, ``qsnn bench``.

Bad input gets one line naming the problem and the fix, and exit status 2, never a traceback.
"""

import argparse
import contextlib
import json
import os
import sys

from .training.host_memory import use_huge_pages

use_huge_pages()  # before torch is imported below: PyTorch reads the setting at its first allocation

from .bench import bench_checkpoint, format_report, results_path
from .data import EVENT_DATASETS
from .data.info import dataset_info
from .errors import QSNNError, UsageError, one_line
from .export import export_checkpoint
from .export.targets import PARTS
from .snn.backbones import BACKBONES
from .snn.footprint import footprint_table, format_table, rows_as_dicts
from .snn.precision import Precision
from .snn.training_memory import format_training_table, training_memory_table, training_rows_as_dicts
from .training.config import DEFAULT_EXPERIMENT, EXPERIMENTS_DIR, experiment_names, load_config
from .training.sweep import SUMMARY, load_sweep, run_local, run_wandb, sweep_root
from .training.train import evaluate_checkpoint, summary, train

USAGE_ERROR = 2


class OneLineParser(argparse.ArgumentParser):
    """argparse, but an error is one line (with a pointer to --help) instead of usage + message."""

    def error(self, message: str):
        """Raise the message as a :class:`UsageError`: one line, exit status 2."""
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _csv(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _positive_ints(text: str, what: str, largest: int = 2**31 - 1) -> list[int]:
    try:
        values = [int(item) for item in _csv(text)]
    except ValueError:
        raise UsageError(f"{what} must be comma-separated positive integers, got {text!r}") from None
    if not values or min(values) < 1 or max(values) > largest:
        raise UsageError(f"{what} must be comma-separated integers from 1 to {largest}, got {text!r}")
    return values


def run_footprint(args: argparse.Namespace) -> None:
    """``qsnn footprint``: Table 2's inference footprint, or with ``--training`` the memory of one
    training step on the full and the lean path (snn/training_memory.py)."""
    archs = _csv(args.arch)
    unknown = [arch for arch in archs if arch not in BACKBONES]
    if unknown or not archs:
        raise UsageError(f"unknown architecture {', '.join(unknown) or '(none)'}; choose from {', '.join(sorted(BACKBONES))}")
    try:
        info = dataset_info(args.dataset)
        precisions = [Precision.parse(bits) for bits in _csv(args.bits)]
    except ValueError as error:
        raise UsageError(str(error)) from None
    if not precisions:
        raise UsageError("--bits needs at least one bit width, e.g. 1w2u")
    batches = _positive_ints(args.batch, "--batch")
    (timesteps,) = _positive_ints(str(args.timesteps), "--timesteps", largest=1024)
    try:
        if args.training:
            rows = training_memory_table(archs, info.input_shape, info.num_classes, precisions, batches, timesteps,
                                         events=args.dataset in EVENT_DATASETS)
            print(json.dumps(training_rows_as_dicts(rows), indent=2) if args.json else format_training_table(rows))
            return
        rows = footprint_table(archs, info.input_shape, info.num_classes, precisions, batches)
    except ValueError as error:  # e.g. an input too small for the architecture
        raise UsageError(str(error)) from None
    print(json.dumps(rows_as_dicts(rows), indent=2) if args.json else format_table(rows))


def run_train(args: argparse.Namespace) -> None:
    """``qsnn train EXP [key=value ...]``: train, then print the test accuracy and the run directory."""
    experiment, overrides = args.experiment, list(args.overrides)
    if "=" in experiment:  # `qsnn train key=value ...`: the default experiment with overrides
        experiment, overrides = DEFAULT_EXPERIMENT, [experiment, *overrides]
    results = train(load_config(experiment, overrides))
    print("\n".join(summary(results)))
    print(f"run directory: {results['run_dir']}")


def run_experiments(args: argparse.Namespace) -> None:
    """``qsnn experiments``: one line per packaged experiment (dataset, arch, bits, T, epochs)."""
    rows = [("experiment", "dataset", "arch", "bits", "T", "epochs")]
    for name in experiment_names():
        cfg = load_config(name)
        rows.append((name, cfg.data.name, cfg.model.arch, cfg.model.bits, str(cfg.model.timesteps),
                     str(cfg.trainer.get("max_epochs"))))
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    print(f"(files in {EXPERIMENTS_DIR}; 'qsnn train NAME' or 'qsnn train my_exp.yaml' with a file of your own over base.yaml)")


def run_test(args: argparse.Namespace) -> None:
    """``qsnn test CKPT [key=value ...]``: the checkpoint's test accuracy on its experiment's test split, as JSON
    on stdout (Lightning's progress bar goes to stderr, so ``qsnn test CKPT > results.json`` holds only the JSON)."""
    with contextlib.redirect_stdout(sys.stderr):
        results = evaluate_checkpoint(args.checkpoint, args.overrides)
    print(json.dumps(results, indent=2))


def run_sweep(args: argparse.Namespace) -> None:
    """``qsnn sweep NAME``: the grid on W&B, or with ``--local`` here, point by point, with a summary."""
    sweep = load_sweep(args.sweep)
    root = sweep_root(args.dir, args.overrides)
    if not args.local:
        run_wandb(sweep, args.overrides, root)
        return
    rows = run_local(sweep, args.overrides, root)
    print(f"sweep {sweep.name}: {len(rows)} points; summary in {root / sweep.name / SUMMARY}")


def run_export(args: argparse.Namespace) -> None:
    """``qsnn export CKPT --out DIR``: the C runtime folder; prints the model's bytes (and a microcontroller's flash and RAM)."""
    info = export_checkpoint(args.checkpoint, args.out, args.target, args.samples, args.overrides, args.c_name)
    line = f"exported {info['arch']} {info['bits']} to {args.out}: {info['model_bytes']} bytes of model"
    if "flash_bytes" in info:
        line += f"; {PARTS[args.target].name} flash {info['flash_bytes']} bytes, RAM {info['ram_bytes']} bytes"
    print(line)


def run_bench(args: argparse.Namespace) -> None:
    """``qsnn bench CKPT``: NeuroBench's figures on the test split (or its first ``--samples``), as a table or JSON;
    also written to neurobench.json beside the checkpoint."""
    report = bench_checkpoint(args.checkpoint, args.samples, args.overrides)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(format_report(report))
    print(f"written to {results_path(args.checkpoint)}")


def build_parser() -> argparse.ArgumentParser:
    """The ``qsnn`` parser: one subcommand each, its handler in ``args.run``."""
    parser = OneLineParser(prog="qsnn", description="Quantized spiking neural networks: train, account, export.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    train = commands.add_parser("train", help="train a packaged experiment or your own YAML file, with overrides")
    train.add_argument("experiment", nargs="?", default=DEFAULT_EXPERIMENT,
                       help=f"a packaged experiment (default {DEFAULT_EXPERIMENT}; 'qsnn experiments' lists them) "
                            "or the path of a .yaml file merged over the packaged base.yaml")
    train.add_argument("overrides", nargs="*", help="key=value overrides, e.g. trainer.max_epochs=1")
    train.set_defaults(run=run_train)

    experiments = commands.add_parser("experiments", help="list the packaged experiments (every Table 1 row)")
    experiments.set_defaults(run=run_experiments)

    test = commands.add_parser("test", help="evaluate a checkpoint on its experiment's test split")
    test.add_argument("checkpoint", help="path to a .ckpt written by qsnn train")
    test.add_argument("overrides", nargs="*", help="key=value overrides, e.g. data.data_dir=/data")
    test.set_defaults(run=run_test)

    sweep = commands.add_parser("sweep", help="run a packaged sweep (lambda_k) or a W&B sweep file, with W&B or --local")
    sweep.add_argument("sweep", help="sweep name, e.g. lambda_k, or a path to a W&B sweep file")
    sweep.add_argument("overrides", nargs="*", help="key=value overrides for every point, e.g. trainer.max_epochs=1")
    sweep.add_argument("--local", action="store_true",
                       help="run the grid here, offline, one run per point (resumable), with a summary CSV and plot")
    sweep.add_argument("--dir", help="where sweeps write their points (default: <run_dir>/sweeps, runs/sweeps)")
    sweep.set_defaults(run=run_sweep)

    export = commands.add_parser("export", help="export a 1w checkpoint to the C runtime (docs/export.md)")
    export.add_argument("checkpoint", help="path to a .ckpt written by qsnn train")
    export.add_argument("--out", required=True, help="output folder (must not exist or be empty)")
    export.add_argument("--target", default="host", choices=("host", *PARTS),
                        help="cortex-m4 or rv32 also builds that microcontroller's image, runs it in QEMU and measures "
                             "flash, RAM and instructions per inference")
    export.add_argument("--samples", type=int, default=None,
                        help="test samples written to samples.bin and expected.txt (default 20, or the whole test split if smaller)")
    export.add_argument("--c-name", default="qsnn_model",
                        help="the C symbol of the generated qsnn_model_t and the prefix of its macros (upper case), "
                             "so that two exports link into one program (default: qsnn_model)")
    export.add_argument("overrides", nargs="*", help="key=value overrides of the saved config, e.g. data.data_dir=/data")
    export.set_defaults(run=run_export)

    footprint = commands.add_parser("footprint", help="memory footprint and model size (Table 2, Figure 3)")
    footprint.add_argument("--arch", default="resnet19,vgg16,vggsnn", help="comma-separated backbones")
    footprint.add_argument("--dataset", default="cifar10", help="dataset whose input shape and classes to use")
    footprint.add_argument("--bits", default="32w32u,1w8u,1w4u,1w2u", help="comma-separated bit widths <W>w<K>u")
    footprint.add_argument("--batch", default="1,64,256", help="comma-separated batch sizes")
    footprint.add_argument("--training", action="store_true",
                           help="the memory of one training step instead, on the full and the lean path (speed.activation_memory)")
    footprint.add_argument("--timesteps", default="2", help="time steps T of the training step (--training; default 2, the paper's CIFAR)")
    footprint.add_argument("--json", action="store_true", help="print a JSON list of rows instead of the table")
    footprint.set_defaults(run=run_footprint)

    bench = commands.add_parser("bench", help="NeuroBench's metrics of a checkpoint on its test split (needs the neurobench extra)")
    bench.add_argument("checkpoint", help="path to a .ckpt written by qsnn train")
    bench.add_argument("--samples", type=int, default=None, help="the first N test samples (default: the whole test split)")
    bench.add_argument("--json", action="store_true", help="print the report as JSON instead of the table")
    bench.add_argument("overrides", nargs="*", help="key=value overrides of the saved config, e.g. data.data_dir=/data")
    bench.set_defaults(run=run_bench)
    return parser


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse ``argv``; ``key=value`` overrides may also follow the options (``qsnn sweep NAME --local
    a=b``), which argparse alone refuses once a positional list has been read."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    stray = [item for item in extra if item.startswith("-") or "=" not in item or not hasattr(args, "overrides")]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    return args


def main(argv: list[str] | None = None) -> int:
    """Run one ``qsnn`` command; the exit status: 0, or 2 with one line for any user error."""
    try:
        args = parse_arguments(argv)
        args.run(args)
    except QSNNError as error:
        print(f"qsnn: error: {one_line(error)}", file=sys.stderr)
        return error.exit_status  # 2; 130 / 143 for a run stopped by SIGINT / SIGTERM
    except BrokenPipeError:  # e.g. `qsnn footprint | head`: the reader left; say so once, without a traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's own flush at exit must not fail again
        print("qsnn: error: the output pipe was closed before everything was written", file=sys.stderr)
        return USAGE_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
