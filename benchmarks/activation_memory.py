"""Full against lean training memory (``speed.activation_memory``), side by side in one run.

    python benchmarks/activation_memory.py [--batches 2 4 8] [--steps 2] [--rounds 1] [--size 128] [--device cpu|cuda]
        [--freed reuse|return] [--no-huge-pages] [--experiments NAME ...] [--skip-measure | --skip-estimates]

1. The estimate (training/memory_check.py: tensor by tensor on fake tensors, no memory) of one
   training step of every Table 1 network (or ``--experiments``) at its paper batch, full and lean.
2. ``dvsgesture_1w4u`` (VGGSNN, 2x``size``x``size``, T = 16) at each batch, full and lean
   interleaved, each in a fresh process: the measured peak RSS increase of ``--steps`` SGD steps
   (VmHWM after clearing it), the estimate (raw: state + peak activations + input; need: with
   SAFETY and OVERHEAD), and seconds per step (the last step; the first pays for first-touch
   allocation). Then lean / full for memory and time. With ``--device cuda`` the peak is
   ``torch.cuda.max_memory_allocated`` over the steps, less what was allocated before them.
   Host memory as ``qsnn train`` sets it (training/host_memory.py): freed blocks reused and
   torch's large tensors on huge pages by default; ``--freed return`` and ``--no-huge-pages``
   measure the alternatives.
"""

import argparse
import json
import os
import subprocess
import sys
import textwrap
import time

from qsnn_lightning.training.host_memory import HUGE_PAGES_ENV

TABLE1 = (  # experiment, paper batch (the files' own), network
    ("cifar10_1w2u", "ResNet19, CIFAR-10, T = 2"),
    ("tinyimagenet_1w2u", "VGG16, TinyImageNet, T = 4"),
    ("dvsgesture_1w4u", "VGGSNN, DVS-Gesture 128x128, T = 16"),
    ("dvscifar10_1w2u", "VGGSNN, DVS-CIFAR10, T = 10"),
)
GB = 1e9

MEASURE = textwrap.dedent("""
    import json, sys, time, torch
    from pathlib import Path
    from qsnn_lightning.data.modules import make_datamodule
    from qsnn_lightning.training.config import load_config
    from qsnn_lightning.training.host_memory import return_freed_memory, reuse_freed_memory
    from qsnn_lightning.training.memory_check import estimate_step, probe_batch, resident_bytes
    from qsnn_lightning.training.build import make_module
    mode, batch, steps, size, device = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    reuse_freed_memory() if sys.argv[6] == "reuse" else return_freed_memory()  # as qsnn train does (speed.reuse_freed_memory)
    cfg = load_config("dvsgesture_1w4u", [f"data.batch_size={batch}", f"data.events.resize={size}"])
    datamodule = make_datamodule(cfg)
    estimate = estimate_step(cfg, datamodule, mode)
    module = make_module(cfg, datamodule, mode).train().to(device)
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1, momentum=0.9)
    torch.manual_seed(0)
    frames, labels = probe_batch(datamodule, batch, cfg.model.timesteps)
    frames, labels = (torch.rand_like(frames) > 0.9).float().to(device), labels.to(device)  # a sparse sensor's events
    cuda = device == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    else:
        Path("/proc/self/clear_refs").write_text("5")  # peak RSS := current
    before, seconds = torch.cuda.memory_allocated() if cuda else resident_bytes(), []
    for _ in range(steps):
        start = time.perf_counter()
        parts, _, _ = module.model_step((frames, labels))
        parts.total.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    if cuda:
        peak = torch.cuda.max_memory_allocated()
    else:
        status = Path("/proc/self/status").read_text().splitlines()
        peak = int(next(line.split()[1] for line in status if line.startswith("VmHWM:"))) * 1024
    print(json.dumps({"increase": peak - before, "raw": estimate.raw(batch), "need": estimate.need(batch),
                      "seconds": seconds[-1]}))
""")


def table1_estimates(experiments) -> list[dict]:
    """Estimated bytes of one training step of each Table 1 network in ``experiments`` at its paper batch."""
    from qsnn_lightning.data.modules import make_datamodule
    from qsnn_lightning.training.config import load_config
    from qsnn_lightning.training.memory_check import estimate_step

    rows = []
    for experiment, network in TABLE1:
        if experiment not in experiments:
            continue
        cfg = load_config(experiment)
        datamodule = make_datamodule(cfg)
        batch = cfg.data.batch_size
        full, lean = (estimate_step(cfg, datamodule, mode).raw(batch) for mode in ("full", "lean"))
        rows.append({"experiment": experiment, "network": network, "batch": batch, "full": full, "lean": lean})
    return rows


