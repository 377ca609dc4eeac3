"""Exported C runtime against PyTorch, measured side by side in one run on the same model.

    python benchmarks/export_bench.py CKPT [--images 10000] [--latency-images 200] [--json FILE]

Prints, for the checkpoint's model:
- host C latency per image (the exported program, -O2, one thread) against PyTorch fp32
  batch-1 eval inference on one thread, and their ratio;
- instructions per inference of the host build, from ``valgrind --tool=callgrind`` (two runs
  with different image counts, so start-up costs cancel out);
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

from qsnn_lightning.export import fold, quantize_input, reference
from qsnn_lightning.export.writer import export_checkpoint, first_test_images
from qsnn_lightning.train import make_datamodule, module_from_checkpoint, read_checkpoint
from qsnn_lightning.config import restore_config


def build_host(folder: Path) -> Path:
    subprocess.run(["make", "-s", "-C", str(folder), "host"], check=True)
    return folder / "qsnn_host"


def c_seconds_per_image(binary: Path, samples: Path, count: int, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([str(binary), str(samples)], check=True, capture_output=True)
        best = min(best, time.perf_counter() - start)
    return best / count


def torch_seconds_per_image(backbone, images: torch.Tensor, repeats: int = 3) -> float:
    torch.set_num_threads(1)
    best = float("inf")
    with torch.no_grad():
        backbone(images[:1])
        for _ in range(repeats):
            start = time.perf_counter()
            for image in images:
                backbone(image.unsqueeze(0))
            best = min(best, time.perf_counter() - start)
    return best / len(images)


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
    parser.add_argument("--latency-images", type=int, default=200, help="images timed for latency")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()

    checkpoint = read_checkpoint(args.checkpoint)
    backbone = module_from_checkpoint(checkpoint).model.eval()
    datamodule = make_datamodule(restore_config(checkpoint["hyper_parameters"]["experiment"]))
    images = first_test_images(datamodule, args.images)
    labels = torch.tensor([datamodule.test_set[i][1] for i in range(len(images))])
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "export"
        info = export_checkpoint(args.checkpoint, str(folder), samples=args.images)
        binary = build_host(folder)
        samples = folder / "samples.bin"
        timed = folder / "timed.bin"
        timed.write_bytes(samples.read_bytes()[: args.latency_images * images[0].numel()])
        c_latency = c_seconds_per_image(binary, timed, min(args.latency_images, len(images)))
        instructions = (callgrind_instructions(binary, samples, images[0].numel())
                        if shutil.which("valgrind") else None)
        c_lines = subprocess.run([str(binary), str(samples)], check=True, capture_output=True, text=True).stdout
    torch_latency = torch_seconds_per_image(backbone, images[: args.latency_images])
    model = fold(backbone)
    codes = quantize_input(images, model)
    integer_predictions = torch.cat([reference.predict(reference.run(model, batch)) for batch in codes.split(500)])
    c_predictions = torch.tensor([int(line.split()[0]) for line in c_lines.splitlines()])
    with torch.no_grad():
        float_predictions = torch.cat([backbone(batch).mean(0).argmax(1) for batch in images.split(500)])
    fp32_bytes = sum(p.numel() * 4 for p in backbone.parameters())
    figures = {
        "arch": info["arch"], "bits": info["bits"], "images": len(images),
        "c_ms_per_image": 1e3 * c_latency, "torch_fp32_batch1_ms_per_image": 1e3 * torch_latency,
        "c_speedup_vs_torch": torch_latency / c_latency,
        "instructions_per_inference": instructions,
        "model_bytes": info["model_bytes"], "fp32_weight_bytes": fp32_bytes,
        "size_ratio_fp32_over_export": fp32_bytes / info["model_bytes"],
        "c_equals_reference": bool(torch.equal(c_predictions, integer_predictions)),
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
