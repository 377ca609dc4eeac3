"""Exported C runtime against PyTorch, measured side by side in one run on the same model.

    python benchmarks/export_bench.py CKPT [--images 10000] [--latency-images 200] [--rounds 5]
                                           [--m4-samples 20] [--json FILE]

Prints, for the checkpoint's model:
- host C latency per image (the exported program as its Makefile builds it, -O3 and -march=native
  where the compiler can: ``qsnn_host`` on the runtime's host path, and ``qsnn_mcu`` on the
  microcontrollers' event-driven kernels; one
  thread; the time of a run on the first image alone subtracted, over the other images) against
  PyTorch fp32 batch-1 eval inference on one thread, and their ratios; the three are timed in
  alternating rounds and the best round of each counts;
- instructions per inference of both host programs built portable (``HOST_ARCH=``: valgrind does
  not run AVX-512 code), from ``valgrind --tool=callgrind`` (two runs with different image counts,
  so start-up costs cancel out);
- with arm-none-eabi-gcc and qemu-system-arm installed: the Cortex-M4 export's instructions per
  inference (QEMU -icount, SysTick), flash and RAM, and the packed membrane state;
- the exported model's bytes against the fp32 checkpoint weights' bytes, and their ratio;
- agreement of the integer predictions (C and Python reference) with the PyTorch eval model,
  and both accuracies, on the first ``--images`` test images (latency on the first
  ``--latency-images``).
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

import torch

from qsnn_lightning.checkpoint import backbone_from_checkpoint, read_checkpoint
from qsnn_lightning.data import make_data
from qsnn_lightning.export import fold, quantize_input, reference
from qsnn_lightning.export.targets import ARM_GCC, QEMU
from qsnn_lightning.export.writer import export_checkpoint, first_test_samples
from qsnn_lightning.training.config import restore_config

# the export's host programs: the host path's kernels, and the microcontrollers'
HOST_PROGRAMS = ("qsnn_host", "qsnn_mcu")


def build_program(folder: Path, name: str, portable: bool = False) -> Path:
    """The export's host program ``name`` as its Makefile builds it (for this CPU, ``-march=native`` where the
    compiler can), or ``portable`` (``HOST_ARCH=``, kept as ``name-portable``: valgrind does not run AVX-512 code)."""
    subprocess.run(["make", "-s", "-B", "-C", str(folder), name, *(["HOST_ARCH="] if portable else [])], check=True)
    if portable:
        return (folder / name).rename(folder / f"{name}-portable")
    return folder / name


def c_seconds(binary: Path, samples: Path) -> float:
    start = time.perf_counter()
    subprocess.run([str(binary), str(samples)], check=True, capture_output=True)
    return time.perf_counter() - start


def torch_seconds(backbone, images: torch.Tensor) -> float:
    with torch.no_grad():
        start = time.perf_counter()
        for image in images:
            backbone(image.unsqueeze(0))
        return time.perf_counter() - start


def interleaved_latencies(binaries: dict, timed: Path, first: Path, backbone, images: torch.Tensor, rounds: int):
    """Per-image seconds of each C program (``{name: binary}``) and of PyTorch, best of ``rounds``
    alternating rounds; a C program's start-up is taken out as its run on the first image alone
    (``first``; the host program refuses an empty samples file): (t(all) - t(first)) / (images - 1)."""
    torch.set_num_threads(1)
    with torch.no_grad():
        backbone(images[:1])
    c_best = {name: float("inf") for name in binaries}
    startup = dict(c_best)
    torch_best = float("inf")
    for _ in range(rounds):
        for name, binary in binaries.items():
            startup[name] = min(startup[name], c_seconds(binary, first))
            c_best[name] = min(c_best[name], c_seconds(binary, timed))
        torch_best = min(torch_best, torch_seconds(backbone, images))
    return {name: (c_best[name] - startup[name]) / (len(images) - 1) for name in binaries}, torch_best / len(images)


def m4_figures(checkpoint: str, samples: int) -> dict:
    """The Cortex-M4 export's measured figures (empty without the toolchain)."""
    if shutil.which(ARM_GCC) is None or shutil.which(QEMU) is None:
        return {}
    with tempfile.TemporaryDirectory() as scratch:
        info = export_checkpoint(checkpoint, str(Path(scratch) / "m4"), target="cortex-m4", samples=samples)
    return {key: info[key] for key in ("m4_instructions_per_inference", "m4_worst_instructions_per_inference",
                                       "flash_bytes", "ram_bytes", "membrane_state_bytes", "qemu_matches_expected")}


