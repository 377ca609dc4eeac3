"""The microcontroller cost of the event-camera model on a checkpoint that fires: DVS-Gesture-layout files
with gesture-like events, a short training run through the real CLI, then the Cortex-M4 export.

    python benchmarks/dvs_mcu_frames.py [--epochs 8] [--batch-size 8] [--events 40000] [--train-users 6] [--test-users 2]
                                        [--seeds 42] [--samples 11] [--rv32] [--keep DIR] [--json FILE]

Writes tonic's DVS-Gesture layout (``DVSGesture/ibmGestureTrain|ibmGestureTest/user<NN>_<lighting>/<label>.npy``,
columns x, y, p, t as in tests/dataset_files.py) with, for each of the 11 gestures, a hand-sized blob whose
edge emits the events (ON at its leading edge, OFF at its trailing edge) while it moves along a path of its
class (a line at the class's angle, a circle one way or the other, ...), plus uniform sensor noise:
``--events`` per sample (real DVS-Gesture samples hold on the order of 10^5). Then runs
``qsnn train dvsgesture_mcu_1w2u data.data_dir=... trainer.max_epochs=N`` on the CPU, and ``qsnn export
CKPT --target cortex-m4`` (and ``--target rv32`` with ``--rv32``) on the first ``--samples`` test samples,
and prints, from each manifest: instructions per inference and per frame (T frames an inference), the
worst case (every spike 1), the firing rate of the embedded samples, flash and RAM. ``--seeds 42,1,2``
trains one checkpoint per seed (the figures follow the spikes, so they move with the training run; the
training's floating point also differs between CPUs). About 5 minutes on two CPU cores with the defaults.
"""

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sweep_tables import QSNN

EXPERIMENT = "dvsgesture_mcu_1w2u"
CLASSES = 11
SENSOR = 128  # DVS128
LIGHTING = ("fluorescent", "led", "natural", "lab", "fluorescent_led")


