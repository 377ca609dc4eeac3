"""Issue 26's check through the real CLI: ``qsnn train dvsgesture_1w4u`` on the full and on the lean
path, side by side in one run, on files in tonic's DVS-Gesture layout.

    python benchmarks/lean_cli_check.py [--batch 8] [--steps 3] [--size 128] [--dir /tmp/lean_cli]

Each path trains ``--steps`` SGD steps from the same seed at ``--batch`` (2x``size``x``size``
frames, T = 16) in its own process (`qsnn train ... speed.activation_memory=full|lean`); the
script prints each process's peak RSS (``wait4``'s ru_maxrss) and wall time, the ratios, and how
far apart the two ``last.ckpt`` files are: weights, buffers and optimizer state.

    python benchmarks/lean_cli_check.py --paper-batch [--size 128] [--dir /tmp/lean_cli]

runs instead ``qsnn train dvsgesture_1w4u trainer.fast_dev_run=true`` as the experiment file has it
(batch 64, 2x128x128, the default ``speed.activation_memory=auto``) on 99 training samples, and
prints the preflight's choice, the peak RSS, the wall time and the exit status: whether the
paper's batch trains a step on this machine (slow on a CPU: about half an hour on two cores).
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from sweep_tables import QSNN  # noqa: E402  (benchmarks/ is the script's folder)

from dataset_files import write_dvs_gesture  # noqa: E402  (tonic's layout, as the tests write it)


def run(command: list[str]) -> tuple[int, int, float, str]:
    """(exit status, peak RSS in bytes from ``wait4``, seconds, stdout and stderr) of one process; its
    output goes to a file, so a full pipe cannot stall it."""
    with tempfile.TemporaryFile("w+") as output:
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, text=True)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
        output.seek(0)
        return os.waitstatus_to_exitcode(status), usage.ru_maxrss * 1024, seconds, output.read()


def train(mode: str, data: Path, runs: Path, batch: int, steps: int, size: int) -> tuple[int, float, Path]:
    """(peak RSS in bytes, seconds, last.ckpt) of one ``qsnn train`` process."""
    command = [
        QSNN, "train", "dvsgesture_1w4u", f"data.data_dir={data}", f"run_dir={runs / mode}", f"data.batch_size={batch}",
        f"trainer.max_steps={steps}", f"data.events.resize={size}", f"speed.activation_memory={mode}",
        "trainer.accelerator=cpu", "trainer.enable_progress_bar=false", "test_every_epoch=false",
    ]
    status, rss, seconds, output = run(command)
    if status != 0:
        raise SystemExit(f"qsnn train ({mode}) failed:\n{output[-3000:]}")
    (checkpoint,) = (runs / mode).rglob("last.ckpt")
    return rss, seconds, checkpoint


def paper_batch(root: Path, size: int) -> None:
    """One ``fast_dev_run`` step of ``dvsgesture_1w4u`` at its own batch of 64, printed as it went."""
    data = root / "data64"
    if not (data / "DVSGesture").exists():
        write_dvs_gesture(data, labels=tuple(range(11)))  # 33 training samples in three folders
        train_folders = data / "DVSGesture" / "ibmGestureTrain"
        for user in range(3, 9):  # six more folders of 11: 99 samples, a full batch of 64
            shutil.copytree(train_folders / "user01_led", train_folders / f"user{user:02d}_led")
    command = [QSNN, "train", "dvsgesture_1w4u", f"data.data_dir={data}", f"run_dir={root / 'runs64'}",
               "trainer.fast_dev_run=true", "trainer.accelerator=cpu", "trainer.enable_progress_bar=false",
               f"data.events.resize={size}"]
    status, rss, seconds, output = run(command)
    print("\n".join(line for line in output.splitlines() if "activation_memory" in line or "test accuracy" in line))
    print(f"batch 64: exit status {status}, peak RSS {rss / 1e9:.2f} GB, {seconds:.0f} s")
    if status != 0:
        raise SystemExit(output[-3000:])


def differences(a: dict, b: dict, prefix: str = "") -> list[tuple[str, float, int, int]]:
    """(name, largest |a - b|, entries beyond 1e-5 + 1e-5 |a|, entries) of every float tensor in two nested dicts."""
    rows = []
    for key, value in a.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows += differences(value, b[key], f"{name}.")
        elif torch.is_tensor(value) and value.is_floating_point():
            gap = (value - b[key]).abs()
            rows.append((name, float(gap.max()) if gap.numel() else 0.0, int((gap > 1e-5 + 1e-5 * value.abs()).sum()), gap.numel()))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--dir", default="/tmp/lean_cli_check")
    parser.add_argument("--paper-batch", action="store_true", help="one fast_dev_run step at batch 64 instead (auto's choice)")
    args = parser.parse_args()
    root = Path(args.dir)
    if args.paper_batch:
        return paper_batch(root, args.size)
    data = root / "data"
    if not (data / "DVSGesture").exists():
        write_dvs_gesture(data, labels=tuple(range(8)))  # 24 training samples: three batches of 8
    results = {mode: train(mode, data, root / "runs", args.batch, args.steps, args.size) for mode in ("full", "lean")}
    for mode, (rss, seconds, checkpoint) in results.items():
        print(f"{mode}: peak RSS {rss / 1e9:.2f} GB, {seconds:.0f} s, {checkpoint}")
    (full_rss, full_s, full_ckpt), (lean_rss, lean_s, lean_ckpt) = results["full"], results["lean"]
    print(f"lean / full: peak RSS {lean_rss / full_rss:.2f}x, time {lean_s / full_s:.2f}x")
    a, b = (torch.load(path, map_location="cpu", weights_only=False) for path in (full_ckpt, lean_ckpt))
    rows = differences(a["state_dict"], b["state_dict"], "state_dict.")
    rows += differences({"optimizer": dict(enumerate(a["optimizer_states"]))}, {"optimizer": dict(enumerate(b["optimizer_states"]))})
    off = sum(row[2] for row in rows)
    total = sum(row[3] for row in rows)
    print(f"checkpoints: {len(rows)} tensors, {total} values, largest difference {max(row[1] for row in rows):.3g}; "
          f"{off} values beyond 1e-5 (relative 1e-5 where larger)")
    for name, gap, count, numel in rows:
        if count:
            print(f"  {name}: {count} of {numel} beyond, largest {gap:.3g}")


if __name__ == "__main__":
    main()