def callgrind_instructions(binary: Path, samples: Path, image_bytes: int, counts=(1, 5)) -> float:
    """Instructions per inference: the difference between runs on ``counts`` images."""
    totals = []
    with tempfile.TemporaryDirectory() as scratch:
        data = samples.read_bytes()
        for count in counts:
            part = Path(scratch) / f"samples{count}.bin"
            part.write_bytes(data[: count * image_bytes])
            out = Path(scratch) / f"callgrind{count}.out"
            result = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", str(binary), str(part)],
                                    capture_output=True, text=True, check=True)
            totals.append(int(re.search(r"Collected : (\d+)", result.stderr).group(1)))
    return (totals[1] - totals[0]) / (counts[1] - counts[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--images", type=int, default=10000, help="test images for agreement and accuracy")
    parser.add_argument("--latency-images", type=int, default=200, help="images timed for latency (at least 2)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating timing rounds (best counts)")
    parser.add_argument("--m4-samples", type=int, default=20, help="samples run on the emulated Cortex-M4")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()
    if min(args.images, args.latency_images) < 2:
        parser.error("--images and --latency-images must be at least 2 (one image's run is the start-up subtracted)")

    checkpoint = read_checkpoint(args.checkpoint)
    backbone = backbone_from_checkpoint(checkpoint)[0].eval()
    data = make_data(restore_config(checkpoint["hyper_parameters"]["experiment"], trainer=False))
    images = first_test_samples(data, args.images)
    labels = torch.tensor([data.test_set[i][1] for i in range(len(images))])
    timed_images = images[: args.latency_images]
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "export"
        info = export_checkpoint(args.checkpoint, str(folder), samples=args.images)
        portable = {name: build_program(folder, name, portable=True) for name in HOST_PROGRAMS}
        binaries = {name: build_program(folder, name) for name in HOST_PROGRAMS}
        samples = folder / "samples.bin"
        sample_bytes = images[0].numel()
        timed, first = folder / "timed.bin", folder / "first.bin"
        timed.write_bytes(samples.read_bytes()[: len(timed_images) * sample_bytes])
        first.write_bytes(samples.read_bytes()[:sample_bytes])
        c_latency, torch_latency = interleaved_latencies(binaries, timed, first, backbone, timed_images, args.rounds)
        instructions = {name: callgrind_instructions(binary, samples, sample_bytes) if shutil.which("valgrind") else None
                        for name, binary in portable.items()}
        c_lines = {name: subprocess.run([str(binary), str(samples)], check=True, capture_output=True, text=True).stdout
                   for name, binary in binaries.items()}
    model = fold(backbone, event_frames=info["event_frames"])
    codes = quantize_input(images, model)
    integer_predictions = torch.cat([reference.predict(reference.run(model, batch)) for batch in codes.split(500)])
    c_predictions = {name: torch.tensor([int(line.split()[0]) for line in lines.splitlines()])
                     for name, lines in c_lines.items()}
    with torch.no_grad():
        float_predictions = torch.cat([backbone(batch).mean(0).argmax(1) for batch in images.split(500)])
    fp32_bytes = sum(p.numel() * 4 for p in backbone.parameters())
    figures = {
        "arch": info["arch"], "bits": info["bits"], "images": len(images),
        "c_ms_per_image": 1e3 * c_latency["qsnn_host"], "c_mcu_kernels_ms_per_image": 1e3 * c_latency["qsnn_mcu"],
        "torch_fp32_batch1_ms_per_image": 1e3 * torch_latency,
        "c_speedup_vs_torch": torch_latency / c_latency["qsnn_host"],
        "c_mcu_kernels_speedup_vs_torch": torch_latency / c_latency["qsnn_mcu"],
        "host_instructions_per_inference": instructions["qsnn_host"],
        "mcu_kernels_host_instructions_per_inference": instructions["qsnn_mcu"],
        **m4_figures(args.checkpoint, args.m4_samples),
        "model_bytes": info["model_bytes"], "fp32_weight_bytes": fp32_bytes,
        "size_ratio_fp32_over_export": fp32_bytes / info["model_bytes"],
        "c_equals_reference": all(torch.equal(p, integer_predictions) for p in c_predictions.values()),
        "integer_vs_pytorch_agreement": float((integer_predictions == float_predictions).float().mean()),
        "pytorch_accuracy": float((float_predictions == labels).float().mean()),
        "integer_accuracy": float((integer_predictions == labels).float().mean()),
    }
    width = max(len(key) for key in figures)
    for key, value in figures.items():
        print(f"{key:<{width}}  {value:.4g}" if isinstance(value, float) else f"{key:<{width}}  {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
