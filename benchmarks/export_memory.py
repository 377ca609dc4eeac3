"""Flash and RAM of the exported runtime for each experiment's network, side by side.

    python benchmarks/export_memory.py [EXPERIMENT ...] [--json FILE]

For each experiment (default: fmnist_1w2u nfmnist_1w2u dvsgesture_mcu_1w2u cifar10_1w2u
dvscifar10_1w2u): the network at the experiment's input shape, T and bits, with random weights
calibrated on random inputs (the sizes depend on the architecture, not on the weight values),
folded and exported. Prints the constants (``model_bytes``), the packed membrane state, the
liveness-planned spike arena against the sum of all maps of a step, and, where the toolchain is
installed and the model fits the 256 KB / 64 KB part, the Cortex-M4 image's measured flash and RAM
(samples apart). Instructions per inference depend on the spikes of trained weights: see
``export_bench.py``.
"""

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import torch

from qsnn_lightning.data import EVENT_DATASETS
from qsnn_lightning.data.info import dataset_info
from qsnn_lightning.export import ExportError, fold, quantize_input
from qsnn_lightning.export.memory import map_words, plan
from qsnn_lightning.export.targets import ARM_GCC, QEMU, check_fits
from qsnn_lightning.export.writer import manifest, write_folder
from qsnn_lightning.snn.backbones import build_model
from qsnn_lightning.snn.spec import ModelSpec
from qsnn_lightning.training.config import load_config

DEFAULT = ("fmnist_1w2u", "nfmnist_1w2u", "dvsgesture_mcu_1w2u", "cifar10_1w2u", "dvscifar10_1w2u")


def calibrated(name: str):
    """(eval-mode backbone, whether its input is event frames) for an experiment."""
    cfg = load_config(name)
    info = dataset_info(cfg.data.name)
    channels, height, width = info.input_shape
    if cfg.data.events.resize:
        height = width = cfg.data.events.resize
    torch.manual_seed(0)
    spec = ModelSpec(arch=cfg.model.arch, bits=cfg.model.bits, timesteps=cfg.model.timesteps)
    model = build_model(spec, input_shape=(channels, height, width), num_classes=info.num_classes).train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.rand(2, channels, height, width))
    return model.eval(), cfg.data.name in EVENT_DATASETS


def figures(name: str) -> dict:
    backbone, frames = calibrated(name)
    model = fold(backbone, event_frames=frames)
    memory = plan(model)
    info = manifest(model, memory, {"arch": type(backbone).__name__, "bits": "1w2u", "experiment": {"name": name}}, 1,
                    "cortex-m4")
    row = {
        "experiment": name, "input": list(model.input_shape), "timesteps": model.timesteps,
        "model_bytes": info["model_bytes"], "membrane_state_bytes": memory.membrane_state_bytes,
        "spike_arena_bytes": memory.arena_bytes,
        "all_maps_of_a_step_bytes": 4 * sum(map_words(info) for info in model.maps()),
    }
    try:
        check_fits(info, "cortex-m4")
    except ExportError:
        return {**row, "cortex_m4": "too large for the part"}
    if shutil.which(ARM_GCC) is None or shutil.which(QEMU) is None:
        return {**row, "cortex_m4": "toolchain not installed"}
    shape = ((model.timesteps,) if frames else ()) + tuple(model.input_shape)
    sample = quantize_input(torch.rand(1, *shape), model)
    with tempfile.TemporaryDirectory() as scratch:
        built = write_folder(model, memory, sample, Path(scratch) / "out", info, target="cortex-m4")
    return {**row, "flash_bytes": built["flash_bytes"], "ram_bytes": built["ram_bytes"],
            "cortex_m4": "fits" if built["qemu_matches_expected"] else "QEMU lines differ"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiments", nargs="*", default=DEFAULT)
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()
    rows = [figures(name) for name in args.experiments]
    columns = ["experiment", "model_bytes", "membrane_state_bytes", "spike_arena_bytes", "all_maps_of_a_step_bytes",
               "flash_bytes", "ram_bytes", "cortex_m4"]
    print("  ".join(f"{column:>24}" for column in columns))
    for row in rows:
        print("  ".join(f"{str(row.get(column, '-')):>24}" for column in columns))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