def gesture_path(label: int, steps: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The blob's centre ``[len(steps), 2]`` (x, y) at phases ``steps`` in [0, 1]: lines at the class's angle
    (labels 0..5, back and forth), circles clockwise or not (6, 7), a figure eight (8), a vertical and a
    horizontal wave (9, 10); a small random offset per sample."""
    centre = SENSOR / 2 + rng.normal(0, 6, 2)
    if label < 6:
        angle = np.pi * label / 6
        reach = 35 * np.sin(2 * np.pi * steps)
        return centre + reach[:, None] * np.array([np.cos(angle), np.sin(angle)])
    turn = 2 * np.pi * steps * (1 if label != 7 else -1)
    if label in (6, 7):
        return centre + 30 * np.stack([np.cos(turn), np.sin(turn)], 1)
    if label == 8:
        return centre + np.stack([30 * np.sin(turn), 20 * np.sin(2 * turn)], 1)
    wave = np.stack([25 * np.sin(3 * turn), 40 * (steps - 0.5)], 1)
    return centre + (wave if label == 9 else wave[:, ::-1])


def gesture_events(label: int, count: int, seed: int, noise: float = 0.1) -> np.ndarray:
    """``[count, 4]`` int64 rows (x, y, p, t in ms, non-decreasing): events on the edge of a moving disc (ON
    ahead of its motion, OFF behind), and a fraction ``noise`` of uniform noise events."""
    rng = np.random.default_rng(seed)
    signal = count - int(noise * count)
    t = np.sort(rng.uniform(0, 1, signal))
    centre = gesture_path(label, t, rng)
    velocity = np.gradient(centre, axis=0)
    angle = rng.uniform(0, 2 * np.pi, signal)
    radius = 14 + rng.normal(0, 1.5, signal)
    offset = radius[:, None] * np.stack([np.cos(angle), np.sin(angle)], 1)
    xy = np.clip(np.rint(centre + offset), 0, SENSOR - 1)
    polarity = (np.sum(offset * velocity, axis=1) > 0).astype(np.int64)
    rows = np.column_stack([xy, polarity, t * 1500])
    noise_rows = np.column_stack([rng.integers(0, SENSOR, (count - signal, 2)), rng.integers(0, 2, count - signal),
                                  rng.uniform(0, 1500, count - signal)])
    rows = np.concatenate([rows, noise_rows])
    return rows[np.argsort(rows[:, 3], kind="stable")].astype(np.int64)


def write_files(root: Path, events: int, train_users: int, test_users: int) -> int:
    """tonic's layout, one file per gesture and user folder; returns the number of files."""
    written = 0
    for split, users, first in (("ibmGestureTrain", train_users, 1), ("ibmGestureTest", test_users, 24)):
        for user in range(users):
            folder = root / "DVSGesture" / split / f"user{first + user:02d}_{LIGHTING[user % len(LIGHTING)]}"
            folder.mkdir(parents=True, exist_ok=True)   # the same files again: the same seeds
            for label in range(CLASSES):
                np.save(folder / f"{label}.npy", gesture_events(label, events, seed=1000 * (first + user) + label))
                written += 1
    return written


def run(command: list[str]) -> str:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{' '.join(command[:3])} ... failed:\n{result.stderr[-3000:]}")
    return result.stdout


def train(data: Path, runs: Path, epochs: int, batch_size: int, seed: int) -> tuple[Path, dict]:
    """``qsnn train`` through the CLI; (the checkpoint it tested, its results.json)."""
    output = run([QSNN, "train", EXPERIMENT, f"data.data_dir={data}", "data.download=false", f"run_dir={runs}",
                  f"trainer.max_epochs={epochs}", f"data.batch_size={batch_size}", f"seed={seed}",
                  "trainer.accelerator=cpu", "trainer.enable_progress_bar=false"])
    run_dir = Path(re.search(r"^run directory: (.+)$", output, re.M).group(1))
    results = json.loads((run_dir / "results.json").read_text())
    return Path(results["checkpoint"]), results


def export(checkpoint: Path, data: Path, out: Path, target: str, samples: int) -> dict:
    shutil.rmtree(out, ignore_errors=True)  # a kept folder's last export
    run([QSNN, "export", str(checkpoint), "--out", str(out), "--target", target, "--samples", str(samples),
         f"data.data_dir={data}", "data.download=false"])
    return json.loads((out / "manifest.json").read_text())


def row(seed: "int | None", test_acc: "float | None", target: str, info: dict) -> dict:
    prefix = "m4" if target == "cortex-m4" else "rv32"
    per_inference = info[f"{prefix}_instructions_per_inference"]
    frames = info["timesteps"]
    return {"seed": "-" if seed is None else seed, "test_acc": "-" if test_acc is None else round(test_acc, 3),
            "target": target, "instructions_per_inference": per_inference,
            "instructions_per_frame": round(per_inference / frames),
            "worst_per_inference": info[f"{prefix}_worst_instructions_per_inference"],
            "worst_per_frame": round(info[f"{prefix}_worst_instructions_per_inference"] / frames),
            "firing_rate": info["firing_rate"], "flash_bytes": info["flash_bytes"], "ram_bytes": info["ram_bytes"],
            "samples": info["samples"], "qemu_matches_expected": info["qemu_matches_expected"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=8, help="training epochs (default 8)")
    parser.add_argument("--batch-size", type=int, default=8, help="training batch size (default 8: more steps an epoch)")
    parser.add_argument("--events", type=int, default=40_000, help="events per sample (default 40,000)")
    parser.add_argument("--train-users", type=int, default=6, help="user folders of the training split, 11 files each")
    parser.add_argument("--test-users", type=int, default=2, help="user folders of the test split, 11 files each")
    parser.add_argument("--seeds", default="42", help="training seeds, comma-separated: a checkpoint each (default 42)")
    parser.add_argument("--samples", type=int, default=11, help="test samples embedded in the images (default 11)")
    parser.add_argument("--rv32", action="store_true", help="also export --target rv32")
    parser.add_argument("--checkpoint", type=Path, help="skip training: export this checkpoint (its data written anew)")
    parser.add_argument("--keep", type=Path, help="work in this folder (kept) instead of a temporary one")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        work = args.keep or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        data = work / "data"
        start = time.perf_counter()
        files = write_files(data, args.events, args.train_users, args.test_users)
        print(f"{files} DVS-Gesture files of {args.events:,} events in {data / 'DVSGesture'} "
              f"({time.perf_counter() - start:.0f} s)")
        seeds = [] if args.checkpoint else [int(seed) for seed in args.seeds.split(",")]
        trained = {None: (args.checkpoint, {})} if args.checkpoint else {}
        for seed in seeds:
            start = time.perf_counter()
            trained[seed] = train(data, work / "runs", args.epochs, args.batch_size, seed)
            print(f"trained {args.epochs} epochs at seed {seed} in {time.perf_counter() - start:.0f} s: test_acc "
                  f"{trained[seed][1].get('test_acc', float('nan')):.3f}, {trained[seed][0]}")
        rows = []
        for seed, (checkpoint, results) in trained.items():
            for target in ("cortex-m4", *(("rv32",) if args.rv32 else ())):
                start = time.perf_counter()
                folder = work / f"export-{target}" if seed is None else work / f"export-{target}-seed{seed}"
                rows.append(row(seed, results.get("test_acc"), target,
                                export(checkpoint, data, folder, target, args.samples)))
                print(f"exported --target {target} in {time.perf_counter() - start:.0f} s")

    columns = ("seed", "test_acc", "target", "instructions_per_inference", "instructions_per_frame", "worst_per_inference",
               "worst_per_frame", "firing_rate", "flash_bytes", "ram_bytes", "samples", "qemu_matches_expected")
    cells = [[str(c) for c in columns]] + [[f"{r[c]:,}" if isinstance(r[c], int) and not isinstance(r[c], bool)
                                            else str(r[c]) for c in columns] for r in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    for line in cells:
        print("  ".join(cell.rjust(width) for cell, width in zip(line, widths)))
    if args.json:
        args.json.write_text(json.dumps({"checkpoints": {str(seed): str(checkpoint) for seed, (checkpoint, _) in trained.items()},
                                         "results": {str(seed): results for seed, (_, results) in trained.items()},
                                         "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
