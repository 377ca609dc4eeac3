"""Page faults and wall time per training step, with glibc's default allocator settings and with
freed host memory reused (``speed.reuse_freed_memory``), for our full-precision SNN, our Q-SNN
1w-2u and SpikingJelly on the same network, side by side in one run.

    python benchmarks/page_faults.py [--workload resnet19_cifar|vggsnn_dvs] [--batch N] [--steps N]

Each (setting, implementation) pair runs in a fresh process (allocator settings are
process-wide): warm-up steps, then the mean minor page faults (``getrusage``) and wall time of
``--steps`` steps of train_throughput.py's training step.
"""

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_throughput import WORKLOADS, Trainer, batch_size, parse_args  # noqa: E402

from qsnn_lightning.training.host_memory import reuse_freed_memory  # noqa: E402

IMPLS = ("qsnn_fp", "qsnn_1w2u", "spikingjelly")
SETTINGS = ("default", "reuse")


def measure(setting: str, impl: str, workload: str, batch: int, steps: int) -> dict:
    """In this process: faults and seconds per step of ``impl`` under ``setting``."""
    if setting == "reuse":
        reuse_freed_memory()
    options = parse_args(["--workloads", workload, "--impls", impl])
    spec = WORKLOADS[workload]
    trainer = Trainer(impl, spec, spec.input_shape, batch, torch.device("cpu"), False, options)
    for _ in range(3):
        trainer.step()
    faults, start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
    for _ in range(steps):
        trainer.step()
    return {"faults": (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / steps,
            "seconds": (time.perf_counter() - start) / steps}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=tuple(WORKLOADS), default="resnet19_cifar")
    parser.add_argument("--batch", type=int, help="default: the --quick CPU batch of train_throughput.py")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)  # setting, impl
    args = parser.parse_args(argv)
    batch = args.batch or batch_size(parse_args(["--quick"]), args.workload)
    if args.child:
        print(json.dumps(measure(*args.child, args.workload, batch, args.steps)))
        return 0
    print(f"{args.workload}, batch {batch}, eager kernels, {args.steps} steps after 3 of warm-up; per step:")
    print(f"{'impl':<14}{'faults (default)':>18}{'faults (reuse)':>16}{'s (default)':>13}{'s (reuse)':>11}")
    for impl in IMPLS:
        rows = {}
        for setting in SETTINGS:
            command = [sys.executable, __file__, "--workload", args.workload, "--batch", str(batch),
                       "--steps", str(args.steps), "--child", setting, impl]
            rows[setting] = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1])
        print(f"{impl:<14}{rows['default']['faults']:>18.0f}{rows['reuse']['faults']:>16.0f}"
              f"{rows['default']['seconds']:>13.2f}{rows['reuse']['seconds']:>11.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