def measure(mode: str, batch: int, steps: int, size: int, device: str, freed: str = "reuse", huge_pages: bool = True) -> dict:
    """One fresh process's peak increase, estimate and seconds per step (module docstring, part 2)."""
    env = {**os.environ, HUGE_PAGES_ENV: "1" if huge_pages else "0"}  # qsnn sets 1 before torch is imported
    result = subprocess.run([sys.executable, "-c", MEASURE, mode, str(batch), str(steps), str(size), device, freed],
                            capture_output=True, text=True, check=True, env=env)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1, help="repeat every (batch, mode) run, interleaved")
    parser.add_argument("--size", type=int, default=128, help="frame side of dvsgesture_1w4u (128: the paper's)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="cuda: peak of torch.cuda.max_memory_allocated")
    parser.add_argument("--experiments", nargs="+", choices=[name for name, _ in TABLE1], default=[name for name, _ in TABLE1],
                        help="the Table 1 networks of part 1 (default: all four)")
    parser.add_argument("--skip-measure", action="store_true", help="only the estimates of part 1")
    parser.add_argument("--skip-estimates", action="store_true", help="only the measured steps of part 2")
    parser.add_argument("--freed", choices=("reuse", "return"), default="reuse",
                        help="freed host memory kept for the next step (speed.reuse_freed_memory=true, the default) or returned")
    parser.add_argument("--no-huge-pages", action="store_true", help="torch's allocations on 4 KiB pages (qsnn uses huge pages)")
    args = parser.parse_args()

    if not args.skip_estimates:
        print_estimates(args.experiments)
    if not args.skip_measure:
        print_measured(args)


def print_estimates(experiments) -> None:
    """Part 1: the table of :func:`table1_estimates`."""
    print("1. One training step at the paper's batch, estimated (GB: parameters, gradients, optimizer state, peak activations, input)")
    print(f"{'experiment':<20} {'network':<36} {'batch':>5} {'full':>8} {'lean':>8} {'lean/full':>9}")
    for row in table1_estimates(experiments):
        print(f"{row['experiment']:<20} {row['network']:<36} {row['batch']:>5} {row['full'] / GB:>8.2f} "
              f"{row['lean'] / GB:>8.2f} {row['lean'] / row['full']:>9.2f}")


def print_measured(args: argparse.Namespace) -> None:
    """Part 2: fresh processes per (round, batch, mode), interleaved, and the lean / full ratios."""
    print(f"\n2. dvsgesture_1w4u at 2x{args.size}x{args.size}, T = 16, measured on {args.device} "
          f"({'peak RSS' if args.device == 'cpu' else 'max_memory_allocated'} increase) against the estimate, "
          f"{args.steps} SGD steps, {args.rounds} round(s), freed memory {'reused' if args.freed == 'reuse' else 'returned'}, "
          f"huge pages {'off' if args.no_huge_pages else 'on'}")
    print(f"{'batch':>5} {'mode':<5} {'peak GB':>8} {'raw GB':>7} {'peak/raw':>8} {'need GB':>8} {'s/step':>7}")
    results: dict = {}
    started = time.time()
    for _ in range(args.rounds):
        for batch in args.batches:
            for mode in ("full", "lean"):
                run = measure(mode, batch, args.steps, args.size, args.device, args.freed, not args.no_huge_pages)
                results.setdefault((batch, mode), []).append(run)
                print(f"{batch:>5} {mode:<5} {run['increase'] / GB:>8.2f} {run['raw'] / GB:>7.2f} "
                      f"{run['increase'] / run['raw']:>8.2f} {run['need'] / GB:>8.2f} {run['seconds']:>7.1f}", flush=True)
    print("\nlean / full (means over rounds)")
    for batch in args.batches:
        full, lean = results[batch, "full"], results[batch, "lean"]

        def mean(runs, key):
            return sum(run[key] for run in runs) / len(runs)

        print(f"batch {batch}: peak RSS {mean(lean, 'increase') / mean(full, 'increase'):.2f}x, "
              f"step time {mean(lean, 'seconds') / mean(full, 'seconds'):.2f}x")
    print(f"({time.time() - started:.0f} s)")


if __name__ == "__main__":
    main()
